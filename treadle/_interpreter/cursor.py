"""The cursor: where a run is, the durable JSON document written with every checkpoint.

- ``v``: the format's version (:data:`VERSION`); a cursor without it is of the current format
  (written before the field existed, in the same format).
- ``n``: node entries keyed by path. A path is the chain of step names from the root (see
  :func:`join`), with ``#i`` after a loop for its iteration (``ship-items#2/ship``). A
  sequence's position is kept under its prefix followed by ``@`` (``@`` for the root) as a
  :class:`Position`. When a composite step completes, every entry below it is dropped, so the
  cursor stays as small as the deepest position, however long the run.
- ``c``: the compensation stack: ``[path, step name, index, item]`` of every completed step that
  has a ``compensate`` function, in completion order.
- ``f``: set once the run has failed or been cancelled and is compensating; while the
  compensation on top of ``c`` waits for a retry, its ``retry`` holds the attempts and the time.
- ``p`` in a node's entry: the parameters computed for it from the run's data when it started
  (see :mod:`treadle._params`), by name, in JSON form.
- ``h`` (only while the run is HELD, or woken from it by an operator): what holds it, a step
  that failed for good (its name and path) or, ``step`` None, its definition.
- ``s`` (only in runs of a workflow with a concurrency limit, once admitted or queued): the
  run's concurrency key, computed once (see :mod:`treadle._concurrency`).

The keys are short because every checkpoint writes them; this module is their one definition.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict, cast

#: The cursor format written by this version of treadle: 2 since loops keep the count of their
#: elements (``n``) instead of the elements, and parallel maps have entries (``k: "map"``); a
#: treadle that reads only format 1 refuses these cursors instead of misreading them.
VERSION = 2


class Position(TypedDict):
    """How far a sequence got: the index of its next step and the name of the last one."""

    i: int
    n: str


class ActionEntry(TypedDict):
    """A step waiting for its next attempt: attempts made, retry time (epoch seconds); or,
    without ``r``, a step whose computed parameters (``p``) are recorded before it runs.
    ``q``: the time (epoch seconds, the database's clock) that the next attempt reserved of its
    rate limiter while it is parked for it (see :mod:`.rates`)."""

    k: str  # "action" or "custom"
    a: int
    r: NotRequired[float]
    p: NotRequired[dict[str, Any]]
    q: NotRequired[float]


class IfEntry(TypedDict):
    """The branch an ``if_`` took (-1: none)."""

    k: Literal["if"]
    b: int


# "in" is a keyword: the functional form.
LoopEntry = TypedDict(
    "LoopEntry",
    {
        "k": Literal["loop"],
        "i": int,
        "n": NotRequired[int],
        "items": NotRequired[list[Any] | None],
        "in": bool,
    },
)
"""A loop: its iteration, whether inside the body, and for a ``for_each`` the number of its
elements (``n``; they stay in the run's data). Cursors written before ``n`` hold the elements
themselves (``items``), and are read as they are."""


class MapEntry(TypedDict):
    """A parallel map: its element count, the first index never started, and the indexes of
    the completed and the failed iterations as ranges ``[start, end)``, so that the entry
    stays as small as the gaps between them; the iterations started and not settled (below
    ``next``, in no range) run again on recovery."""

    k: Literal["map"]
    n: int
    next: int
    done: list[list[int]]
    failed: list[list[int]]


class ParallelEntry(TypedDict):
    """The branches of a parallel step that completed and that failed, by name."""

    k: Literal["parallel"]
    done: list[str]
    failed: list[str]


class SignalEntry(TypedDict):
    """A signal wait and its deadline (epoch seconds, or None)."""

    k: Literal["signal"]
    dl: float | None
    p: NotRequired[dict[str, Any]]


class ApprovalEntry(TypedDict):
    """An approval wait: its deadline, who approved so far, the last comment."""

    k: Literal["approval"]
    dl: float | None
    by: NotRequired[list[str | None]]
    comment: NotRequired[str]
    p: NotRequired[dict[str, Any]]


class SleepEntry(TypedDict):
    """A durable timer and its due time (epoch seconds)."""

    k: Literal["sleep"]
    at: float
    p: NotRequired[dict[str, Any]]


class ChildEntry(TypedDict):
    """A sub-workflow step and the id of the child run it started."""

    k: Literal["subworkflow"]
    child: str
    p: NotRequired[dict[str, Any]]
    end: NotRequired[str]  # on_parent_end, when not "cancel"


Entry = (
    ActionEntry
    | IfEntry
    | LoopEntry
    | MapEntry
    | ParallelEntry
    | SignalEntry
    | ApprovalEntry
    | SleepEntry
    | ChildEntry
)
"""A node's entry, by the kind of the node (``k``)."""
WaitEntry = SignalEntry | ApprovalEntry

Nodes = dict[str, Entry | Position]
"""The entries of the nodes and the positions of the sequences, by path."""

#: ``[path, step name, loop index, loop item]`` of a completed step to compensate.
CompensationEntry = list[Any]


class CompensationRetry(TypedDict):
    """The compensation on top of the stack waits: attempts made, retry time (epoch seconds)."""

    a: int
    r: float


class Failure(TypedDict):
    """Why the run is compensating, what went wrong while it did, and the retry it waits for."""

    status: Literal["failed", "cancelled"]
    error: str
    problems: NotRequired[list[str]]
    retry: NotRequired[CompensationRetry]


class Hold(TypedDict):
    """What holds a HELD run: the step that failed for good (name and path), or None for a
    position that its definition does not have."""

    step: str | None
    path: str | None


class Cursor(TypedDict):
    """The whole document."""

    v: NotRequired[int]
    n: Nodes
    c: list[CompensationEntry]
    f: Failure | None
    h: NotRequired[Hold]
    s: NotRequired[str]


NEW = json.dumps({"v": VERSION, "n": {}, "c": [], "f": None}, separators=(",", ":"))
"""The cursor of a run that has not started."""


class CursorVersionError(ValueError):
    """A cursor written by a newer treadle than this one."""


def load(text: str) -> Cursor:
    """Parse a stored cursor (of any version this code reads)."""
    cursor = cast(Cursor, json.loads(text))
    version = cursor.get("v", VERSION)
    if version > VERSION:
        raise CursorVersionError(
            f"the run's cursor has format {version}, newer than this treadle reads ({VERSION})"
        )
    return cursor


def dump(
    nodes: Nodes,
    comp: list[CompensationEntry],
    failure: Failure | None,
    hold: Hold | None = None,
    slot: str | None = None,
) -> str:
    """The cursor as stored."""
    document: dict[str, Any] = {"v": VERSION, "n": nodes, "c": comp, "f": failure}
    if hold is not None:
        document["h"] = hold
    if slot is not None:
        document["s"] = slot
    return json.dumps(document)


# The path grammar ----------------------------------------------------------------------------


def join(prefix: str, name: str) -> str:
    """The path of step ``name`` in the sequence whose prefix is ``prefix``."""
    return prefix + name


def inside(path: str) -> str:
    """The prefix of the steps inside the node at ``path``."""
    return path + "/"


def iteration(path: str, i: int) -> str:
    """The path of iteration ``i`` of the loop at ``path`` (its body is ``inside`` it)."""
    return f"{path}#{i}"


def below(path: str) -> tuple[str, str]:
    """The prefixes of every key under ``path`` (its children and its iterations)."""
    return (path + "/", path + "#")


def position_key(prefix: str) -> str:
    """The key of the position of the sequence whose prefix is ``prefix``."""
    return prefix + "@"


def is_position(key: str) -> bool:
    """Whether ``key`` holds a sequence's position (else a node's entry)."""
    return key.endswith("@")


def sequence_path(key: str) -> str:
    """The path of the node whose sequence a position key is of ("" for the root)."""
    return key[:-2] if key.endswith("/@") else ""


def last_name(path: str) -> str:
    """The step name a path ends with (without a loop iteration)."""
    return path.rsplit("/", 1)[-1].split("#", 1)[0]


# Typed access to the entries: the kind at a path is known from the node that owns it. -------


def action_at(nodes: Nodes, path: str) -> ActionEntry | None:
    """The entry of a step at ``path`` (only while it waits for a retry)."""
    return cast("ActionEntry | None", nodes.get(path))


def if_at(nodes: Nodes, path: str) -> IfEntry | None:
    """The recorded decision of the ``if_`` at ``path``."""
    return cast("IfEntry | None", nodes.get(path))


def loop_at(nodes: Nodes, path: str) -> LoopEntry | None:
    """The entry of the loop at ``path``."""
    return cast("LoopEntry | None", nodes.get(path))


def map_at(nodes: Nodes, path: str) -> MapEntry | None:
    """The entry of the parallel map at ``path``."""
    return cast("MapEntry | None", nodes.get(path))


def parallel_at(nodes: Nodes, path: str) -> ParallelEntry | None:
    """The entry of the parallel step at ``path``."""
    return cast("ParallelEntry | None", nodes.get(path))


def wait_at(nodes: Nodes, path: str) -> WaitEntry | None:
    """The entry of the signal or approval wait at ``path``."""
    return cast("WaitEntry | None", nodes.get(path))


def sleep_at(nodes: Nodes, path: str) -> SleepEntry | None:
    """The entry of the timer at ``path``."""
    return cast("SleepEntry | None", nodes.get(path))


def child_at(nodes: Nodes, path: str) -> ChildEntry | None:
    """The entry of the sub-workflow step at ``path``."""
    return cast("ChildEntry | None", nodes.get(path))


def position_at(nodes: Nodes, key: str) -> Position | None:
    """The position recorded under ``key``."""
    return cast("Position | None", nodes.get(key))
