"""The workflows an engine knows, and the stored definitions its runs follow."""

from __future__ import annotations

from typing import Any

from .._errors import DefinitionError, WorkflowNotFound
from .._nodes import Workflow, validate
from .._shape import Waits, waits_of
from ..persistence import Persistence
from ..persistence._records import RunRecord


class Registry:
    """Registered workflows by name; definition shapes and their waits by definition id."""

    def __init__(self) -> None:
        self.workflows: dict[str, Workflow] = {}
        self._shapes: dict[str, dict[str, Any]] = {}
        self._waits: dict[str, Waits] = {}
        self._saved: set[str] = set()  # definitions known to be in the database

    def add(self, workflow: Workflow) -> None:
        """Register ``workflow``; another definition under a taken name: DefinitionError."""
        if not isinstance(workflow, Workflow):
            raise DefinitionError(f"register() takes a built Workflow, not {workflow!r}")
        validate(workflow)
        known = self.workflows.get(workflow.name)
        if known is not None and known.id != workflow.id:
            raise DefinitionError(
                f"workflow {workflow.name!r} is already registered with another definition "
                f"({known.id}, new {workflow.id})"
            )
        self.workflows[workflow.name] = workflow
        self._shapes[workflow.id] = workflow.describe()

    def get(self, name: str) -> Workflow:
        """The registered workflow called ``name``, else WorkflowNotFound."""
        workflow = self.workflows.get(name)
        if workflow is None:
            raise WorkflowNotFound(name)
        return workflow

    async def save(self, persistence: Persistence, workflow: Workflow) -> None:
        """Store the definition of ``workflow`` (once per definition)."""
        if workflow.id in self._saved:
            return
        await persistence.save_definition(workflow.id, workflow.name, workflow.describe())
        self._saved.add(workflow.id)

    async def shape(self, persistence: Persistence, record: RunRecord) -> dict[str, Any]:
        """The shape of the definition ``record`` follows (loaded once)."""
        shape = self._shapes.get(record.definition_id)
        if shape is None:
            shape = await persistence.load_definition(record.definition_id)
            if shape is None:
                raise WorkflowNotFound(record.workflow)
            self._shapes[record.definition_id] = shape
        return shape

    async def waits(self, persistence: Persistence, record: RunRecord) -> Waits:
        """The signals and approvals of the definition ``record`` follows (computed once)."""
        waits = self._waits.get(record.definition_id)
        if waits is None:
            waits = waits_of(await self.shape(persistence, record))
            self._waits[record.definition_id] = waits
        return waits
