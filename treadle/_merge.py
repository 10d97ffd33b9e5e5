"""How concurrent writes to a run's data meet: a three-way merge of JSON values.

Every step works on a private copy of the run's data, taken when it starts (the *base*). When it
completes, its copy (*theirs*) is merged into the data as it is then (*now*), which may hold what
other steps — parallel branches, waits resumed in branches — completed meanwhile:

- A value that only one side changed (added, changed, deleted) is taken from that side, at any
  depth: objects are merged key by key, lists element by element.
- Lists that both sides extended (each at least as long as the base list) keep both
  extensions, ``now``'s first and then ``theirs``'s: that is completion order, since ``now``
  already holds the earlier completions. Two sides that append equal items get both, as they
  would with shared memory.
- Objects (or lists) that both sides created where the base had none, or had another type, are
  merged as if the base had been empty.
- Anything else that both sides changed is a conflict: ``theirs`` (the later completion) wins,
  as with shared memory, and a :class:`Conflict` records where and what was overwritten. That
  holds when both wrote the same value too: ``count`` going from 0 to 1 on both sides may be
  two ``count += 1`` of which one is lost, and a merge cannot tell that from two ``count = 1``.
  Only a key that both sides deleted is no conflict: no value is lost.

Values are compared strictly, as JSON sees them: ``1``, ``1.0`` and ``true`` differ.

Inputs are never changed; the result may share parts with ``theirs`` and ``now``. A purpose-made
walk rather than a diff library: none keeps both sides' appends to a list, which is the
"collect results" pattern this exists for, and the common case must cost nothing.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

#: One step of a key path: an object's key or a list's index.
PathPart = str | int
#: Where a value is in the data: ``("orders", 3, "status")``.
KeyPath = tuple[PathPart, ...]


class _Absent:
    """The marker of a key that one side does not have (never there, or deleted)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


#: The value at a path that does not exist: a deleted key in :attr:`Conflict.theirs` or
#: :attr:`Conflict.now`, or a key added by both sides in :attr:`Conflict.base`.
ABSENT: Final[Any] = _Absent()

_NAME = re.compile(r"[^\W\d][\w-]*")
_EMPTY: Final[dict[str, Any]] = {}


def format_path(path: KeyPath) -> str:
    """A key path as people read it: ``orders[3].status``; ``["a b"].c`` for other keys."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _NAME.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text


def _preview(value: Any, limit: int) -> str | None:
    if value is ABSENT:
        return None
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Conflict:
    """Both sides changed the value at :attr:`path` differently; :attr:`theirs` was kept."""

    #: Where the value is, from the root of the data.
    path: KeyPath
    #: The value at the step's start (:data:`ABSENT` if there was none).
    base: Any
    #: The completing step's value, now in the data (:data:`ABSENT`: it deleted the key).
    theirs: Any
    #: The value it replaced, written meanwhile by another step (:data:`ABSENT`: deleted).
    now: Any

    @property
    def readable_path(self) -> str:
        """:attr:`path` as people read it (see :func:`format_path`)."""
        return format_path(self.path)

    def event_detail(self, limit: int = 200) -> dict[str, Any]:
        """The fields of a ``data_conflict`` history event: where, and both values as JSON.

        ``kept`` is the value the data has now and ``lost`` the one it overwrote, each cut to
        ``limit`` characters, or None where that side had deleted the key.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        return {
            "path": self.readable_path,
            "kept": _preview(self.theirs, limit),
            "lost": _preview(self.now, limit),
        }


class MergeResult(NamedTuple):
    """What :func:`merge` made: the merged value, and every conflict it settled."""

    #: The merged data.
    value: Any
    #: Every value that both sides changed, in the order of the walk (``now``'s keys first).
    conflicts: tuple[Conflict, ...] = ()


def merge(base: Any, theirs: Any, now: Any) -> MergeResult:
    """Merge a completed step's copy of the data (``theirs``) into the data as it is ``now``.

    ``base`` is the data when the step started. The rules are in this module's docstring. When
    ``now is base`` (no one else wrote meanwhile), the result is ``theirs`` at no cost; a caller
    holding the data as JSON text checks ``now_json == base_json`` first, which is as exact.
    """
    if now is base:
        return MergeResult(theirs)
    if theirs is base:
        return MergeResult(now)
    conflicts: list[Conflict] = []
    value = _pick(base, theirs, now, (), conflicts)
    return MergeResult(value, tuple(conflicts))


