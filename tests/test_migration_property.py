"""Property: for a run waiting at a signal and a random edit of its definition, ``plan``
decides what a small reference written from the rules of ``treadle._interpreter.mapping``
decides, puts the run where those rules say, and the moved run then runs the steps they say.

Definitions are a top-level sequence of actions (some with a compensation), at most one group
(an ``if_`` that is always true around a nested workflow holding actions) and exactly one
signal, at the top level or in the group. The run is real: an engine runs the first definition
until it waits at the signal, and its stored cursor is what ``plan`` gets. The second
definition is the first after a few random edits: steps added anywhere, steps, the group or
the signal removed, renamed (with or without ``rename=``) or moved (the signal into or out of
the group), a compensation dropped.

The reference never reads a cursor. It models the run's progress as the chain of steps that
enclose the signal, the steps completed in each sequence before it, and the completed steps
that have a compensation, and decides on the target from that (see :func:`reference`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import treadle
from treadle import Context, State, Status
from treadle._interpreter import cursor
from treadle._interpreter.mapping import plan

RECORDER: dict[str, list[str]] = {}


# Definitions, as the test sees them -----------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A step of a sequence: an action (``comp``: it has a compensation), the signal, or the
    group (an ``if_`` named ``name`` around the nested workflow ``inner`` with ``steps``)."""

    kind: str  # action | signal | group
    name: str
    comp: bool = False
    inner: str = ""
    steps: tuple[Item, ...] = ()


@dataclass(frozen=True)
class Definition:
    steps: tuple[Item, ...]

    def group(self) -> Item | None:
        return next((item for item in self.steps if item.kind == "group"), None)


def record(name: str) -> Any:
    def fn(ctx: Context, state: State) -> str:
        RECORDER.setdefault(ctx.run_id, []).append(name)
        return name

    return fn


def undo(ctx: Context, state: State) -> None:
    """A compensation (never called: no run here fails)."""


def add(builder: treadle.Builder, item: Item) -> treadle.Builder:
    if item.kind == "action":
        return builder.step(item.name, record(item.name), compensate=undo if item.comp else None)
    if item.kind == "signal":
        return builder.await_signal(item.name)
    inner = treadle.new(item.inner)
    for step in item.steps:
        inner = add(inner, step)
    return builder.if_(item.name, lambda s: True).then(inner.build()).end()


def build(name: str, version: str, definition: Definition) -> treadle.Workflow:
    builder = treadle.new(name, version=version)
    for item in definition.steps:
        builder = add(builder, item)
    return builder.build()


# Generating a definition and its edit ---------------------------------------------------------


@st.composite
def sources(draw: st.DrawFn) -> Definition:
    """Actions before and after, an optional group, and the signal somewhere."""
    counter = itertools.count(1)

    def actions(low: int, high: int) -> list[Item]:
        n = draw(st.integers(low, high))
        return [Item("action", f"s{next(counter)}", comp=draw(st.booleans())) for _ in range(n)]

    top = actions(0, 4)
    signal = Item("signal", "wait")
    if draw(st.booleans()):
        inner = actions(1, 3)
        in_group = draw(st.booleans())
        if in_group:
            inner.insert(draw(st.integers(0, len(inner))), signal)
        group = Item("group", "g", inner="g-in", steps=tuple(inner))
        top.insert(draw(st.integers(0, len(top))), group)
        if not in_group:
            top.insert(draw(st.integers(0, len(top))), signal)
    else:
        top.insert(draw(st.integers(0, len(top))), signal)
    return Definition(tuple(top))


def names_of(definition: Definition) -> list[str]:
    out = []
    for item in definition.steps:
        out.append(item.name)
        if item.kind == "group":
            out.append(item.inner)
            out += [step.name for step in item.steps]
    return out


def _remove(steps: tuple[Item, ...], name: str) -> tuple[Item, ...]:
    kept = []
    for item in steps:
        if item.name == name:
            continue
        if item.kind == "group":
            inner = _remove(item.steps, name)
            if not inner:
                continue  # a workflow needs steps: the group goes with its last one
            item = replace(item, steps=inner)
        kept.append(item)
    return tuple(kept)


def _map(steps: tuple[Item, ...], name: str, change: Any) -> tuple[Item, ...]:
    return tuple(
        change(item)
        if item.name == name or item.inner == name
        else replace(item, steps=_map(item.steps, name, change))
        for item in steps
    )


