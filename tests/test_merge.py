"""The three-way merge of run data: no change that only one step made is ever lost.

``merge(base, theirs, now)``: ``base`` is the data when a step started, ``theirs`` its copy when
it completed, ``now`` the data as other steps left it meanwhile. The property tests build both
sides from one random base by random edits; the oracle compares values as JSON text, so that
``1``, ``1.0`` and ``true`` stay different.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treadle._merge import (
    ABSENT,
    Conflict,
    KeyPath,
    format_path,
    merge,
    value_at,
    wrote,
)

KEYS = st.text(alphabet="abc", min_size=1, max_size=2)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False, allow_infinity=False, width=16)
    | st.text(alphabet="xy", max_size=2)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)
BASES = st.dictionaries(KEYS, VALUES, max_size=4)

Op = tuple[str, KeyPath, Any]  # ("set" | "delete" | "append", path, value)


def text(value: Any) -> str:
    """The oracle's equality: canonical JSON text."""
    return "ABSENT" if value is ABSENT else json.dumps(value, sort_keys=True)


def sites(value: Any, path: KeyPath = ()) -> list[tuple[str, KeyPath]]:
    """Every place of ``value`` an edit can go: keys and elements to set, keys to delete,
    objects to add a key to and lists to append to."""
    found: list[tuple[str, KeyPath]] = []
    if type(value) is dict:
        found.append(("add", path))
        for key, inner in value.items():
            found += [("set", (*path, key)), ("delete", (*path, key))]
            found += sites(inner, (*path, key))
    elif type(value) is list:
        found.append(("append", path))
        for index, inner in enumerate(value):
            found.append(("set", (*path, index)))
            found += sites(inner, (*path, index))
    return found


def starts(prefix: KeyPath, path: KeyPath) -> bool:
    return path[: len(prefix)] == prefix


def collide(one: Op, other: Op) -> bool:
    """Whether two edits touch the same value: then their order would matter."""
    (kind, path, _), (other_kind, other_path, _) = one, other
    if kind == "append" and other_kind == "append":
        return False  # appends to one list are all kept, in order
    if kind == "append":
        return starts(other_path, path)
    if other_kind == "append":
        return starts(path, other_path)
    return starts(path, other_path) or starts(other_path, path)


def apply(base: dict[str, Any], ops: list[Op]) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for kind, path, value in ops:
        if kind == "append":
            value_at(data, path).append(copy.deepcopy(value))
            continue
        parent = value_at(data, path[:-1])
        if kind == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(value)
    return data


@st.composite
def independent_edits(draw: st.DrawFn) -> tuple[dict[str, Any], list[Op], list[Op]]:
    """A base and two sides' edits of it of which no two touch the same value."""
    base = draw(BASES)
    places = sites(base)
    kept: list[tuple[str, Op]] = []
    for _ in range(draw(st.integers(0, 6))):
        kind, path = draw(st.sampled_from(places))
        if kind == "add":
            key = draw(KEYS)
            if key in value_at(base, path):
                continue
            kind, path = "set", (*path, key)
        op: Op = (kind, path, draw(VALUES))
        if not any(collide(op, other) for _, other in kept):
            kept.append((draw(st.sampled_from(["theirs", "now"])), op))
    return (
        base,
        [op for side, op in kept if side == "theirs"],
        [op for side, op in kept if side == "now"],
    )


def leaves(value: Any, path: KeyPath = ()) -> list[KeyPath]:
    if type(value) is dict:
        return [p for key, inner in value.items() for p in leaves(inner, (*path, key))]
    if type(value) is list:
        return [p for index, inner in enumerate(value) for p in leaves(inner, (*path, index))]
    return [path]


# Properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(independent_edits())
def test_every_change_that_only_one_side_made_survives(
    edits: tuple[dict[str, Any], list[Op], list[Op]],
) -> None:
    base, theirs_ops, now_ops = edits
    theirs, now = apply(base, theirs_ops), apply(base, now_ops)
    # Both sides' edits, in completion order: what shared memory would have.
    expected = apply(apply(base, now_ops), theirs_ops)
    result = merge(base, theirs, now)
    assert text(result.value) == text(expected)
    assert result.conflicts == ()


