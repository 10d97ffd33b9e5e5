"""Failure and cancellation: compensate completed steps in reverse order, then end the run.

A compensation that fails and may be retried waits as a step retry does: durably, on the
engine's clock. The attempt and the retry time go into the cursor (``f.retry``), the run waits
for ``retry:<step>``, and whichever engine wakes it goes on with the same compensation.
"""

from __future__ import annotations

from typing import Any

from .._calls import call_step
from .._nodes import ActionStep
from .._state import Context, EventKind, State, Status, WaitKind, wait_key
from .._text import storable
from .control import Suspend
from .deadlines import abandoned
from .waits import due_time
from .walk import Walk


async def unwind(driver: Walk) -> Status:
    """Compensate completed steps in reverse order, then end FAILED or CANCELLED; unfinished
    children are cancelled first, but those whose ``on_parent_end`` is ``"abandon"``."""
    failure = driver.failure
    assert failure is not None
    status = Status(failure["status"])
    await driver.host.cancel_children(driver.run_id, abandoned(driver.nodes))
    if driver.comp and "retry" not in failure:
        driver.note(EventKind.COMPENSATING, steps=[c[1] for c in reversed(driver.comp)])
        await driver.flush()
    problems: list[str] = failure.setdefault("problems", [])
    while driver.comp:
        path, name, index, item = driver.comp[-1]
        node = driver.by_name.get(name)
        if not isinstance(node, ActionStep) or node.compensate is None:
            # Only a run aborted while held by its definition can get here.
            problems.append(f"compensation of {name!r} skipped: its definition has none")
            driver.comp.pop()
            continue
        attempt = 1
        pending = failure.get("retry")
        if pending is not None:
            retry_at = due_time(driver, pending["r"])
            assert retry_at is not None
            if driver.host.clock.now() < retry_at:
                raise Suspend([wait_key(WaitKind.RETRY, name)], retry_at)
            attempt = pending["a"] + 1
        await driver.flush()
        error = await _compensate(driver, node, path, index, item, attempt)
        failure.pop("retry", None)
        driver.comp.pop()
        if error is None:
            driver.note(EventKind.COMPENSATED, name)
        else:
            problems.append(storable(f"compensation of {name!r} failed: {error}"))
            driver.note(EventKind.COMPENSATION_FAILED, name, error=error)
        await driver.checkpoint()
    message = failure["error"]
    if problems:
        message += "; " + "; ".join(problems)
    ended = EventKind.RUN_CANCELLED if status is Status.CANCELLED else EventKind.RUN_FAILED
    driver.note(ended, error=message)
    await driver.checkpoint(status, error=message)
    return status


def compensation_context(
    driver: Walk, node: ActionStep, path: str, index: Any, item: Any, attempt: int, state: State
) -> Context:
    """What a compensation of ``node`` (completed at ``path``) sees."""
    return Context(
        run_id=driver.run_id,
        workflow=driver.workflow.name,
        step=node.name,
        attempt=attempt,
        item=item,
        index=index,
        iteration=index,
        idempotency_key=f"{driver.run_id}/{path}/compensate",
        input_model=driver.workflow.input,
        _state=state,
    )


async def _compensate(
    driver: Walk, node: ActionStep, path: str, index: Any, item: Any, attempt: int
) -> str | None:
    """Run one attempt of a compensation: None when it succeeded, the error when it failed for
    good; a retry is recorded and raises :class:`Suspend` until its time."""
    assert node.compensate is not None and driver.failure is not None
    state = driver.view()
    ctx = compensation_context(driver, node, path, index, item, attempt, state)
    state.data, base, since = driver.copy()
    try:
        await call_step(node.compensate, ctx, state, node.timeout_seconds, driver.host.threads)
        sealed = driver.seal(state.data, base, f"compensation of {node.name!r}")
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        policy = node.retry
        if policy is None or not policy.should_retry(exc, attempt):
            return text
        wait = policy.wait_before(attempt, ctx.idempotency_key)
        retry_at = driver.host.clock.now() + wait
        driver.failure["retry"] = {"a": attempt, "r": retry_at.timestamp()}
        driver.note(
            EventKind.COMPENSATION_RETRY,
            node.name,
            attempt=attempt,
            error=text,
            retry_in=round(wait.total_seconds(), 3),
        )
        raise Suspend([wait_key(WaitKind.RETRY, node.name)], retry_at) from exc
    finally:
        driver.release(since)
    driver.merge(node.name, sealed, base, since)
    return None