def _insert(definition: Definition, item: Item, into_group: bool, index: int) -> Definition:
    group = definition.group()
    if into_group and group is not None and item.kind != "group":
        steps = list(group.steps)
        steps.insert(index % (len(steps) + 1), item)
        grown = replace(group, steps=tuple(steps))
        return Definition(_map(definition.steps, group.name, lambda _: grown))
    top = list(definition.steps)
    top.insert(index % (len(top) + 1), item)
    return Definition(tuple(top))


def _find(definition: Definition, name: str) -> Item:
    for item in definition.steps:
        if item.name == name:
            return item
        for step in item.steps:
            if step.name == name:
                return step
    raise KeyError(name)


def _renaming(old: str, new: str) -> Any:
    return lambda i: replace(i, inner=new) if i.inner == old else replace(i, name=new)


@st.composite
def edits(draw: st.DrawFn, source: Definition) -> tuple[Definition, dict[str, str], list[str]]:
    """The target after 1-3 edits, the ``rename`` to pass, and what was done (for messages)."""
    target = source
    rename: dict[str, str] = {}
    done: list[str] = []
    fresh = itertools.count(1)
    original = names_of(source)
    for _ in range(draw(st.integers(1, 3))):
        present = names_of(target)
        group = target.group()
        steps = [n for n in present if group is None or n != group.inner]
        edit = draw(st.sampled_from(["add", "remove", "rename", "move", "drop-comp"]))
        if edit == "add":
            item = Item("action", f"new{next(fresh)}", comp=draw(st.booleans()))
            into, index = draw(st.booleans()), draw(st.integers(0, 9))
            target = _insert(target, item, into, index)
            done.append(f"add {item.name} ({'group' if into else 'top'}, {index})")
        elif edit == "remove":
            name = draw(st.sampled_from(steps))
            target = Definition(_remove(target.steps, name))
            done.append(f"remove {name}")
            if not target.steps:
                target = Definition((Item("action", f"new{next(fresh)}"),))
        elif edit == "rename":
            unrenamed = [n for n in present if n in original and n not in rename]
            if not unrenamed:
                continue
            old = draw(st.sampled_from(unrenamed))
            new = f"{old}-r"
            target = Definition(_map(target.steps, old, _renaming(old, new)))
            if draw(st.booleans()):
                rename[old] = new
                done.append(f"rename {old} -> {new} (passed)")
            else:
                done.append(f"rename {old} -> {new} (not passed)")
        elif edit == "move":
            name = draw(st.sampled_from(steps))
            item = _find(target, name)
            into, index = draw(st.booleans()), draw(st.integers(0, 9))
            rest = Definition(_remove(target.steps, name))
            if item.kind != "group" and rest.group() is None and target.group() is not None:
                continue  # it was the group's last step
            target = _insert(rest, item, into, index)
            done.append(f"move {name} ({'group' if into else 'top'}, {index})")
        else:
            with_comp = [n for n in steps if _find(target, n).comp]
            if not with_comp:
                continue
            name = draw(st.sampled_from(with_comp))
            target = Definition(_map(target.steps, name, lambda i: replace(i, comp=False)))
            done.append(f"drop the compensation of {name}")
    return target, rename, done


# The reference ------------------------------------------------------------------------------


@dataclass
class Progress:
    """Where a run waiting at the signal is, in the terms of its definition."""

    chain: tuple[str, ...]  # the steps enclosing the signal: () or (group, its workflow)
    signal: str
    completed: list[str] = field(default_factory=list)  # actions that ran, in order
    to_compensate: list[tuple[tuple[str, ...], str]] = field(default_factory=list)


def progress(source: Definition) -> Progress:
    """Walk the definition up to the signal."""
    found: Progress | None = None
    completed: list[str] = []
    comp: list[tuple[tuple[str, ...], str]] = []

    def walk(steps: tuple[Item, ...], chain: tuple[str, ...]) -> bool:
        nonlocal found
        for item in steps:
            if item.kind == "signal":
                found = Progress(chain, item.name)
                return True
            if item.kind == "group":
                if walk(item.steps, (*chain, item.name, item.inner)):
                    return True
                continue
            completed.append(item.name)
            if item.comp:
                comp.append((chain, item.name))
        return False

    walk(source.steps, ())
    assert found is not None
    found.completed, found.to_compensate = completed, comp
    return found


