"""Waiting for runs to end: ``Engine.wait()`` and the watcher of runs executed elsewhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from .._errors import RunNotFound
from .._interpreter import RunDriver
from .._state import State
from ..persistence import Persistence
from ..persistence._records import RunRecord
from .convert import to_state

log = logging.getLogger("treadle")


class Waiters:
    """The futures of callers waiting for runs to end, woken by the executor (runs that start
    or end here) or by the watcher (runs that end elsewhere)."""

    def __init__(
        self,
        persistence: Persistence,
        active: Mapping[str, RunDriver],
        runs_here: Callable[[RunRecord | None], bool],
    ) -> None:
        self.persistence = persistence
        self._active = active
        self._runs_here = runs_here
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._watched = asyncio.Event()  # set while someone waits for a run not executed here
        self._watched_runs: dict[str, RunRecord] = {}  # each such run as last read

    def reset(self) -> None:
        """Start afresh (an engine opened again, maybe under another event loop)."""
        self._watched = asyncio.Event()

    async def wait(self, run_id: str, timeout: float | None = None) -> State:
        """Wait until the run has ended; :class:`TimeoutError` if not within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(run_id, []).append(future)
            try:
                driver = self._active.get(run_id)
                if driver is not None:
                    status = driver.status
                else:
                    record = await self.persistence.get_run(run_id)
                    if record is None:
                        raise RunNotFound(run_id)
                    if record.status.finished:
                        return to_state(record)
                    # Woken when it starts or ends here, or by the watcher when it ends elsewhere.
                    self._watched_runs[run_id] = record
                    self._watched.set()
                    status = record.status
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"run {run_id!r} is still {status.value} after {timeout}s")
                await asyncio.wait([future], timeout=remaining)
                if driver is not None and driver.status.finished:
                    # Executed here: its driver says how it ended, no need to read the database.
                    return driver.snapshot()
            finally:
                waiters = self._waiters.get(run_id, [])
                if future in waiters:
                    waiters.remove(future)
                if not waiters:
                    self._waiters.pop(run_id, None)
                    self._watched_runs.pop(run_id, None)

    def wake(self, run_id: str) -> None:
        """The run started or ended here: its waiters look again."""
        for future in self._waiters.get(run_id, []):
            if not future.done():
                future.set_result(None)

    async def watch(self) -> None:
        """Wake the waiters of runs that do not execute here once those runs have ended, with one
        query for all of them; the more there are, the less often.

        A run whose definition this engine executes starts here (which wakes its waiters) unless
        another process takes it first, so those are checked only every 20th round.
        """
        rounds = 0
        while True:
            await self._watched.wait()
            ids = [run_id for run_id in self._waiters if run_id not in self._active]
            if not ids:
                self._watched.clear()
                continue
            await asyncio.sleep(min(1.0, max(0.05, len(ids) / 20_000)))
            rounds += 1
            ids = [
                run_id
                for run_id in self._waiters
                if run_id not in self._active
                and (rounds % 20 == 0 or not self._runs_here(self._watched_runs.get(run_id)))
            ]
            try:
                for start in range(0, len(ids), 500):
                    for run_id in await self.persistence.finished_among(ids[start : start + 500]):
                        self.wake(run_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not check on awaited runs; retrying")
