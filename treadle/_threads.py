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
from collections import deque
from collections.abc import Callable
from typing import Any

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


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
        self._waiters: deque[asyncio.Future[None]] = deque()  # see wait_free
        self._reserved = 0  # waiters woken for a free thread that have not submitted yet
        self.closed = False

    @property
    def outstanding(self) -> int:
        """Jobs submitted and not finished (running or queued)."""
        return self._outstanding

    @property
    def free(self) -> int:
        """Threads free for a new job now (none while others wait for one)."""
        return self.size - self._outstanding - self._reserved - len(self._waiters)

    async def wait_free(self, timeout: float) -> bool:
        """Wait (first come, first served) until a thread is free for the caller's next
        :meth:`submit`, for up to ``timeout`` seconds; whether one is."""
        if self.free > 0:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.CancelledError:
            if waiter.done():  # woken and cancelled at once: the thread goes to the next one
                self._reserved -= 1
                self._wake_waiter()
            else:
                self._waiters.remove(waiter)
            raise
        if not waiter.done():
            self._waiters.remove(waiter)
            return False
        self._reserved -= 1  # the caller submits now
        return True

    def _wake_waiter(self) -> None:
        """Hand a thread that just became free to the first waiter (on the loop)."""
        if self._waiters and self.size - self._outstanding - self._reserved > 0:
            self._reserved += 1
            self._waiters.popleft().set_result(None)

    def _settle(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        if self._waiters:
            self._wake_waiter()
        if future.done():  # cancelled meanwhile (a step timeout): the result is dropped
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

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
            with self._lock:  # before the settle, so that the loop sees this thread free
                self._outstanding -= 1
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits the result
                loop.call_soon_threadsafe(self._settle, future, result, error)

    def shutdown(self) -> None:
        """Let the threads finish their current job and stop (running steps are not waited for)."""
        self.closed = True
        for _ in self._threads:
            self._jobs.put(None)
