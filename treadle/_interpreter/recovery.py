"""Resuming under a changed definition: check that the recorded position still exists."""

from __future__ import annotations

from .._errors import DefinitionMismatch
from .._nodes import ActionStep, IfStep, LoopStep, Node, Workflow
from . import cursor
from .walk import Walk


def check_definition(driver: Walk) -> None:
    """Refuse to go on under a definition where the recorded position does not exist."""
    if driver.record.definition_id == driver.workflow.id:
        return
    for key in driver.nodes:
        if cursor.is_position(key):
            sequence = cursor.sequence_path(key)
            owner = cursor.last_name(sequence)
            body = body_of(driver, owner, sequence)
            position = cursor.position_at(driver.nodes, key)
            assert position is not None
            index, name = position["i"], position["n"]
            if index > len(body) or body[index - 1].name != name:
                raise DefinitionMismatch(
                    f"run {driver.run_id!r}: step {name!r} completed at position {index} of "
                    f"{owner or 'the workflow'!r}, which the new definition "
                    f"{driver.workflow.id} of {driver.workflow.name!r} does not have there"
                )
            continue
        name = cursor.last_name(key)
        node = driver.by_name.get(name)
        kind = driver.nodes[key].get("k")
        if node is None or node.kind != kind:
            raise DefinitionMismatch(
                f"run {driver.run_id!r} is at step {name!r} ({kind}), which the new "
                f"definition {driver.workflow.id} of {driver.workflow.name!r} does not have"
            )
    for path, name, *_ in driver.comp:
        node = driver.by_name.get(name)
        if not isinstance(node, ActionStep) or node.compensate is None:
            raise DefinitionMismatch(
                f"run {driver.run_id!r}: completed step {name!r} ({path}) has no compensation "
                f"in the new definition {driver.workflow.id} of {driver.workflow.name!r}"
            )


def body_of(driver: Walk, owner: str, sequence: str) -> tuple[Node, ...]:
    """The steps of the sequence at path ``sequence`` (of the step named ``owner``)."""
    if not owner:
        return driver.workflow.steps
    node = driver.by_name.get(owner)
    if isinstance(node, Workflow):
        return node.steps
    if isinstance(node, LoopStep):
        return node.body
    if isinstance(node, IfStep):
        decision = cursor.if_at(driver.nodes, sequence)
        chosen = decision["b"] if decision is not None else -1
        if 0 <= chosen < len(node.branches):
            return node.branches[chosen].steps
    return ()
