"""The workflows an engine knows (several definitions per name), and the stored definitions
its runs follow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .._calls import is_async_callable
from .._errors import DefinitionError, WorkflowNotFound
from .._nodes import ActionStep, Workflow, validate
from .._rates import check_consistent, rate_limits
from .._shape import Waits, waits_of
from ..persistence import Persistence
from ..persistence._records import DefinitionRecord, RunRecord

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Registry:
    """Registered definitions by name (in registration order: the last is the newest) and by
    id; stored definition shapes and their waits by id."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[Workflow]] = {}
        self._by_id: dict[str, Workflow] = {}
        self._legacy: dict[str, Workflow] = {}  # see Workflow.legacy_id
        self._shapes: dict[str, dict[str, Any]] = {}
        self._waits: dict[str, Waits] = {}
        self._saved: set[str] = set()  # definitions known to be in the database
        self._claimable: tuple[list[str], list[str]] = ([], [])
        self._plain_steps = False

    def add(self, workflow: Workflow) -> None:
        """Register ``workflow`` as the newest definition of its name.

        A definition with the same id as a registered one replaces it (the same shape, maybe
        other code); two definitions of one name may not share a ``version`` label.
        """
        if not isinstance(workflow, Workflow):
            raise DefinitionError(f"register() takes a built Workflow, not {workflow!r}")
        validate(workflow)
        others = [w for w in self._by_id.values() if w.id != workflow.id]
        check_consistent(u for w in [*others, workflow] for u in rate_limits(w))
        known = [w for w in self._by_name.get(workflow.name, []) if w.id != workflow.id]
        if workflow.version is not None:
            for other in known:
                if other.version == workflow.version:
                    raise DefinitionError(
                        f"workflow {workflow.name!r}: version {workflow.version!r} is already "
                        f"registered with another definition ({other.id}, new {workflow.id}); "
                        "give the new one its own version label"
                    )
        self._by_name[workflow.name] = [*known, workflow]
        self._by_id[workflow.id] = workflow
        self._legacy[workflow.legacy_id] = workflow
        self._shapes[workflow.id] = workflow.describe()
        ids = {*self._by_id, *(k for k in self._legacy if k not in self._by_id)}
        upgrades = [n for n, versions in self._by_name.items() if versions[-1].auto_upgrade]
        self._claimable = (sorted(ids), sorted(upgrades))
        self._plain_steps = self._plain_steps or has_plain_steps(workflow)

    def plain_steps(self) -> bool:
        """Whether a registered workflow has a plain (not coroutine) step function."""
        return self._plain_steps

    @property
    def workflows(self) -> dict[str, Workflow]:
        """The newest registered definition of each name."""
        return {name: versions[-1] for name, versions in self._by_name.items()}

    def versions(self, name: str) -> list[Workflow]:
        """The registered definitions of ``name``, oldest first (empty if none)."""
        return list(self._by_name.get(name, []))

    def get(self, name: str, version: str | None = None) -> Workflow:
        """The newest registered definition of ``name``, or the one whose ``version`` label or
        id is ``version``; else :class:`WorkflowNotFound`."""
        versions = self._by_name.get(name)
        if not versions:
            raise WorkflowNotFound(name)
        if version is None:
            return versions[-1]
        for workflow in reversed(versions):
            if version in (workflow.version, workflow.id):
                return workflow
        raise WorkflowNotFound(name, version, [label(w) for w in versions])

    def for_run(self, record: RunRecord) -> Workflow | None:
        """The definition this engine executes ``record`` on: the one it is pinned to, else
        (``auto_upgrade``) the newest of its name; None when this engine cannot run it."""
        workflow = self._by_id.get(record.definition_id) or self._legacy.get(record.definition_id)
        if workflow is not None and workflow.name == record.workflow:
            return workflow
        versions = self._by_name.get(record.workflow)
        if versions and versions[-1].auto_upgrade:
            return versions[-1]
        return None

    def claimable(self) -> tuple[list[str], list[str]]:
        """What this engine claims: definition ids (the old fingerprints of its definitions
        included) and the names of ``auto_upgrade`` workflows (runs of any definition)."""
        return self._claimable

    async def save(self, persistence: Persistence, workflow: Workflow) -> None:
        """Store the definition of ``workflow`` (once per definition)."""
        if workflow.id in self._saved:
            return
        await persistence.save_definition(
            workflow.id, workflow.name, workflow.describe(), workflow.version
        )
        self._saved.add(workflow.id)

    async def save_all(self, persistence: Persistence) -> None:
        """Store every registered definition."""
        for versions in self._by_name.values():
            for workflow in versions:
                await self.save(persistence, workflow)

    async def shape_of(self, persistence: Persistence, definition_id: str) -> dict[str, Any] | None:
        """The shape of a definition by id (loaded once), or None if none is stored."""
        shape = self._shapes.get(definition_id)
        if shape is None:
            shape = await persistence.load_definition(definition_id)
            if shape is not None:
                self._shapes[definition_id] = shape
        return shape

    async def shape(self, persistence: Persistence, record: RunRecord) -> dict[str, Any]:
        """The shape of the definition ``record`` follows (loaded once)."""
        shape = await self.shape_of(persistence, record.definition_id)
        if shape is None:
            raise WorkflowNotFound(record.workflow)
        return shape

    async def waits(self, persistence: Persistence, record: RunRecord) -> Waits:
        """The signals and approvals of the definition ``record`` follows (computed once)."""
        waits = self._waits.get(record.definition_id)
        if waits is None:
            waits = waits_of(await self.shape(persistence, record))
            self._waits[record.definition_id] = waits
        return waits

    async def resolve(
        self, persistence: Persistence, name: str, version: str | None
    ) -> DefinitionRecord:
        """A stored (or registered) definition of ``name`` by label or id (None: the newest
        registered here, else the newest stored); else :class:`WorkflowNotFound`."""
        if version is None and name in self._by_name:
            version = self._by_name[name][-1].id
        stored = await persistence.definitions(name)
        for record in stored:
            if version is None or version in (record.version, record.id):
                return record
        for workflow in reversed(self._by_name.get(name, [])):
            if version in (workflow.version, workflow.id):
                return DefinitionRecord(
                    workflow.id, name, workflow.version, workflow.describe(), _EPOCH
                )
        if not stored and name not in self._by_name:
            raise WorkflowNotFound(name)
        labels = [r.version or r.id for r in stored] or [label(w) for w in self.versions(name)]
        raise WorkflowNotFound(name, version, labels)


def label(workflow: Workflow) -> str:
    """How a definition is named to people: its version label, else its id."""
    return workflow.version or workflow.id


def has_plain_steps(workflow: Workflow) -> bool:
    """Whether a step function of ``workflow`` (or a compensation) is a plain function."""
    functions = [
        fn
        for node in workflow.nodes()
        if isinstance(node, ActionStep)
        for fn in (node.action, node.compensate)
        if fn is not None
    ]
    return not all(is_async_callable(fn) for fn in functions)
