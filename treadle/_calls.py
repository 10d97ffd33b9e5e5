"""Calling user code: plain functions in worker threads, coroutines on the loop, with timeouts."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

from ._threads import StepThreads


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine (functions, partials, async ``__call__``)."""
    try:
        return _is_async_cached(fn)
    except TypeError:  # an unhashable callable
        return _is_async(fn)


@lru_cache(maxsize=4096)
def _is_async_cached(fn: object) -> bool:
    return _is_async(fn)


def _is_async(fn: object) -> bool:
    while isinstance(fn, partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


async def call_step(
    fn: Callable[..., Any],
    ctx: Any,
    state: Any,
    timeout: float | None,
    threads: StepThreads | None = None,
) -> Any:
    """Call a step function once.

    A coroutine function runs on the loop and is cancelled when ``timeout`` runs out. A plain
    function runs in a worker thread; on timeout it is abandoned (Python cannot stop a thread), so
    it may still finish in the background — its changes to the data are discarded.
    """
    if is_async_callable(fn):
        coro = fn(ctx, state)
    else:
        # Copy the context so that the run id and step follow the function into its thread.
        context = contextvars.copy_context()
        if threads is None:
            coro = asyncio.get_running_loop().run_in_executor(None, context.run, fn, ctx, state)
        else:
            coro = threads.submit(context.run, fn, ctx, state)
    if timeout is None:
        result = await coro
    else:
        result = await asyncio.wait_for(coro, timeout)
    if inspect.isawaitable(result):
        result = await result
    return result


async def call_condition(fn: Callable[..., Any], state: Any) -> bool:
    """Evaluate a condition on the loop (conditions should be quick and pure)."""
    result = fn(state)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)