@dataclass
class Decision:
    faults: list[tuple[str, str]]  # (the step at fault as the run knew it, as renamed)
    top_index: int = 0  # where the top-level sequence goes on
    inner_index: int | None = None  # where the group's sequence goes on (if in the group)
    then_run: list[str] = field(default_factory=list)  # the actions the moved run runs


def reference(source: Definition, target: Definition, rename: dict[str, str]) -> Decision:
    """What the rules decide, from the run's progress."""
    at = progress(source)

    def new(name: str) -> str:
        return rename.get(name, name)

    # Where every step of the target is: its kind, its chain, whether it compensates.
    where: dict[str, tuple[str, tuple[str, ...], bool]] = {}
    for item in target.steps:
        where[item.name] = (item.kind, (), item.comp)
        for step in item.steps:
            where[step.name] = (step.kind, (item.name, item.inner), step.comp)

    faults: list[tuple[str, str]] = []
    chain = tuple(new(n) for n in at.chain)
    # Rule 1: the steps the run is inside, the group (if any) and the signal.
    if chain and where.get(chain[0], ("",))[0] != "group":
        faults.append((at.chain[0], chain[0]))
    if where.get(new(at.signal), ("", ()))[:2] != ("signal", chain):
        faults.append((at.signal, new(at.signal)))
    # Rule 3: the completed steps to compensate.
    for old_chain, name in at.to_compensate:
        kind, now, comp = where.get(new(name), ("", (), False))
        if (kind, now, comp) != ("action", tuple(new(n) for n in old_chain), True):
            faults.append((name, new(name)))
    if faults:
        return Decision(faults)
    # Rule 2: each sequence goes on before the step the run is inside.
    top = [item.name for item in target.steps]
    decision = Decision([], top_index=top.index(chain[0] if chain else new(at.signal)))
    after_top = target.steps[decision.top_index + 1 :]
    if chain:
        group = target.steps[decision.top_index]
        inner = [step.name for step in group.steps]
        decision.inner_index = inner.index(new(at.signal))
        after_top = group.steps[decision.inner_index + 1 :] + after_top
    for item in after_top:
        for step in item.steps or (item,):
            if step.kind == "action":
                decision.then_run.append(step.name)
    return decision


# The property -------------------------------------------------------------------------------

_ids = itertools.count()


async def until_waiting(engine: treadle.Engine, run_id: str) -> State:
    await engine.settle()  # the run has ended or waits for something
    state = await engine.status(run_id)
    assert state.status is Status.WAITING, f"run {run_id} never waited: {state}"
    return state


async def check(
    source: Definition, target: Definition, rename: dict[str, str], end_to_end: bool
) -> None:
    name = f"mig-{next(_ids)}"
    old, new = build(name, "v1", source), build(name, "v2", target)
    expected = reference(source, target, rename)
    engine = treadle.Engine(treadle.MemoryPersistence())
    engine.register(old, new)
    async with engine:
        run_id = await engine.start(name, {}, version="v1")
        state = await until_waiting(engine, run_id)
        at = progress(source)
        assert state.waiting_for == [f"signal:{at.signal}"]
        assert RECORDER.get(run_id, []) == at.completed
        stored = (await engine.persistence.get_run(run_id)).cursor
        planned = plan(
            stored,
            new.describe(),
            rename=rename,
            waiting_for=state.waiting_for,
            source=old.describe(),
        )
        event(
            ("in the group" if at.chain else "at the top")
            + (", moves" if planned.ok else ", refused")
        )
        context = f"cursor {stored}\nreasons {planned.reasons}\nexpected {expected}"
        assert planned.ok == (not expected.faults), context
        if not planned.ok:
            said = " ".join(planned.reasons)
            for was, now in expected.faults:
                assert f"{was!r}" in said or f"{now!r}" in said, context
            return
        assert planned.cursor is not None
        nodes = cursor.load(planned.cursor)["n"]
        names = [item.name for item in target.steps]
        top = cursor.position_at(nodes, "@")
        if expected.top_index:
            assert top == {"i": expected.top_index, "n": names[expected.top_index - 1]}, context
        else:
            assert top is None, context
        signal = rename.get(at.signal, at.signal)
        if expected.inner_index is not None:
            group = target.steps[expected.top_index]
            prefix = f"{group.name}/{group.inner}/"
            inner = cursor.position_at(nodes, prefix + "@")
            inner_names = [step.name for step in group.steps]
            if expected.inner_index:
                want = {"i": expected.inner_index, "n": inner_names[expected.inner_index - 1]}
                assert inner == want, context
            else:
                assert inner is None, context
            assert nodes.get(prefix + signal) == {"k": "signal", "dl": None}, context
        else:
            assert nodes.get(signal) == {"k": "signal", "dl": None}, context
        assert planned.waiting_for == [f"signal:{signal}"]
        if not end_to_end:
            return
        moved = await engine.migrate(run_id, to="v2", rename=rename)
        assert moved.ok and moved.moved
        await engine.signal(run_id, signal)
        final = await engine.wait(run_id, 10)
        assert final.status is Status.COMPLETED, final.error
        trail = RECORDER.pop(run_id, [])
        assert trail == at.completed + expected.then_run, context