@settings(max_examples=300, deadline=None)
@given(BASES, st.data())
def test_a_conflict_is_reported_exactly_where_both_sides_changed_a_leaf(
    base: dict[str, Any], data: st.DataObject
) -> None:
    paths = [p for p in leaves(base) if p]
    edits = st.dictionaries(st.sampled_from(paths), SCALARS) if paths else st.just({})
    theirs_edits, now_edits = data.draw(edits), data.draw(edits)
    theirs = apply(base, [("set", p, v) for p, v in theirs_edits.items()])
    now = apply(base, [("set", p, v) for p, v in now_edits.items()])

    def changed(side: dict[str, Any], path: KeyPath) -> bool:
        return text(value_at(side, path)) != text(value_at(base, path))

    result = merge(base, theirs, now)

    both = {p for p in paths if changed(theirs, p) and changed(now, p)}
    assert {c.path for c in result.conflicts} == both
    for conflict in result.conflicts:
        assert text(conflict.base) == text(value_at(base, conflict.path))
        assert text(conflict.theirs) == text(value_at(theirs, conflict.path))
        assert text(conflict.now) == text(value_at(now, conflict.path))
    for path in paths:
        winner = theirs if changed(theirs, path) else now
        assert text(value_at(result.value, path)) == text(value_at(winner, path))


@settings(max_examples=200, deadline=None)
@given(independent_edits(), independent_edits())
def test_conflicts_name_both_changed_values_and_keep_the_later_one(
    one: tuple[dict[str, Any], list[Op], list[Op]],
    two: tuple[dict[str, Any], list[Op], list[Op]],
) -> None:
    """Edits that may collide: whatever is reported was changed by both, and theirs is kept."""
    base, theirs_ops, _ = one
    theirs = apply(base, theirs_ops)
    now = apply(base, [op for op in two[1] + two[2] if _fits(base, op)])
    frozen = copy.deepcopy((base, theirs, now))
    result = merge(base, theirs, now)
    assert text((base, theirs, now)) == text(frozen), "merge changed its inputs"
    for conflict in result.conflicts:
        assert text(conflict.theirs) == text(value_at(theirs, conflict.path))
        assert text(conflict.now) == text(value_at(now, conflict.path))
        assert text(conflict.base) != text(conflict.theirs)
        assert text(conflict.base) != text(conflict.now)
        assert text(value_at(result.value, conflict.path)) == text(conflict.theirs)


def _fits(base: dict[str, Any], op: Op) -> bool:
    """Whether an edit drawn for another base can be applied to this one."""
    kind, path, _ = op
    target = value_at(base, path if kind == "append" else path[:-1])
    if kind == "append":
        return type(target) is list
    key = path[-1]
    if type(target) is dict:
        return type(key) is str and (kind == "set" or key in target)
    return type(target) is list and kind == "set" and type(key) is int and key < len(target)


@settings(max_examples=200, deadline=None)
@given(BASES, BASES)
def test_a_side_that_changed_nothing_gives_the_other_side(
    base: dict[str, Any], other: dict[str, Any]
) -> None:
    for unchanged in (base, copy.deepcopy(base)):
        assert text(merge(base, unchanged, other).value) == text(other)
        assert text(merge(base, other, unchanged).value) == text(other)
        assert merge(base, unchanged, other).conflicts == ()
        assert merge(base, other, unchanged).conflicts == ()


# Examples --------------------------------------------------------------------------------


def test_two_branches_that_append_and_count_keep_both_entries_and_report_the_count() -> None:
    base = {"log": [], "count": 0}
    first = {"log": ["email sent"], "count": 1}  # completed first: already in the data
    second = {"log": ["sms sent"], "count": 1}  # completing now
    result = merge(base, second, first)
    assert result.value == {"log": ["email sent", "sms sent"], "count": 1}
    # Both wrote count: two `count += 1` of which one is lost, as far as a merge can tell.
    assert result.conflicts == (Conflict(("count",), 0, 1, 1),)
    assert result.conflicts[0].event_detail() == {"path": "count", "kept": "1", "lost": "1"}


def test_a_sequential_step_gets_its_own_copy_back_as_it_is() -> None:
    base = {"a": 1}
    theirs = {"a": 2, "b": [1]}
    assert merge(base, theirs, base).value is theirs


def test_keys_changed_on_different_sides_are_all_kept_at_any_depth() -> None:
    base = {"order": {"id": 7, "status": "new", "lines": [{"sku": "a", "qty": 1}]}}
    theirs = {"order": {"id": 7, "status": "paid", "lines": [{"sku": "a", "qty": 1}]}}
    now = {"order": {"id": 7, "status": "new", "lines": [{"sku": "a", "qty": 2}], "note": "x"}}
    result = merge(base, theirs, now)
    assert result.value == {
        "order": {"id": 7, "status": "paid", "lines": [{"sku": "a", "qty": 2}], "note": "x"}
    }
    assert result.conflicts == ()


