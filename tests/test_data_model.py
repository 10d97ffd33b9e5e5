"""The run's data held per top-level key: a step's lazy copy behaves as a dict, and merging
key by key gives exactly what the whole three-way merge gives ("How branch writes meet")."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_merge import KEYS, VALUES

from treadle import DataError
from treadle._interpreter.data import RunData
from treadle._interpreter.lazy import UNREAD, LazyData
from treadle._interpreter.texts import CHUNK, split, stored_form
from treadle._merge import MergeResult, merge, wrote
from treadle._state import EventKind
from treadle.persistence._values import assemble

DATA = {"a": 1, "b": [1, {"c": "d"}], "big": list(range(CHUNK + 5)), "e": None}


class Data(RunData):
    """A RunData that records the events it notes."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.noted: list[tuple[str | None, dict[str, Any]]] = []
        self.init_data(json.dumps(data))

    def note(self, kind: EventKind, step: str | None = None, **detail: Any) -> None:
        assert kind is EventKind.DATA_CONFLICT
        self.noted.append((step, detail))

    def touch(self) -> None:
        pass


def view() -> LazyData:
    return LazyData(split(json.dumps(DATA))[0])


def unread(data: LazyData) -> set[str]:
    return {k for k, v in dict.items(data) if v is UNREAD}


def test_a_step_copy_decodes_only_what_is_read() -> None:
    data = view()
    assert len(data) == 4 and "big" in data and list(data) == ["a", "b", "big", "e"]
    # Small values are decoded at once, so code that reads the dict's storage directly (a C
    # extension) sees them; only the large one waits, and keys, len and in do not decode it.
    assert unread(data) == {"big"}
    assert list(dict.values(data))[:2] == [1, [1, {"c": "d"}]]
    assert data["a"] == 1 and data.get("b") == [1, {"c": "d"}] and data.get("zz", 5) == 5
    assert unread(data) == {"big"}
    assert data["big"][-1] == CHUNK + 4 and unread(data) == set()
    with pytest.raises(KeyError):
        data["zz"]


@pytest.mark.parametrize(
    "read",
    [
        dict,
        lambda d: {**d},
        lambda d: json.loads(json.dumps(d)),
        lambda d: d.copy(),
        copy.deepcopy,
        copy.copy,
        lambda d: pickle.loads(pickle.dumps(d)),
        lambda d: dict(zip(d.keys(), d.values(), strict=True)),
        lambda d: dict(d.items()),
        lambda d: d | {},
        lambda d: {} | d,
        lambda d: eval(repr(d)),
    ],
)
def test_every_way_of_reading_the_whole_copy_sees_every_value(read: Any) -> None:
    got = read(view())
    assert got == DATA and type(got) is dict
    assert view() == DATA
    assert DATA == view()  # noqa: SIM300  (the reflected comparison is the point)
    assert (view() != DATA) is False


def test_the_copy_changes_like_a_dict() -> None:
    data = view()
    assert data.pop("a") == 1 and data.pop("zz", None) is None
    assert data.setdefault("b", []) == [1, {"c": "d"}] and data.setdefault("n", 3) == 3
    data.update(x=1)
    data["b"].append(2)
    del data["e"]
    assert data.popitem() in {("x", 1), ("n", 3)}
    assert set(data) == {"b", "big", "n"} or set(data) == {"b", "big", "x"}
    with pytest.raises(TypeError):
        hash(data)


def test_only_what_changed_is_written_beside_the_run() -> None:
    texts = split(json.dumps(DATA))[0]
    marked, writes = stored_form(texts, None)
    assert marked.startswith("~aside:") and [w[:2] for w in writes or []] == [
        ("big", 1),
        ("big", 2),
    ]
    rows = [{"key": k, "part": p, "content": c} for k, p, c in writes or []]
    assert json.loads(assemble(marked, rows)) == DATA
    assert stored_form(texts, texts)[1] == [], "unchanged: nothing to write"
    data = Data(DATA)
    data.stored(data.texts)
    data.set_slot("big", CHUNK + 1, "x")
    assert [w[:2] for w in data.stored_data()[1]] == [("big", 2)], "one chunk of the list"
    data.set_data("big", [1, 2])
    assert data.stored_data()[1] == [("big", 0, None)], "small again: its rows go"


def test_a_change_made_while_a_checkpoint_commits_is_written_by_the_next_one() -> None:
    # A parallel map's iteration stores its result while the checkpoint of another one is
    # being committed: that checkpoint took the data before the change, so the change must
    # still count as unwritten once it is durable (or it would never be written at all).
    data = Data(DATA)
    data.stored(data.texts)
    data.set_slot("big", 1, "first")
    taken, (_, written, _) = data.texts, data.stored_data()
    assert [w[:2] for w in written] == [("big", 1)]
    data.set_slot("big", CHUNK + 2, "meanwhile")  # during the commit
    data.stored(taken)  # the commit is done
    assert [w[:2] for w in data.stored_data()[1]] == [("big", 2)], "the later change is due"


def test_a_value_without_json_form_is_a_data_error_naming_it() -> None:
    data = Data({"a": 1})
    private, base, mark = data.copy()
    private["x"] = {"y": object()}
    data.release(mark)
    with pytest.raises(DataError, match=r"step 's'.*at x\.y"):
        data.seal(private, base, "step 's'")


SIDES = st.one_of(st.just("same"), st.just("delete"), VALUES.map(lambda v: ("set", v)))


@st.composite
def three_sides(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A base and two sides made from it key by key: kept, deleted or set to a new value."""
    base = draw(st.dictionaries(KEYS, VALUES, max_size=4))
    keys = sorted(set(base) | set(draw(st.lists(KEYS, max_size=3))))
    sides: list[dict[str, Any]] = [{}, {}]
    for side in sides:
        for key in draw(st.permutations(keys)):
            what = draw(SIDES)
            if what == "same" and key in base:
                side[key] = copy.deepcopy(base[key])
            elif isinstance(what, tuple):
                side[key] = what[1]
    return base, sides[0], sides[1]


def sides_of(sides: tuple[Any, Any, Any]) -> list[tuple[str, Any]]:
    return list(zip(("base", "theirs", "now"), sides, strict=True))


@settings(max_examples=400, deadline=None)
@given(three_sides())
def test_merging_key_by_key_is_the_whole_three_way_merge(
    sides: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
) -> None:
    base, theirs, now = sides
    data = Data(base)
    mine, mine_base, mine_mark = data.copy()
    other, other_base, other_mark = data.copy()
    other.clear()
    other.update(copy.deepcopy(now))
    data.release(other_mark)
    data.merge("other", data.seal(other, other_base, "other"), other_base, other_mark)
    mine.clear()
    mine.update(copy.deepcopy(theirs))
    data.release(mine_mark)
    data.merge("step", data.seal(mine, mine_base, "step"), mine_base, mine_mark)

    # The oracle: the whole data's merge as the driver made it with one JSON text of the data.
    text = {name: json.dumps(side, separators=(",", ":")) for name, side in sides_of(sides)}
    if text["now"] == text["base"]:
        expected = MergeResult(json.loads(text["theirs"]))
    elif text["theirs"] == text["base"]:
        expected = MergeResult(json.loads(text["now"]))
    else:
        expected = merge(*(json.loads(text[name]) for name in ("base", "theirs", "now")))
    assert data.data_json == json.dumps(expected.value, separators=(",", ":"))
    assert data.noted == [
        (
            "step",
            {"other": "other" if wrote(base, now, c.path) else None, **c.event_detail()},
        )
        for c in expected.conflicts
    ]