@st.composite
def cases(draw: st.DrawFn) -> tuple[Definition, Definition, dict[str, str], list[str]]:
    source = draw(sources())
    target, rename, done = draw(edits(source))
    return source, target, rename, done


@settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=cases(), end_to_end=st.booleans())
def test_plan_moves_a_waiting_run_where_the_rules_say_and_the_moved_run_runs_what_they_say(
    case: tuple[Definition, Definition, dict[str, str], list[str]], end_to_end: bool
) -> None:
    source, target, rename, done = case
    try:
        asyncio.run(check(source, target, rename, end_to_end))
    except AssertionError as exc:
        detail = json.dumps({"source": repr(source), "target": repr(target), "edits": done})
        raise AssertionError(f"{detail}\n{exc}") from exc


# A run paused between steps: rule 2's "after the last step it completed there" -------------

PAUSING: list[treadle.Engine] = []


async def pause_here(ctx: Context, state: State) -> str:
    """An action that pauses its own run: it stops after this step, inside no other step."""
    await PAUSING[-1].pause(ctx.run_id)
    return "paused"


def _paused_source(name: str) -> treadle.Workflow:
    inner = treadle.new("g-in").step("i1", pause_here).step("i2", record("i2")).build()
    return (
        treadle.new(name, version="v1")
        .step("s1", record("s1"))
        .if_("g", lambda s: True)
        .then(inner)
        .end()
        .build()
    )


async def paused_cursor(workflow: treadle.Workflow) -> str:
    """The stored cursor of a run of ``workflow`` paused by ``pause_here``."""
    engine = treadle.Engine(treadle.MemoryPersistence())
    engine.register(workflow)
    PAUSING.append(engine)
    try:
        async with engine:
            run_id = await engine.start(workflow.name, {})
            await engine.settle()
            record = await engine.persistence.get_run(run_id)
            assert record is not None and record.status is Status.PAUSED, record
            return record.cursor
    finally:
        PAUSING.pop()


def test_a_run_paused_in_a_nested_workflow_goes_on_after_its_last_step_in_the_target() -> None:
    source = _paused_source("paused-ok")
    stored = asyncio.run(paused_cursor(source))
    assert cursor.load(stored)["n"] == {
        "@": {"i": 1, "n": "s1"},
        "g": {"k": "if", "b": 0},
        "g/g-in/@": {"i": 1, "n": "i1"},
    }
    inner = treadle.new("g-in").step("i0", record("i0")).step("i1", record("i1")).build()
    target = treadle.new("paused-ok").step("s1", record("s1")).if_("g", lambda s: True)
    planned = plan(stored, target.then(inner).end().build().describe())
    assert planned.ok, planned.reasons
    assert cursor.load(planned.cursor or "")["n"]["g/g-in/@"] == {"i": 2, "n": "i1"}
    gone = treadle.new("g-in").step("i2", record("i2")).build()
    refused = plan(stored, target.then(gone).end().build().describe())
    assert not refused.ok and "'i1'" in " ".join(refused.reasons)


def test_a_run_paused_in_a_nested_workflow_that_the_target_renamed_is_refused() -> None:
    stored = asyncio.run(paused_cursor(_paused_source("paused-renamed")))
    inner = treadle.new("g-in-r").step("i1", record("i1")).step("i2", record("i2")).build()
    target = (
        treadle.new("paused-renamed")
        .step("s1", record("s1"))
        .if_("g", lambda s: True)
        .then(inner)
        .end()
        .build()
    )
    planned = plan(stored, target.describe())
    assert not planned.ok, planned.cursor
