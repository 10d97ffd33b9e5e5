"""What an operator does to runs that outlive their code: decide on held runs (retry, skip,
abort), move runs onto another definition (migrate), and fork a run from one of its steps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .._errors import DefinitionError, InvalidTransition, RunNotFound
from .._ids import check_id
from .._interpreter import cursor as cursors
from .._interpreter import plan
from .._state import EventKind, Status, WaitKind, encode_data, parse_wait_key
from .._text import require_storable
from ..persistence._base import utcnow
from ..persistence._records import NewEvent, RunRecord
from .convert import new_run_id
from .executor import Executor

#: The statuses a run may be migrated in (when no live lease holds it).
MIGRATABLE = (Status.PENDING, Status.RUNNING, Status.WAITING, Status.PAUSED, Status.HELD)


@dataclass(frozen=True)
class MigrationPlan:
    """Whether a run can move onto another definition of its workflow, and why not.

    ``source``/``target`` are definition ids (``source_version``/``target_version`` their
    labels); ``reasons`` is empty when ``ok``; ``moved`` says whether it was moved (False for a
    dry run).
    """

    run_id: str
    status: Status
    source: str
    source_version: str | None
    target: str
    target_version: str | None
    ok: bool
    reasons: list[str] = field(default_factory=list)
    moved: bool = False


class Operator:
    """The operator's actions, over the engine's executor and registry."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.registry = executor.registry
        self.persistence = executor.persistence

    # Held runs ---------------------------------------------------------------------------

    async def decide(self, record: RunRecord, action: str, by: str | None, **detail: Any) -> None:
        """Deliver an operator's decision (``retry``, ``skip`` or ``abort``) to a held run."""
        if record.status is not Status.HELD or not record.waiting_for:
            raise InvalidTransition(record.id, record.status.value, f"{action} (it is not held)")
        kind, name = parse_wait_key(record.waiting_for[0])
        if kind is not WaitKind.HELD:
            raise InvalidTransition(record.id, record.status.value, action)
        if action == "skip" and name == "definition":
            raise InvalidTransition(
                record.id,
                "held by its definition (no step failed)",
                "skip a step of; migrate it, then retry it, or abort it",
            )
        payload = {"action": action, "by": by, **detail}
        require_storable(payload, f"{action} of run {record.id!r}")
        encode_data(payload, f"{action} of run {record.id!r}")
        event = {"retry": EventKind.RUN_RETRIED, "skip": EventKind.STEP_SKIPPED}
        await self.executor.deliver(
            record,
            WaitKind.HELD,
            name,
            payload,
            {"by": by, **detail},
            event=event.get(action, EventKind.RUN_ABORTED),
            awaited=True,
        )

    # Migration ---------------------------------------------------------------------------

    async def plan(
        self, record: RunRecord, to: str | None, rename: dict[str, str] | None
    ) -> tuple[MigrationPlan, str | None, list[str]]:
        """Plan moving ``record`` onto definition ``to`` (None: the newest); the plan, and the
        new cursor and waits when it can move."""
        rename = _check_rename(rename)
        target = await self.registry.resolve(self.persistence, record.workflow, to)
        source = await self.registry.shape_of(self.persistence, record.definition_id)
        reasons: list[str] = []
        if record.status not in MIGRATABLE:
            reasons.append(f"it is {record.status.value}")
        elif not record.is_free(utcnow()):
            reasons.append("an engine is executing it: pause it first")
        label = f"definition {target.version or target.id} of {record.workflow!r}"
        planned = plan(
            record.cursor,
            target.shape,
            rename=rename,
            waiting_for=record.waiting_for,
            source=source,
            label=label,
        )
        reasons += planned.reasons
        result = _plan_of(record, target.id, target.version, reasons)
        return result, planned.cursor, planned.waiting_for

    async def migrate(
        self,
        record: RunRecord,
        to: str | None,
        rename: dict[str, str] | None,
        by: str | None,
        dry_run: bool = False,
    ) -> MigrationPlan:
        """Move one run (see :meth:`Engine.migrate`)."""
        result, new_cursor, waits = await self.plan(record, to, rename)
        if dry_run or not result.ok:
            return result
        assert new_cursor is not None
        await self.registry.save_all(self.persistence)  # the target's shape must be stored
        event = NewEvent(
            EventKind.RUN_MIGRATED,
            None,
            {
                "source": result.source,
                "target": result.target,
                "version": result.target_version,
                "rename": rename or {},
                "by": by,
            },
        )
        await self.persistence.migrate_run(
            record.id, record.token, result.target, result.target_version, new_cursor, waits, event
        )
        self.executor.wake()
        return replace(result, moved=True)

    async def migrate_runs(
        self,
        workflow: str,
        source: str | None,
        to: str | None,
        rename: dict[str, str] | None,
        by: str | None,
        dry_run: bool,
        limit: int,
    ) -> list[MigrationPlan]:
        """Move every unfinished run of ``workflow`` (on definition ``source``, by label or
        id, if given) that is not on the target already."""
        target = await self.registry.resolve(self.persistence, workflow, to)
        results = []
        for status in MIGRATABLE:
            for record in await self.persistence.list_runs(
                workflow=workflow, status=status.value, limit=limit
            ):
                if record.definition_id == target.id or (
                    source is not None and source not in (record.definition_id, record.version)
                ):
                    continue
                try:
                    results.append(await self.migrate(record, target.id, rename, by, dry_run))
                except (InvalidTransition, RunNotFound) as exc:  # it moved meanwhile
                    results.append(_plan_of(record, target.id, target.version, [str(exc)]))
        return results

    # Forks -------------------------------------------------------------------------------

    async def fork(
        self,
        record: RunRecord,
        from_step: str | None,
        data: dict[str, Any] | None,
        version: str | None,
        run_id: str | None,
    ) -> str:
        """Start a run that keeps ``record``'s steps before ``from_step`` (see
        :meth:`Engine.fork`)."""
        workflow = self.registry.get(record.workflow, version)
        names = [node.name for node in workflow.steps]
        if from_step is not None and from_step not in names:
            raise DefinitionError(
                f"fork of run {record.id!r}: {from_step!r} is not a step of the top level of "
                f"definition {workflow.version or workflow.id} of {workflow.name!r} "
                f"(its steps: {', '.join(names)})"
            )
        start = 0 if from_step is None else names.index(from_step)
        nodes: cursors.Nodes = {}
        if start:
            nodes[cursors.position_key("")] = cursors.Position(i=start, n=names[start - 1])
        done = await self._completed(record.id)
        comp: list[cursors.CompensationEntry] = [
            [node.name, node.name, None, None]
            for node in workflow.steps[:start]
            if getattr(node, "compensate", None) is not None and node.name in done
        ]
        new_data = record.data if data is None else encode_data(data, "data of the fork")
        if data is not None:
            require_storable(data, "data of the fork")
        new_id = new_run_id() if run_id is None else check_id(run_id, "run id")
        detail = {"forked_from": record.id, "from_step": from_step}
        return await self.executor.create(
            workflow,
            new_data,
            new_id,
            None,
            cursor=cursors.dump(nodes, comp, None),
            detail=detail,
            forked_from=record.id,
        )

    async def _completed(self, run_id: str) -> set[str]:
        """The steps of a run that completed and were not compensated since."""
        done: set[str] = set()
        for event in await self.persistence.history(run_id):
            if event.kind == EventKind.STEP_COMPLETED and event.step is not None:
                done.add(event.step)
            elif event.kind == EventKind.COMPENSATED and event.step is not None:
                done.discard(event.step)
        return done


def _check_rename(rename: dict[str, str] | None) -> dict[str, str]:
    if rename is None:
        return {}
    if not isinstance(rename, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in rename.items()
    ):
        raise DefinitionError(f"rename must map old step names to new ones, not {rename!r}")
    return rename


def _plan_of(
    record: RunRecord, target: str, version: str | None, reasons: list[str]
) -> MigrationPlan:
    """The plan for ``record`` onto definition ``target``: ok unless there are ``reasons``."""
    return MigrationPlan(
        run_id=record.id,
        status=record.status,
        source=record.definition_id,
        source_version=record.version,
        target=target,
        target_version=version,
        ok=not reasons,
        reasons=reasons,
    )
