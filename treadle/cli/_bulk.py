"""``treadle bulk ACTION``: cancel, resume, retry, abort, migrate or delete every run a filter
matches."""

from __future__ import annotations

from typing import Any

import click

from .._engine.bulk import ACTIONS, BulkResult
from .._wire import BulkOutcome
from . import _output
from ._app import cli, db_option, json_option, open_engine, run
from ._filters import filter_options, is_empty, run_filter
from ._versions import BY, RENAME

_DONE = {"cancel": "cancel requested", "resume": "resumed", "retry": "retried",
         "abort": "aborted", "migrate": "migrated", "delete": "deleted"}  # fmt: skip


@cli.command()
@click.argument("action", type=click.Choice(list(ACTIONS)))
@filter_options
@click.option("--all", "every", is_flag=True, help="Act on every run (no filter given).")
@click.option("--reason", help="Why (abort: kept in each run's error).")
@click.option("--to", metavar="VERSION", help="migrate: the definition to move onto.")
@RENAME
@click.option("--dry-run", is_flag=True, help="Only list the runs it would act on.")
@click.option("--batch", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Runs read and acted on at a time.")  # fmt: skip
@BY
@db_option
@json_option
def bulk(action: str, every: bool, db_url: str, **kwargs: Any) -> None:
    """Apply ACTION to every run the filter options match, page by page, as --by (kept in
    each run's history). Prints one line a run: what was done, or why it was skipped (a run
    the action does not apply to). Each run is acted on whole; running it again after an
    interruption goes on with the rest."""
    as_json, dry_run, by = kwargs.pop("as_json"), kwargs.pop("dry_run"), kwargs.pop("by")
    reason, to, rename, batch = (kwargs.pop(k) for k in ("reason", "to", "rename", "batch"))
    flt = run_filter(kwargs)
    if is_empty(flt) and not every:
        raise click.UsageError("give a filter (--workflow, --status, --label...), or --all")

    async def work() -> BulkResult:
        async with open_engine(db_url) as engine:
            return await engine.bulk(
                action, flt, dry_run=dry_run, by=by, reason=reason, to=to, rename=rename,
                batch=batch,
            )  # fmt: skip

    result = run(work)
    if as_json:
        _output.emit_json(BulkOutcome.of(result))
        return
    done = f"would {action}" if dry_run else _DONE[action]
    lines = [f"{done} {run_id}" for run_id in result.applied]
    lines += [f"skipped {run_id}: {why}" for run_id, why in result.skipped.items()]
    lines.append(f"{action}: {len(result.applied)} {'to act on' if dry_run else 'done'}, "
                 f"{len(result.skipped)} skipped")  # fmt: skip
    click.echo("\n".join(lines) if len(lines) > 1 else "no run matches the filter")
