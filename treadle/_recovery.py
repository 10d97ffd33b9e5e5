"""Resuming under a changed definition: check that the recorded position still exists."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import DefinitionMismatch
from ._nodes import ActionStep, IfStep, LoopStep, Node, Workflow

if TYPE_CHECKING:
    from ._interpreter import RunDriver


def check_definition(driver: RunDriver) -> None:
    """Refuse to go on under a definition where the recorded position does not exist."""
    if driver.record.definition_id == driver.workflow.id:
        return
    for key, entry in driver.nodes.items():
        if key.endswith("@"):
            owner = key[:-1].rstrip("/").split("/")[-1].split("#")[0]
            body = body_of(driver, owner, key)
            index, name = entry["i"], entry["n"]
            if index > len(body) or body[index - 1].name != name:
                raise DefinitionMismatch(
                    f"run {driver.run_id!r}: step {name!r} completed at position {index} of "
                    f"{owner or 'the workflow'!r}, which the new definition "
                    f"{driver.workflow.id} of {driver.workflow.name!r} does not have there"
                )
            continue
        name = key.split("/")[-1].split("#")[0]
        node = driver.by_name.get(name)
        if node is None or node.kind != entry.get("k"):
            raise DefinitionMismatch(
                f"run {driver.run_id!r} is at step {name!r} ({entry.get('k')}), which the new "
                f"definition {driver.workflow.id} of {driver.workflow.name!r} does not have"
            )
    for path, name, *_ in driver.comp:
        node = driver.by_name.get(name)
        if not isinstance(node, ActionStep) or node.compensate is None:
            raise DefinitionMismatch(
                f"run {driver.run_id!r}: completed step {name!r} ({path}) has no compensation "
                f"in the new definition {driver.workflow.id} of {driver.workflow.name!r}"
            )


def body_of(driver: RunDriver, owner: str, key: str) -> tuple[Node, ...]:
    """The steps of the sequence whose position is recorded under ``key``."""
    if not owner:
        return driver.workflow.steps
    node = driver.by_name.get(owner)
    if isinstance(node, Workflow):
        return node.steps
    if isinstance(node, LoopStep):
        return node.body
    if isinstance(node, IfStep):
        decision = driver.nodes.get(key[:-2] if key.endswith("/@") else key, {})
        chosen = decision.get("b", -1) if isinstance(decision, dict) else -1
        if 0 <= chosen < len(node.branches):
            return node.branches[chosen].steps
    return ()
