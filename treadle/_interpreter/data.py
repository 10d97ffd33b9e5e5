"""The run's data as the driver holds it, and the private copies that steps work on.

The data is held as the JSON text of each top-level value (see :mod:`.texts`), so that what a
step costs depends on the keys it touches, not on the size of the data. Every step works on its
own copy of the data, taken when it starts: a :class:`~.lazy.LazyData` that decodes a key when
the step first reads it. When it completes, the keys it read or set are encoded again, and those
it changed are merged into the data as it is then, key by key (see "How branch writes meet" in
API.md). The writes made while copies are held are kept (as the texts of the keys they changed)
to name the step whose value a conflict overwrote, and dropped once no copy held can meet them.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .._merge import ABSENT, merge_at, wrote
from .._state import EventKind
from .lazy import UNREAD, LazyData, decode
from .texts import CHUNK, Sealed, Text, Texts, encode, is_aside, join, seal, split, stored_form

#: What one write changed: the text of each key before and after it (None: absent).
Changes = dict[str, tuple[Text | None, Text | None]]


class Base(NamedTuple):
    """The data as a step's private copy was taken: its texts, and the data's version then."""

    texts: Texts
    version: int


def _value(text: Text | None) -> Any:
    return ABSENT if text is None else decode(text)


class RunData:
    """The data part of :class:`~.driver.RunDriver`."""

    def init_data(self, data_json: str) -> None:
        """Start from the data as stored."""
        texts, values = split(data_json)
        #: The text of every top-level value; replaced, never changed in place (a step's copy
        #: keeps the one it was taken from as its base).
        self.texts: Texts = texts
        #: The data as conditions and loops read it, each value decoded once.
        self.data: LazyData = LazyData(texts, values)
        #: Bumped by every change of :attr:`texts`.
        self.data_version = 0
        #: The texts as the last checkpoint stored them, and whether the rows stored beside the
        #: run are known to be those of :attr:`stored_texts` (else the next checkpoint writes
        #: them all again: the run was just claimed with large values).
        self.stored_texts: Texts = texts
        self.aside_known = not any(is_aside(t) for t in texts.values())
        #: ``(step, changes)`` of each write made while a step held a private copy of the
        #: data (see :meth:`merge`); empty whenever no step runs.
        self.writes: list[tuple[str, Changes]] = []
        #: How many steps hold a private copy of the data.
        self.running = 0
        #: The marks of the private copies held (see :meth:`copy`), and the mark of
        #: ``writes[0]``: writes older than every copy held are dropped.
        self.marks: dict[int, int] = {}
        self.first_write = 0

    @property
    def data_json(self) -> str:
        """The data as one JSON text."""
        return join(self.texts)

    def note(self, kind: EventKind, step: str | None = None, **detail: Any) -> None:
        """Record a history event with the next checkpoint (the driver's)."""
        raise NotImplementedError

    def touch(self) -> None:
        """Mark progress that must be checkpointed (the driver's)."""
        raise NotImplementedError

    def stored_data(self) -> tuple[str, Any, bool]:
        """What the next checkpoint writes of the data: ``runs.data``, the changes to the
        values stored beside the run, and whether those rows are all written again."""
        known = self.aside_known
        data, values = stored_form(self.texts, self.stored_texts if known else None)
        return data, values, not known

    def stored(self, texts: Texts) -> None:
        """The data as it was when a checkpoint took it (``texts``, captured with
        :meth:`stored_data`) is durable. Not the data as it is now: a parallel branch may have
        changed it while the checkpoint was being committed, and that change is still to be
        written."""
        self.stored_texts, self.aside_known = texts, True

    def revert(self) -> None:
        """Go back to the data as the last checkpoint stored it."""
        self._apply(self.stored_texts, {})

    def _apply(self, texts: Texts, values: dict[str, Any]) -> None:
        """Make ``texts`` the data; ``values``: the values of keys already decoded."""
        old = self.data
        known = {
            key: value
            for key, value in dict.items(old)
            if value is not UNREAD and old.texts.get(key) is texts.get(key)
        }
        known.update(values)  # (a key of ``values`` that ``texts`` lacks is not taken)
        self.texts, self.data = texts, LazyData(texts, known)
        self.data_version += 1

    def _wrote(self, step: str, changes: Changes) -> None:
        if self.running:
            self.writes.append((step, changes))
            self._forget()

    def set_data(self, key: str, value: Any, where: str | None = None) -> None:
        """Store a value in the run's data (a wait's result)."""
        text, stored = encode(key, value, where or f"step {key!r}")
        before = self.texts.get(key)
        self._apply({**self.texts, key: text}, {key: stored})
        self._wrote(key, {key: (before, text)})
        self.touch()

    def set_slot(self, key: str, index: int, value: Any) -> None:
        """Store ``value`` at ``data[key][index]`` (a parallel map's result), encoding only the
        chunk of the list that holds it; ``value`` is already in its stored form."""
        text = self.texts.get(key)
        items = self.data.get(key)
        if type(text) is not tuple or type(items) is not list or len(items) <= index:
            results = list(items) if isinstance(items, list) else []
            results[index] = value
            self.set_data(key, results)
            return
        items[index] = value  # the driver's own decoded list: no step's copy shares it
        at = index // CHUNK
        chunk = json.dumps(items[at * CHUNK : (at + 1) * CHUNK], separators=(",", ":"))[1:-1]
        after = (*text[:at], chunk, *text[at + 1 :])
        self.texts = {**self.texts, key: after}
        self.data.texts = self.texts
        self.data_version += 1
        self._wrote(key, {key: (text, after)})
        self.touch()

    def copy(self) -> tuple[LazyData, Base, int]:
        """A private copy of the data for a step about to run: the copy, its base (for
        :meth:`seal` and :meth:`merge`) and the mark of the writes made from now on. Pair with
        :meth:`release`."""
        self.running += 1
        mark = self.first_write + len(self.writes)
        self.marks[mark] = self.marks.get(mark, 0) + 1
        return LazyData(self.texts), Base(self.texts, self.data_version), mark

    def release(self, mark: int) -> None:
        """A step's private copy (taken at ``mark``) is done with (completed, failed, timed
        out or cancelled)."""
        self.running -= 1
        if self.marks[mark] > 1:
            self.marks[mark] -= 1
        else:
            del self.marks[mark]

    def seal(self, private: Any, base: Base, where: str) -> Sealed:
        """What a step changed of its private copy; :class:`~treadle.DataError` if it left
        what has no JSON form."""
        return seal(private, base.texts, where)

    def _forget(self) -> None:
        """Drop the writes that no copy held can meet (a long parallel map makes many)."""
        oldest = min(self.marks, default=self.first_write + len(self.writes))
        if oldest > self.first_write:
            del self.writes[: oldest - self.first_write]
            self.first_write = oldest

    def merge(self, step: str, sealed: Sealed, base: Base, since: int) -> None:
        """Take ``step``'s private copy of the data (taken at ``base``) into the run's.

        The one place where concurrent steps meet (see "How branch writes meet" in API.md):
        unless nobody wrote meanwhile, each key the step changed is merged three ways; each
        conflict is recorded with the step that wrote the value it overwrote (found among the
        writes since ``since``).
        """
        changed = sealed.changed
        # As with one JSON text of the data: nobody wrote meanwhile (every sequential step) or
        # the data is as it was, in order: the step's copy is the data; the data is as it was
        # (in another order) or the step changed nothing: the one that changed it wins.
        same = self.data_version == base.version
        alike = same or self.texts == base.texts
        if same or (alike and (changed or list(self.texts) == list(base.texts))):
            if changed or sealed.keys != list(self.texts):
                texts: Texts = {}
                for key in sealed.keys:
                    text = changed.get(key, base.texts.get(key))
                    if text is not None:
                        texts[key] = text
                self._apply(texts, sealed.values)
        elif changed:
            self._merge_keys(step, sealed, base, since)
        if self.running:
            self.writes.append((step, {k: (base.texts.get(k), t) for k, t in changed.items()}))
            self._forget()
        else:
            self.first_write += len(self.writes)
            self.writes.clear()

    def _merge_keys(self, step: str, sealed: Sealed, base: Base, since: int) -> None:
        now = self.texts
        texts, values = dict(now), dict[str, Any]()
        changed = sealed.changed
        for key in [k for k in now if k in changed] + [k for k in changed if k not in now]:
            theirs, before, current = changed[key], base.texts.get(key), now.get(key)
            if current is before or current == before:  # only this step changed it
                if theirs is None:
                    texts.pop(key, None)
                else:
                    texts[key], values[key] = theirs, sealed.values[key]
                continue
            # Parsed again, not taken as they are: the step's values may hold tuples.
            merged = merge_at(_value(before), _value(theirs), _value(current), (key,))
            for conflict in merged.conflicts:
                other = self._writer(conflict.path, since)
                self.note(EventKind.DATA_CONFLICT, step, other=other, **conflict.event_detail())
            if merged.value is ABSENT:
                texts.pop(key, None)
            else:
                texts[key], values[key] = encode(key, merged.value, f"step {step!r}")
        self._apply(texts, values)

    def _writer(self, path: tuple[Any, ...], since: int) -> str | None:
        """The step whose write since ``since`` changed the value at ``path``."""
        key = path[0]
        for name, changes in reversed(self.writes[max(0, since - self.first_write) :]):
            if key in changes:
                before, after = changes[key]
                if wrote(_value(before), _value(after), path[1:]):
                    return name
        return None
