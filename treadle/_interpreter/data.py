"""The run's data as the driver holds it, and the private copies that steps work on.

Every step works on its own copy of the data, taken when it starts; when it completes its copy
is merged into the data as it is then (see "How branch writes meet" in API.md). The writes made
while copies are held are kept (as JSON) to name the step whose value a conflict overwrote,
and dropped once no copy held can meet them.
"""

from __future__ import annotations

import json
from typing import Any

from .._merge import merge, wrote
from .._state import EventKind, encode_data


class RunData:
    """The data part of :class:`~.driver.RunDriver`."""

    def init_data(self, data_json: str) -> None:
        """Start from the data as stored."""
        self.data_json = data_json
        self.data: dict[str, Any] = json.loads(data_json)
        #: ``(step, data before, data after)`` of each write made while a step held a private
        #: copy of the data (see :meth:`merge`); empty whenever no step runs.
        self.writes: list[tuple[str, str, str]] = []
        #: How many steps hold a private copy of the data.
        self.running = 0
        #: The marks of the private copies held (see :meth:`copy`), and the mark of
        #: ``writes[0]``: writes older than every copy held are dropped.
        self.marks: dict[int, int] = {}
        self.first_write = 0

    def note(self, kind: EventKind, step: str | None = None, **detail: Any) -> None:
        """Record a history event with the next checkpoint (the driver's)."""
        raise NotImplementedError

    def touch(self) -> None:
        """Mark progress that must be checkpointed (the driver's)."""
        raise NotImplementedError

    def set_data(self, key: str, value: Any) -> None:
        """Store a value in the run's data (a wait's result)."""
        before = self.data_json
        self.data[key] = value
        self.data_json = encode_data(self.data, f"step {key!r}")
        if self.running:
            self.writes.append((key, before, self.data_json))
            self._forget()
        self.touch()

    def copy(self) -> tuple[dict[str, Any], str, int]:
        """A private copy of the data for a step about to run: the copy, its JSON (the base of
        :meth:`merge`) and the mark of the writes made from now on. Pair with :meth:`release`."""
        self.running += 1
        base_json = self.data_json
        mark = self.first_write + len(self.writes)
        self.marks[mark] = self.marks.get(mark, 0) + 1
        return json.loads(base_json), base_json, mark

    def release(self, mark: int) -> None:
        """A step's private copy (taken at ``mark``) is done with (completed, failed, timed
        out or cancelled)."""
        self.running -= 1
        if self.marks[mark] > 1:
            self.marks[mark] -= 1
        else:
            del self.marks[mark]

    def _forget(self) -> None:
        """Drop the writes that no copy held can meet (a long parallel map makes many)."""
        oldest = min(self.marks, default=self.first_write + len(self.writes))
        if oldest > self.first_write:
            del self.writes[: oldest - self.first_write]
            self.first_write = oldest

    def merge(
        self, step: str, private: dict[str, Any], private_json: str, base_json: str, since: int
    ) -> None:
        """Take ``step``'s private copy of the data (copied at ``base_json``) into the run's.

        The one place where concurrent steps meet (see "How branch writes meet" in API.md):
        unless nobody wrote meanwhile, a three-way merge; each conflict is recorded with the
        step that wrote the value it overwrote (found among the writes since ``since``).
        """
        if self.data_json == base_json:  # nobody wrote meanwhile: every sequential step
            self.data, self.data_json = private, private_json
        elif private_json == base_json:
            pass  # the step changed nothing: the data stays as the others left it
        else:
            # Parsed again, not taken as they are: ``private`` may hold tuples and the like.
            base, theirs = json.loads(base_json), json.loads(private_json)
            result = merge(base, theirs, json.loads(self.data_json))
            self.data, self.data_json = result.value, encode_data(result.value, f"step {step!r}")
            for conflict in result.conflicts:
                other = next(
                    (
                        name
                        for name, before, after in reversed(
                            self.writes[max(0, since - self.first_write) :]
                        )
                        if wrote(json.loads(before), json.loads(after), conflict.path)
                    ),
                    None,
                )
                self.note(EventKind.DATA_CONFLICT, step, other=other, **conflict.event_detail())
        if self.running:
            self.writes.append((step, base_json, private_json))
            self._forget()
        else:
            self.first_write += len(self.writes)
            self.writes.clear()
