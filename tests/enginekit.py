"""Small helpers for the engine tests (polling with a deadline, reading history)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import treadle

EngineFactory = Callable[..., Awaitable[treadle.Engine]]
"""``await make_engine(*workflows, clock=None, **options)`` (the conftest fixture)."""


async def until(
    engine: treadle.RunControl,
    run_id: str,
    predicate: Callable[[treadle.State], bool],
    timeout: float = 5.0,
) -> treadle.State:
    """Poll the run's status until ``predicate`` holds; fail the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = await engine.status(run_id)
        if predicate(state):
            return state
        if loop.time() > deadline:
            raise AssertionError(f"run {run_id} never got there; last state: {state}")
        await asyncio.sleep(0.01)


async def until_status(
    engine: treadle.RunControl, run_id: str, status: treadle.Status, timeout: float = 5.0
) -> treadle.State:
    """Poll until the run has ``status``."""
    return await until(engine, run_id, lambda s: s.status is status, timeout)


async def waiting_for(
    engine: treadle.RunControl, run_id: str, wait: str, timeout: float = 5.0
) -> treadle.State:
    """Poll until the run is WAITING for ``wait`` (e.g. ``"signal:go"``)."""
    return await until(
        engine,
        run_id,
        lambda s: s.status is treadle.Status.WAITING and wait in s.waiting_for,
        timeout,
    )


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a plain predicate until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.005)


async def events(engine: treadle.Engine, run_id: str, kind: str | None = None) -> list[Any]:
    """The run's history events (of one kind)."""
    history = await engine.history(run_id)
    return [e for e in history if kind is None or e.kind == kind]


async def kinds(engine: treadle.Engine, run_id: str) -> list[str]:
    """The kinds of the run's history events, in order."""
    return [e.kind for e in await engine.history(run_id)]


def completed_steps(history: list[treadle.Event]) -> list[str]:
    """Names of completed steps, in the order of completion."""
    return [e.step for e in history if e.kind == "step_completed" and e.step is not None]


async def start(
    engine: treadle.Engine, workflow: treadle.Workflow, data: dict[str, Any] | None = None
) -> str:
    """Register ``workflow`` (once) and start a run of it."""
    if workflow.name not in engine.workflows:
        engine.register(workflow)
    return await engine.start(workflow.name, data)


async def run_to_end(
    engine: treadle.Engine,
    workflow: treadle.Workflow,
    data: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> treadle.State:
    """Register ``workflow``, start a run and wait for its end."""
    run_id = await start(engine, workflow, data)
    return await engine.wait(run_id, timeout)
