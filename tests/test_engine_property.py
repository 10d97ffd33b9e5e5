"""Property: for random valid step trees, the engine executes exactly the steps that a tiny
reference interpreter of the same tree says it should, in an order that the tree allows.

Trees mix steps (sync and async), nested sequences (built workflows), ``if_``/``else_if``/
``else_`` with conditions reading the run data, loops (``for_each``, ``while_`` with a
``max_iterations`` cap, ``break_when``, ``max_iterations`` alone) and ``parallel`` wait-all.
Each step appends its name to a recorder keyed by run id and returns how often it ran, which
lands in ``data[step]``; conditions read the input ``x`` and those counts.

Parallel branches run concurrently, so the trail is compared structurally: a sequence is split
by the expected lengths of its parts, and a parallel's segment projected onto the (disjoint)
step names of each branch must match that branch.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import treadle
from treadle import Context, State, Status

RECORDER: dict[str, list[str]] = {}


# The tree, named ---------------------------------------------------------------------------


@dataclass
class Spec:
    """A node of a generated tree, with the unique name it gets in the definition."""

    kind: str  # step | seq | if | loop | par
    name: str
    children: list[Spec] = field(default_factory=list)
    arms: list[tuple[int | None, list[Spec]]] = field(default_factory=list)  # if: (t, body)
    loop: str = ""  # for_each | while | break | max
    k: int = 0


leaf = st.just(("step",))


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    body = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        st.tuples(st.just("seq"), body),
        st.tuples(
            st.just("if"),
            st.lists(st.tuples(st.integers(0, 9), body), min_size=1, max_size=3),
            st.one_of(st.none(), body),
        ),
        st.tuples(
            st.just("loop"),
            st.sampled_from(["for_each", "while", "break", "max"]),
            st.integers(0, 3),
            st.lists(children, max_size=2),
        ),
        st.tuples(st.just("par"), st.lists(children, min_size=1, max_size=3)),
    )


trees = st.lists(st.recursive(leaf, _extend, max_leaves=8), min_size=1, max_size=4)


def name_tree(raw: list[Any]) -> list[Spec]:
    """Give every node a unique name (s1, s2, ...)."""
    counter = itertools.count(1)

    def named(node: Any) -> Spec:
        kind = node[0]
        name = f"{kind}{next(counter)}"
        if kind == "step":
            return Spec("step", name)
        if kind in ("seq", "par"):
            return Spec(kind, name, children=[named(c) for c in node[1]])
        if kind == "if":
            arms: list[tuple[int | None, list[Spec]]] = [
                (t, [named(c) for c in body]) for t, body in node[1]
            ]
            if node[2] is not None:
                arms.append((None, [named(c) for c in node[2]]))
            return Spec("if", name, arms=arms)
        counter_step = Spec("step", f"{name}-count")
        return Spec(
            "loop",
            name,
            children=[counter_step, *(named(c) for c in node[3])],
            loop=node[1],
            k=node[2],
        )

    return [named(n) for n in raw]


# Building it with treadle -------------------------------------------------------------------


def make_step(name: str) -> treadle.ActionStep:
    """A step that records itself and returns how often it ran (sync or async by name)."""

    def record(ctx: Context, state: State) -> int:
        RECORDER.setdefault(ctx.run_id, []).append(name)
        return int(state.data.get(name) or 0) + 1

    async def record_async(ctx: Context, state: State) -> int:
        await asyncio.sleep(0)
        return record(ctx, state)

    return treadle.step(name, record if len(name) % 2 else record_async)


def x_above(t: int) -> treadle.Condition:
    return lambda s: s.data["x"] > t


def count_below(name: str, k: int) -> treadle.Condition:
    return lambda s: int(s.data.get(name) or 0) < k


def count_reached(name: str, k: int) -> treadle.Condition:
    return lambda s: int(s.data.get(name) or 0) >= k


def steplike(spec: Spec) -> Any:
    """What then/do/parallel take: a step, or a nested built workflow around a composite."""
    if spec.kind == "step":
        return make_step(spec.name)
    if spec.kind == "seq":
        return build(treadle.new(spec.name), spec.children).build()
    return add(treadle.new(f"{spec.name}-wrap"), spec).build()


def add(builder: treadle.Builder, spec: Spec) -> treadle.Builder:
    """Add one node to a builder chain."""
    if spec.kind == "step":
        step = make_step(spec.name)
        return builder.step(spec.name, step.action)
    if spec.kind == "seq":
        return builder.if_(f"{spec.name}-if", lambda s: True).then(steplike(spec)).end()
    if spec.kind == "if":
        (t0, body0), *rest = spec.arms
        assert t0 is not None
        ib = builder.if_(spec.name, x_above(t0)).then(*map(steplike, body0))
        for t, body in rest:
            if t is None:
                ib = ib.else_(*map(steplike, body))
            else:
                ib = ib.else_if(x_above(t)).then(*map(steplike, body))
        return ib.end()
    if spec.kind == "par":
        return builder.parallel(spec.name, *map(steplike, spec.children)).wait_for(treadle.WaitAll)
    counter = spec.children[0].name
    lb = builder.loop(spec.name)
    if spec.loop == "for_each":
        lb = lb.for_each("items")
    elif spec.loop == "while":
        lb = lb.while_(count_below(counter, spec.k)).max_iterations(2)
    elif spec.loop == "break":
        lb = lb.break_when(count_reached(counter, spec.k))
    else:
        lb = lb.max_iterations(max(1, spec.k))
    return lb.do(*map(steplike, spec.children)).end()


def build(builder: treadle.Builder, specs: list[Spec]) -> treadle.Builder:
    for spec in specs:
        builder = add(builder, spec)
    return builder


# The reference interpreter --------------------------------------------------------------------

Trace = tuple[str, Any]  # ("step", name) | ("seq", [Trace]) | ("par", [Trace])


def evaluate(specs: list[Spec], data: dict[str, Any]) -> Trace:
    """What the engine must do: the expected trace, updating ``data`` as the steps would."""
    return ("seq", [evaluate_one(s, data) for s in specs])


def evaluate_one(spec: Spec, data: dict[str, Any]) -> Trace:
    if spec.kind == "step":
        data[spec.name] = int(data.get(spec.name) or 0) + 1
        return ("step", spec.name)
    if spec.kind == "seq":
        return evaluate(spec.children, data)
    if spec.kind == "if":
        for t, body in spec.arms:
            if t is None or data["x"] > t:
                return evaluate(body, data)
        return ("seq", [])
    if spec.kind == "par":
        return ("par", [evaluate_one(c, data) for c in spec.children])
    counter = spec.children[0].name
    iterations: list[Trace] = []
    i = 0
    items = list(data["items"])
    while True:
        if spec.loop == "for_each" and i >= len(items):
            break
        if spec.loop == "max" and i >= max(1, spec.k):
            break
        if spec.loop == "while" and (i >= 2 or int(data.get(counter) or 0) >= spec.k):
            break
        iterations.append(evaluate(spec.children, data))
        i += 1
        if spec.loop == "break" and int(data.get(counter) or 0) >= spec.k:
            break
    return ("seq", iterations)


def length(trace: Trace) -> int:
    kind, content = trace
    return 1 if kind == "step" else sum(length(t) for t in content)


def names(trace: Trace) -> set[str]:
    kind, content = trace
    return {content} if kind == "step" else set().union(*(names(t) for t in content))


def matches(trace: Trace, trail: list[str]) -> bool:
    """Whether ``trail`` is a possible execution of ``trace``."""
    kind, content = trace
    if kind == "step":
        return trail == [content]
    if len(trail) != length(trace):
        return False
    if kind == "seq":
        at = 0
        for part in content:
            n = length(part)
            if not matches(part, trail[at : at + n]):
                return False
            at += n
        return True
    return all(matches(b, [s for s in trail if s in names(b)]) for b in content)


# The property ----------------------------------------------------------------------------------

_ids = itertools.count()


async def execute(workflow: treadle.Workflow, data: dict[str, Any]) -> tuple[State, list[str]]:
    engine = treadle.Engine(treadle.MemoryPersistence())
    engine.register(workflow)
    async with engine:
        run_id = await engine.start(workflow.name, data)
        final = await engine.wait(run_id, 20)
    return final, RECORDER.pop(run_id, [])


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    raw=trees,
    x=st.integers(0, 9),
    items=st.lists(st.integers(0, 9), max_size=3),
)
def test_engine_executes_the_steps_a_reference_interpretation_of_the_tree_expects(
    raw: list[Any], x: int, items: list[int]
) -> None:
    specs = name_tree(raw)
    workflow = build(treadle.new(f"prop-{next(_ids)}"), specs).build()
    expected_data: dict[str, Any] = {"x": x, "items": items}
    expected = evaluate(specs, expected_data)
    final, trail = asyncio.run(execute(workflow, {"x": x, "items": items}))
    assert final.status is Status.COMPLETED, final.error
    assert matches(expected, trail), f"expected {expected}\n got {trail}"
    assert final.data == expected_data


def test_the_trail_matcher_accepts_interleavings_and_rejects_reorderings() -> None:
    trace: Trace = (
        "seq",
        [("step", "a"), ("par", [("seq", [("step", "b"), ("step", "c")]), ("step", "d")])],
    )
    assert matches(trace, ["a", "b", "c", "d"])
    assert matches(trace, ["a", "d", "b", "c"])
    assert matches(trace, ["a", "b", "d", "c"])
    assert not matches(trace, ["a", "c", "b", "d"])
    assert not matches(trace, ["b", "a", "c", "d"])
    assert not matches(trace, ["a", "b", "c"])
