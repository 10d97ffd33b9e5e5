"""Failure and cancellation: compensate completed steps in reverse order, then end the run."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from .._calls import call_step
from .._nodes import ActionStep
from .._state import Context, EventKind, Status, encode_data

if TYPE_CHECKING:
    from .driver import RunDriver


async def unwind(driver: RunDriver) -> Status:
    """Compensate completed steps in reverse order, then end FAILED or CANCELLED."""
    failure = driver.failure
    assert failure is not None
    status = Status(failure["status"])
    if status is Status.CANCELLED:
        await driver.host.cancel_children(driver.run_id)
    if driver.comp:
        driver.note(EventKind.COMPENSATING, steps=[c[1] for c in reversed(driver.comp)])
        await driver.flush()
    problems: list[str] = failure.setdefault("problems", [])
    while driver.comp:
        path, name, index, item = driver.comp[-1]
        node = driver.by_name[name]
        assert isinstance(node, ActionStep) and node.compensate is not None
        error = await _compensate(driver, node, path, index, item)
        driver.comp.pop()
        if error is None:
            driver.note(EventKind.COMPENSATED, name)
        else:
            problems.append(f"compensation of {name!r} failed: {error}")
            driver.note(EventKind.COMPENSATION_FAILED, name, error=error)
        await driver.checkpoint()
    message = failure["error"]
    if problems:
        message += "; " + "; ".join(problems)
    ended = EventKind.RUN_CANCELLED if status is Status.CANCELLED else EventKind.RUN_FAILED
    driver.note(ended, error=message)
    await driver.checkpoint(status, error=message)
    return status


async def _compensate(
    driver: RunDriver, node: ActionStep, path: str, index: Any, item: Any
) -> str | None:
    assert node.compensate is not None
    policy = node.retry
    attempt = 1
    while True:
        ctx = Context(
            run_id=driver.run_id,
            workflow=driver.workflow.name,
            step=node.name,
            attempt=attempt,
            item=item,
            index=index,
            iteration=index,
            idempotency_key=f"{driver.run_id}/{path}/compensate",
        )
        state = driver.view()
        state.data = json.loads(driver.data_json)
        try:
            await call_step(node.compensate, ctx, state, node.timeout_seconds, driver.host.threads)
            new_json = encode_data(state.data, f"compensation of {node.name!r}")
            driver.merge(state.data, new_json, driver.data_json)
            return None
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if policy is None or not policy.should_retry(exc, attempt):
                return text
            driver.note(EventKind.COMPENSATION_RETRY, node.name, attempt=attempt, error=text)
            await asyncio.sleep(policy.wait_before(attempt, path).total_seconds())
            attempt += 1
