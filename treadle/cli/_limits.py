"""``treadle limits``: the concurrency keys in use, with their holders and queued runs."""

from __future__ import annotations

import click

from .._limit_wire import LimitList
from ..persistence._records import LimitUse
from . import _output
from ._app import cli, db_option, json_option, open_client, run


@cli.command()
@db_option
@json_option
def limits(db_url: str, as_json: bool) -> None:
    """Show every concurrency key in use: its limit, how many runs hold a slot and wait for
    one, and which (keys with no run holding or waiting are not shown)."""

    async def work() -> list[LimitUse]:
        async with open_client(db_url) as engine:
            return await engine.limits()

    uses = run(work)
    if as_json:
        _output.emit_json(LimitList.of(uses))
        return
    if not uses:
        click.echo("no concurrency limit in use")
        return
    for use in uses:
        click.echo(
            f"{use.key}  limit {use.limit}  in use {len(use.holders)}  queued {len(use.queued)}"
        )
        if use.holders:
            click.echo(f"  held by: {', '.join(use.holders)}")
        if use.queued:
            click.echo(f"  queued:  {', '.join(use.queued)}")