def value_at(value: Any, path: KeyPath) -> Any:
    """The value at ``path`` inside ``value``, or :data:`ABSENT` if there is none."""
    for part in path:
        if type(value) is dict and isinstance(part, str):
            value = value.get(part, ABSENT)
        elif type(value) is list and type(part) is int and 0 <= part < len(value):
            value = value[part]
        else:
            return ABSENT
    return value


def wrote(base: Any, result: Any, path: KeyPath) -> bool:
    """Whether a step that started with ``base`` and ended with ``result`` changed ``path``.

    This finds which earlier step wrote the value that a :class:`Conflict` overwrote.
    """
    return not _same(value_at(base, path), value_at(result, path))


def _same(a: Any, b: Any) -> bool:
    """Whether two JSON values are equal as JSON sees them (``1``, ``1.0``, ``true`` differ)."""
    if a is b:
        return True
    if type(a) is not type(b) or a != b:
        return False
    return _alike(a, b)


def _alike(a: Any, b: Any) -> bool:
    """Whether two values of one type that are ``==`` are also equal as JSON.

    ``==`` runs at C speed but equates ``1``, ``1.0`` and ``True``, and ``0.0`` with ``-0.0``:
    this walks only what can hide such a difference, containers and floats.
    """
    kind = type(a)
    if kind is dict:
        entries: Any = a.items()
    elif kind is list:
        entries = enumerate(a)
    elif kind is float:
        return a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b)
    else:
        return True
    for key, one in entries:
        other = b[key]  # there: a == b has the same keys, or the same length
        inner = type(one)
        if inner is not type(other):
            return False
        if (inner is dict or inner is list or inner is float) and not _alike(one, other):
            return False
    return True


def _pick(base: Any, theirs: Any, now: Any, path: KeyPath, out: list[Conflict]) -> Any:
    if _same(theirs, base):
        return now
    if _same(now, base):
        return theirs
    kind = type(theirs)
    if kind is dict and type(now) is dict:
        return _merge_dicts(base if type(base) is dict else _EMPTY, theirs, now, path, out)
    if kind is list and type(now) is list:
        shared = base if type(base) is list else []
        if len(shared) <= len(theirs) and len(shared) <= len(now):
            return _merge_lists(shared, theirs, now, path, out)
    if theirs is ABSENT and now is ABSENT:
        return ABSENT
    out.append(Conflict(path, base, theirs, now))
    return theirs


def _merge_dicts(
    base: dict[str, Any],
    theirs: dict[str, Any],
    now: dict[str, Any],
    path: KeyPath,
    out: list[Conflict],
) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, value in now.items():
        picked = _pick(base.get(key, ABSENT), theirs.get(key, ABSENT), value, (*path, key), out)
        if picked is not ABSENT:
            merged[key] = picked
    for key, value in theirs.items():
        if key not in now:
            picked = _pick(base.get(key, ABSENT), value, ABSENT, (*path, key), out)
            if picked is not ABSENT:
                merged[key] = picked
    return merged


def _merge_lists(
    base: list[Any], theirs: list[Any], now: list[Any], path: KeyPath, out: list[Conflict]
) -> list[Any]:
    size = len(base)
    merged = [_pick(base[i], theirs[i], now[i], (*path, i), out) for i in range(size)]
    merged += now[size:]
    merged += theirs[size:]
    return merged


def merge_at(base: Any, theirs: Any, now: Any, path: KeyPath) -> MergeResult:
    """:func:`merge` of the values at ``path`` (conflicts are reported with the whole path):
    a run's data is merged key by key, only where a step changed it. :data:`ABSENT` stands
    for a key that a side does not have."""
    conflicts: list[Conflict] = []
    value = _pick(base, theirs, now, path, conflicts)
    return MergeResult(value, tuple(conflicts))