def test_a_conflict_deep_in_a_list_names_its_path() -> None:
    orders = [{"status": "new"} for _ in range(4)]
    base = {"orders": orders}
    theirs = {"orders": [*orders[:3], {"status": "shipped"}]}
    now = {"orders": [*orders[:3], {"status": "cancelled"}]}
    result = merge(base, theirs, now)
    assert result.value == theirs
    (conflict,) = result.conflicts
    assert conflict.path == ("orders", 3, "status")
    assert conflict.readable_path == "orders[3].status"
    assert (conflict.theirs, conflict.now) == ("shipped", "cancelled")


def test_results_collected_into_a_new_object_and_list_by_both_sides_are_all_kept() -> None:
    base: dict[str, Any] = {}
    theirs = {"results": {"sms": "ok"}, "log": ["sms"]}
    now = {"results": {"email": "ok"}, "log": ["email"]}
    result = merge(base, theirs, now)
    assert result.value == {"results": {"email": "ok", "sms": "ok"}, "log": ["email", "sms"]}
    assert result.conflicts == ()


def test_lists_extended_by_both_keep_now_first_even_equal_items() -> None:
    base = {"seen": [0]}
    assert merge(base, {"seen": [0, 2, 3]}, {"seen": [0, 1]}).value == {"seen": [0, 1, 2, 3]}
    assert merge(base, {"seen": [0, "x"]}, {"seen": [0, "x"]}).value == {"seen": [0, "x", "x"]}


def test_a_list_replaced_by_both_is_a_conflict_that_theirs_wins() -> None:
    base = {"queue": [1, 2, 3]}
    result = merge(base, {"queue": [3]}, {"queue": [2, 3]})
    assert result.value == {"queue": [3]}
    assert [c.path for c in result.conflicts] == [("queue",)]


def test_a_deletion_against_a_change_is_a_conflict_and_a_double_deletion_is_not() -> None:
    base = {"tmp": 1, "old": 2, "keep": 3}
    result = merge(base, {"keep": 3}, {"tmp": 5, "keep": 3})
    assert result.value == {"keep": 3}
    (conflict,) = result.conflicts
    assert (conflict.path, conflict.theirs, conflict.now) == (("tmp",), ABSENT, 5)
    assert conflict.event_detail() == {"path": "tmp", "kept": None, "lost": "5"}

    result = merge(base, {"tmp": 6, "keep": 3}, {"keep": 3})
    assert result.value == {"tmp": 6, "keep": 3}
    assert [(c.theirs, c.now) for c in result.conflicts] == [(6, ABSENT)]


def test_a_type_change_against_a_change_is_a_conflict() -> None:
    result = merge({"n": 1}, {"n": "one"}, {"n": 2})
    assert result.value == {"n": "one"}
    assert [c.path for c in result.conflicts] == [("n",)]


def test_values_are_compared_as_json_sees_them() -> None:
    for changed in (True, 1.0):
        assert merge({"n": 1}, {"n": changed}, {"n": 1, "m": 0}).value == {"n": changed, "m": 0}
        assert type(merge({"n": 1}, {"n": changed}, {"n": 1, "m": 0}).value["n"]) is type(changed)
    assert json.dumps(merge({"z": 0.0}, {"z": -0.0}, {"z": 0.0, "m": 0}).value) == (
        '{"z": -0.0, "m": 0}'
    )


@pytest.mark.parametrize(
    ("path", "readable"),
    [
        (("a", "b"), "a.b"),
        (("orders", 3, "status"), "orders[3].status"),
        (("ship-items", 0), "ship-items[0]"),
        (("a b", "c"), '["a b"].c'),
        (("a", "x.y", "", 0), 'a["x.y"][""][0]'),
        (("1st",), '["1st"]'),
        ((), ""),
    ],
)
def test_paths_read_as_in_python_and_javascript(path: KeyPath, readable: str) -> None:
    assert format_path(path) == readable


def test_event_detail_cuts_long_values() -> None:
    conflict = Conflict(("log",), [], ["x" * 500], ["y"])
    detail = conflict.event_detail(limit=20)
    assert detail["kept"] == '["' + "x" * 17 + "…"
    assert len(detail["kept"]) == 20
    assert detail["lost"] == '["y"]'
    with pytest.raises(ValueError, match="limit must be at least 1, not 0"):
        conflict.event_detail(limit=0)


def test_wrote_tells_which_step_changed_a_path() -> None:
    base = {"a": {"b": [1, 2]}, "c": 1}
    assert wrote(base, {"a": {"b": [1, 5]}, "c": 1}, ("a", "b", 1))
    assert wrote(base, {"c": 1}, ("a", "b", 1))
    assert not wrote(base, {"a": {"b": [1, 2]}, "c": 2}, ("a", "b", 1))
    assert value_at(base, ("a", "b", 7)) is ABSENT
    assert value_at(base, ("c", "d")) is ABSENT
