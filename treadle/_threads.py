"""Worker threads for plain step functions.

A lighter hand-off than ``loop.run_in_executor``: no ``concurrent.futures.Future`` (and its
condition variable) per call, and no future chaining — a worker thread settles the asyncio
future directly through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile (a step timeout): the result is dropped
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class StepThreads:
    """Up to ``size`` daemon threads, started as the load needs them."""

    def __init__(self, size: int, name: str = "treadle-step") -> None:
        if size < 1:
            raise ValueError(f"step_threads must be at least 1, not {size}")
        self.size = size
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._outstanding = 0  # submitted and not finished: there are threads for as many
        self.closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in a worker thread; the returned future (of the running loop)
        settles with its result or exception."""
        if self.closed:
            raise RuntimeError("the step threads are shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        with self._lock:
            self._outstanding += 1
            if self._outstanding > len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, fn, args = job
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed to the awaiting step, whatever it is
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits the result
                loop.call_soon_threadsafe(_settle, future, result, error)
            with self._lock:
                self._outstanding -= 1

    def shutdown(self) -> None:
        """Let the threads finish their current job and stop (running steps are not waited for)."""
        self.closed = True
        for _ in self._threads:
            self._jobs.put(None)
