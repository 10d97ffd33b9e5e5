"""The fluent builder: what it builds, what it refuses, and that what it builds is frozen."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import treadle
from treadle import Engine, Status
from treadle._builder import (
    ApprovalBuilder,
    Builder,
    IfBuilder,
    LoopBuilder,
    ParallelBuilder,
    SignalBuilder,
    new,
)
from treadle._errors import DefinitionError
from treadle._nodes import (
    ActionStep,
    ApprovalStep,
    Branch,
    CustomStep,
    IfStep,
    LoopStep,
    Node,
    ParallelStep,
    SignalStep,
    SleepStep,
    Step,
    StepLike,
    SubWorkflowStep,
    WaitAll,
    WaitAny,
    WaitCount,
    WaitStrategy,
    Workflow,
    step,
    validate,
)
from treadle._retry import RetryPolicy
from treadle._state import Context, State


def work(ctx: Context, state: State) -> None:
    """A step function that does nothing."""


def undo(ctx: Context, state: State) -> None:
    """A compensation that does nothing."""


def yes(state: State) -> bool:
    """A condition that always holds."""
    return True


def no(state: State) -> bool:
    """A condition that never holds."""
    return False


def raises(*fragments: str) -> Any:
    """``pytest.raises(DefinitionError)`` whose message must contain every fragment."""
    return _Raises(fragments)


class _Raises:
    def __init__(self, fragments: tuple[str, ...]) -> None:
        self.fragments = fragments
        self.ctx = pytest.raises(DefinitionError)

    def __enter__(self) -> Any:
        return self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        result = self.ctx.__exit__(*exc)
        message = str(self.ctx.excinfo.value) if self.ctx.excinfo else ""
        for fragment in self.fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        return bool(result)


class UserStep:
    """A user object that satisfies the Step protocol."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def execute(self, ctx: Context, state: State) -> None:
        state.data[self.name] = True


# ---------------------------------------------------------------- the full surface


def build_order() -> Workflow:
    return (
        new("order")
        .step("reserve", work, compensate=undo, retry=RetryPolicy().attempts(5), timeout="2s")
        .then()
        .if_("large", yes)
        .then(step("review", work))
        .else_if(no)
        .then(step("check", work))
        .else_(step("auto", work))
        .end()
        .loop("ship-items")
        .for_each("items")
        .max_iterations(500)
        .do(step("ship", work))
        .end()
        .parallel("notify", step("email", work), step("sms", work))
        .wait_for(WaitAny)
        .await_signal("payment")
        .timeout("48h")
        .await_approval("manager", ["alice", "bob"])
        .quorum(2)
        .timeout(timedelta(days=1))
        .sub_workflow("invoice", "invoicing", {"currency": "EUR"})
        .sleep("cool-off", 90)
        .build()
    )


def test_the_api_example_builds_the_expected_tree() -> None:
    wf = build_order()
    assert isinstance(wf, Workflow)
    assert wf.name == "order"
    assert [n.name for n in wf.steps] == [
        "reserve",
        "large",
        "ship-items",
        "notify",
        "payment",
        "manager",
        "invoice",
        "cool-off",
    ]
    reserve, large, loop, notify, payment, manager, invoice, cool = wf.steps
    assert isinstance(reserve, ActionStep)
    assert reserve.compensate is undo
    assert reserve.retry is not None and reserve.retry.max_attempts == 5
    assert reserve.timeout == timedelta(seconds=2)
    assert isinstance(large, IfStep)
    assert [b.cond for b in large.branches] == [yes, no, None]
    assert [[s.name for s in b.steps] for b in large.branches] == [["review"], ["check"], ["auto"]]
    assert loop == LoopStep("ship-items", (step("ship", work),), "items", None, None, 500)
    assert isinstance(notify, ParallelStep)
    assert notify.strategy is WaitStrategy.ANY and notify.needed == 1
    assert payment == SignalStep("payment", timedelta(hours=48))
    assert manager == ApprovalStep("manager", ("alice", "bob"), 2, timedelta(days=1))
    assert invoice == SubWorkflowStep("invoice", "invoicing", {"currency": "EUR"})
    assert cool == SleepStep("cool-off", timedelta(seconds=90))


def test_then_on_builder_adds_nothing_and_returns_the_same_builder() -> None:
    b = new("w")
    assert b.then() is b
    assert b.step("a", work).then().build().steps == (ActionStep("a", work),)


def test_option_builders_are_builders_so_the_chain_goes_on() -> None:
    b = new("w").parallel("p", step("a", work), step("b", work))
    assert isinstance(b, ParallelBuilder) and isinstance(b, Builder)
    s = b.wait_for(WaitAny).await_signal("sig")
    assert isinstance(s, SignalBuilder)
    a = s.timeout("1h").await_approval("ok", [])
    assert isinstance(a, ApprovalBuilder)
    wf = a.timeout("5m").step("after", work).build()
    assert [n.name for n in wf.steps] == ["p", "sig", "ok", "after"]


def test_builder_methods_on_an_option_builder_return_a_plain_builder() -> None:
    after = new("w").await_signal("s").step("x", work)
    assert type(after) is Builder


def test_signal_timeout_directly_followed_by_build() -> None:
    wf = new("w").await_signal("x").timeout("1h").build()
    assert wf.steps == (SignalStep("x", timedelta(hours=1)),)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=5), timedelta(minutes=5)),
        (30, timedelta(seconds=30)),
        (1.5, timedelta(seconds=1.5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
    ],
)
def test_durations_are_accepted_in_every_form(value: Any, expected: timedelta) -> None:
    wf = new("w").sleep("nap", value).await_approval("ok", ["a"]).timeout(value).build()
    assert wf.steps[0] == SleepStep("nap", expected)
    node = wf.steps[1]
    assert isinstance(node, ApprovalStep) and node.timeout == expected


def test_wait_strategies() -> None:
    branches = [step("a", work), step("b", work), step("c", work)]
    all_ = new("w").parallel("p", *branches).build().steps[0]
    assert isinstance(all_, ParallelStep) and all_.strategy is WaitAll and all_.needed == 3
    count = new("w").parallel("p", *branches).wait_count(2).build().steps[0]
    assert isinstance(count, ParallelStep)
    assert (count.strategy, count.count, count.needed) == (WaitCount, 2, 2)
    again = new("w").parallel("p", *branches).wait_count(2).wait_for(WaitAll).build().steps[0]
    assert isinstance(again, ParallelStep) and (again.strategy, again.count) == (WaitAll, None)
    explicit = new("w").parallel("p", *branches).wait_for(WaitCount).wait_count(1).build()
    assert explicit.steps[0] == ParallelStep("p", tuple(branches), WaitCount, 1)


def test_steps_may_be_action_steps_built_workflows_nodes_or_user_objects() -> None:
    inner = new("inner").step("i1", work).step("i2", work).build()
    user = UserStep("custom")
    wf = (
        new("outer")
        .if_("c", yes)
        .then(inner, user)
        .end()
        .loop("l")
        .while_(yes)
        .break_when(no)
        .do(SleepStep("zz", timedelta(seconds=1)))
        .end()
        .build()
    )
    branch = wf.steps[0]
    assert isinstance(branch, IfStep)
    assert branch.branches == (Branch(yes, (inner, CustomStep("custom", user))),)
    assert [n.name for n in wf.nodes()] == ["c", "inner", "i1", "i2", "custom", "l", "zz"]


def test_a_loop_may_end_by_any_one_of_its_conditions() -> None:
    configures: list[Callable[[LoopBuilder], LoopBuilder]] = [
        lambda lb: lb.for_each("xs"),
        lambda lb: lb.while_(yes),
        lambda lb: lb.break_when(yes),
        lambda lb: lb.max_iterations(1),
    ]
    for configure in configures:
        wf = configure(new("w").loop("l")).do(step("a", work)).end().build()
        assert isinstance(wf.steps[0], LoopStep)


def test_loop_options_may_come_after_do() -> None:
    wf = new("w").loop("l").do(step("a", work)).max_iterations(3).end().build()
    assert wf.steps[0] == LoopStep("l", (step("a", work),), max_iterations=3)


def test_approvers_are_kept_in_order_without_duplicates() -> None:
    wf = new("w").await_approval("ok", ["bob", "alice", "bob"]).build()
    assert wf.steps[0] == ApprovalStep("ok", ("bob", "alice"))


def test_an_approval_without_approvers_accepts_any_quorum() -> None:
    wf = new("w").await_approval("ok", []).quorum(3).build()
    assert wf.steps[0] == ApprovalStep("ok", (), 3)


# ---------------------------------------------------------------- misuse


def test_duplicate_step_name_is_a_definition_error_naming_the_step() -> None:
    with raises("'dup'", "twice"):
        new("w").step("dup", work).sleep("dup", 1).build()


def test_duplicate_name_nested_deep_in_the_tree_is_found() -> None:
    inner = new("inner").step("x", work).build()
    with raises("'x'"):
        new("w").step("x", work).parallel("p", inner, step("y", work)).build()
    with raises("'inner'"):
        new("w").if_("c", yes).then(inner).else_(inner).end().build()


def test_a_step_may_have_the_name_of_its_workflow() -> None:
    wf = new("flaky").step("flaky", work).build()
    assert wf.name == "flaky" and [n.name for n in wf.steps] == ["flaky"]


async def test_a_workflow_and_its_only_step_may_share_a_name_and_run() -> None:
    async with Engine() as engine:
        engine.register(new("flaky").step("flaky", lambda ctx, state: 42).build())
        final = await engine.wait(await engine.start("flaky"), timeout=10)
    assert (final.status, final.data) == (Status.COMPLETED, {"flaky": 42})


def test_step_names_stay_unique_among_steps() -> None:
    with raises("step name 'x' is used twice"):
        new("w").step("x", work).if_("c", yes).then(step("x", work)).end().build()


def test_a_nested_workflow_name_is_a_step_name_of_the_workflow_it_is_nested_in() -> None:
    inner = new("inner").step("inner", work).build()  # builds: its own name is not a step name
    with raises("step name 'inner' is used twice"):
        new("outer").parallel("p", inner).build()
    other = new("part").step("a", work).build()
    with raises("step name 'part' is used twice"):
        new("outer").step("part", work).parallel("p", other).build()
    assert [n.name for n in new("part").parallel("p", other).build().nodes()] == ["p", "part", "a"]


def test_opening_a_block_leaves_the_builder_as_it_was() -> None:
    b = new("w").step("a", work)
    b.if_("choice", yes).then(step("x", work))
    b.loop("again").max_iterations(2).do(step("y", work))
    assert [n.name for n in b.step("b", work).build().steps] == ["a", "b"]
    assert [n.name for n in b.build().steps] == ["a"]


def test_calling_builder_methods_on_an_open_block_says_end_is_missing() -> None:
    block: Any = new("w").if_("choice", yes).then(step("a", work))
    with raises("'choice'", "end()"):
        block.step("b", work)
    with raises("'choice'", "end()"):
        block.build()
    with pytest.raises(AttributeError):
        block.nonsense  # noqa: B018


def test_an_open_if_may_be_ended_in_two_ways() -> None:
    ib = new("w").if_("choice", yes).then(step("a", work))
    plain = ib.end().build()
    with_else = ib.else_(step("b", work)).end().build()
    assert plain.steps == (IfStep("choice", (Branch(yes, (step("a", work),)),)),)
    assert with_else.steps == (
        IfStep("choice", (Branch(yes, (step("a", work),)), Branch(None, (step("b", work),)))),
    )
    assert ib.end().build() == plain


def test_an_open_loop_may_be_ended_in_two_ways() -> None:
    lb = new("w").loop("again").do(step("a", work))
    assert lb.max_iterations(1).end().build().steps[0] == LoopStep(
        "again", (step("a", work),), max_iterations=1
    )
    assert lb.for_each("xs").end().build().steps[0] == LoopStep(
        "again", (step("a", work),), for_each="xs"
    )


def test_else_if_not_followed_by_then_is_an_error() -> None:
    with raises("'choice'", "else_if()", "then"):
        new("w").if_("choice", yes).then(step("a", work)).else_if(no).end()
    with raises("'choice'", "then"):
        new("w").if_("choice", yes).then(step("a", work)).else_if(no).else_(step("b", work))
    with raises("'choice'", "then"):
        new("w").if_("choice", yes).then(step("a", work)).else_if(no).else_if(yes)


def test_then_twice_on_the_same_arm_is_an_error() -> None:
    with raises("'choice'", "twice"):
        new("w").if_("choice", yes).then(step("a", work)).then(step("b", work))


def test_else_twice_is_an_error() -> None:
    with raises("'choice'", "twice"):
        new("w").if_("choice", yes).then(step("a", work)).else_(step("b", work)).else_()


@pytest.mark.parametrize(
    "after_else",
    [
        lambda ib: ib.then(step("c", work)),
        lambda ib: ib.else_if(yes),
    ],
)
def test_nothing_but_end_may_follow_else(after_else: Callable[[IfBuilder], Any]) -> None:
    ib = new("w").if_("choice", yes).then(step("a", work)).else_(step("b", work))
    with raises("'choice'", "else_()"):
        after_else(ib)


def test_an_if_with_no_arm_is_an_error() -> None:
    with raises("'choice'", "then"):
        new("w").if_("choice", yes).end()
    with raises("'choice'", "then"):
        new("w").if_("choice", yes).else_(step("a", work))


def test_a_loop_with_no_condition_is_an_error() -> None:
    with raises("'again'", "for_each"):
        new("w").loop("again").do(step("a", work)).end()


def test_a_loop_with_no_body_is_an_error() -> None:
    with raises("'again'", "do("):
        new("w").loop("again").max_iterations(3).end()
    with raises("'again'", "do()"):
        new("w").loop("again").do()


def test_do_twice_is_an_error() -> None:
    with raises("'again'", "twice"):
        new("w").loop("again").do(step("a", work)).do(step("b", work))


def test_a_loop_option_given_twice_is_an_error() -> None:
    with raises("'again'", "twice"):
        new("w").loop("again").max_iterations(2).max_iterations(3)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "3"])
def test_max_iterations_below_one_or_not_an_int_is_an_error(n: Any) -> None:
    with raises("'again'", "max_iterations"):
        new("w").loop("again").max_iterations(n)


@pytest.mark.parametrize("key", ["", None, 3])
def test_for_each_needs_a_key(key: Any) -> None:
    with raises("'again'", "for_each"):
        new("w").loop("again").for_each(key)


@pytest.mark.parametrize("n", [0, -2, 4, True])
def test_wait_count_out_of_range_is_an_error(n: Any) -> None:
    p = new("w").parallel("fan", step("a", work), step("b", work), step("c", work))
    with raises("'fan'", "wait_count"):
        p.wait_count(n)


def test_wait_count_strategy_without_a_count_is_an_error_at_build() -> None:
    with raises("'fan'", "wait_count"):
        new("w").parallel("fan", step("a", work)).wait_for(WaitCount).build()


def test_an_unknown_wait_strategy_is_an_error() -> None:
    with raises("'fan'", "'most'"):
        new("w").parallel("fan", step("a", work)).wait_for("most")


def test_an_empty_parallel_is_an_error() -> None:
    with raises("'fan'", "no branches"):
        new("w").parallel("fan")


@pytest.mark.parametrize("n", [0, 3, -1])
def test_quorum_out_of_range_is_an_error(n: int) -> None:
    with raises("'sign-off'", "quorum"):
        new("w").await_approval("sign-off", ["alice", "bob"]).quorum(n)


@pytest.mark.parametrize("approvers", ["alice", None, [""], [3]])
def test_approvers_must_be_a_list_of_names(approvers: Any) -> None:
    with raises("'sign-off'"):
        new("w").await_approval("sign-off", approvers)


def test_a_non_callable_step_function_is_an_error() -> None:
    with raises("'charge'", "callable"):
        new("w").step("charge", "not a function")  # type: ignore[arg-type]
    with raises("'charge'", "compensate"):
        new("w").step("charge", work, compensate=42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda b, c: b.if_("choice", c), "'choice'"),
        (lambda b, c: b.if_("choice", yes).then().else_if(c), "'choice'"),
        (lambda b, c: b.loop("again").while_(c), "'again'"),
        (lambda b, c: b.loop("again").break_when(c), "'again'"),
    ],
)
def test_a_non_callable_condition_is_an_error(make: Callable[..., Any], name: str) -> None:
    with raises(name, "not callable"):
        make(new("w"), True)


@pytest.mark.parametrize("duration", ["soon", "-5s", -1, None, object()])
def test_a_bad_duration_is_an_error_naming_the_step(duration: Any) -> None:
    with raises("'nap'"):
        new("w").sleep("nap", duration)
    with raises("'sig'"):
        new("w").await_signal("sig").timeout(duration)
    with raises("'ok'"):
        new("w").await_approval("ok", []).timeout(duration)
    if duration is not None:
        with raises("'act'"):
            new("w").step("act", work, timeout=duration)


def test_a_non_step_given_to_then_is_an_error() -> None:
    with raises("'choice'", "not a step"):
        new("w").if_("choice", yes).then(work)  # type: ignore[arg-type]
    with raises("'fan'", "not a step"):
        new("w").parallel("fan", 42)  # type: ignore[arg-type]


def test_an_empty_workflow_is_an_error() -> None:
    with raises("'empty'", "no steps"):
        new("empty").build()
    with raises("'empty'", "no steps"):
        new("empty").then().build()


@pytest.mark.parametrize("name", ["", "   ", None, 7, "a/b", "x#1"])
def test_an_empty_or_invalid_name_is_an_error(name: Any) -> None:
    with raises():
        new(name)
    adds: list[Callable[[Builder], Any]] = [
        lambda b: b.step(name, work),
        lambda b: b.if_(name, yes),
        lambda b: b.loop(name),
        lambda b: b.parallel(name, step("a", work)),
        lambda b: b.await_signal(name),
        lambda b: b.await_approval(name, []),
        lambda b: b.sub_workflow(name, "child"),
        lambda b: b.sleep(name, 1),
    ]
    for add in adds:
        with raises("'w'", repr(name)):
            add(new("w"))


BAD_IDS = ["", "has space", "a/b", "x" * 10_000, 123, "caf\u00e9", "tab\there", None]


@pytest.mark.parametrize("name", BAD_IDS)
def test_workflow_signal_and_approval_names_follow_the_id_rule(name: Any) -> None:
    shown = repr(name) if not isinstance(name, str) or len(name) < 60 else "10000 characters"
    rule = "letters, digits and '._:@-'"
    for make in [
        lambda: new(name),
        lambda: new("w").await_signal(name),
        lambda: new("w").await_approval(name, []),
        lambda: new("w").sub_workflow("child", name),
    ]:
        with pytest.raises(ValueError) as caught:
            make()
        assert isinstance(caught.value, DefinitionError)
        assert shown in str(caught.value) and rule in str(caught.value), str(caught.value)


def test_a_hand_made_workflow_is_held_to_the_same_rules_when_validated() -> None:
    with raises("workflow name 'has space'"):
        validate(Workflow("has space", (step("a", work),)))
    with raises("signal name 'a b'"):
        validate(Workflow("w", (SignalStep("a b"),)))


@pytest.mark.parametrize("name", ["order", "v1.2", "ns:order-2", "A_b", "x" * 200])
def test_ids_of_every_safe_form_name_workflows_signals_and_approvals(name: str) -> None:
    wf = new(name).await_signal(f"s{name}"[:200]).await_approval(f"a{name}"[:200]).build()
    assert wf.name == name


def test_sub_workflow_needs_a_workflow_name_and_json_input() -> None:
    with raises("'child'", "workflow name"):
        new("w").sub_workflow("child", "")
    with raises("'child'", "JSON"):
        new("w").sub_workflow("child", "kid", {"when": object()})
    with raises("'child'", "dict"):
        new("w").sub_workflow("child", "kid", [1, 2])  # type: ignore[arg-type]


# ---------------------------------------------------------------- what a step is


def _one_of_each_accepted() -> list[object]:
    inner = new("inner").step("i1", work).build()
    return [
        step("act", work),
        ActionStep("act2", work),
        inner,
        UserStep("user"),
        CustomStep("custom", UserStep("custom")),
        IfStep("if", (Branch(yes, (step("t", work),)),)),
        LoopStep("loop", (step("body", work),), max_iterations=1),
        ParallelStep("par", (step("br", work),)),
        SignalStep("sig"),
        ApprovalStep("ok", ()),
        SubWorkflowStep("sub", "child"),
        SleepStep("nap", timedelta(seconds=1)),
    ]


@pytest.mark.parametrize("accepted", _one_of_each_accepted(), ids=lambda x: type(x).__name__)
def test_everything_the_builder_accepts_is_step_like(accepted: object) -> None:
    assert isinstance(accepted, StepLike)
    for built in [
        new("w").if_("c", yes).then(accepted).end().build(),  # type: ignore[arg-type]
        new("w").loop("l").max_iterations(1).do(accepted).end().build(),  # type: ignore[arg-type]
        new("w").parallel("p", accepted).build(),  # type: ignore[arg-type]
    ]:
        assert all(isinstance(node, StepLike) for node in built.nodes())


def test_action_steps_and_user_steps_satisfy_the_step_protocol_and_workflows_do_not() -> None:
    assert isinstance(step("a", work), Step)
    assert isinstance(UserStep("u"), Step)
    wf = new("w").step("a", work).build()
    assert not isinstance(wf, Step)  # docs/API.md: only the engine runs a Workflow
    assert isinstance(wf, StepLike)


@pytest.mark.parametrize("refused", [work, 42, "step", object()], ids=repr)
def test_what_is_not_step_like_is_refused(refused: object) -> None:
    assert not isinstance(refused, StepLike)
    with raises("not a step"):
        new("w").parallel("p", refused)  # type: ignore[arg-type]


# ---------------------------------------------------------------- immutability


def test_built_nodes_are_frozen() -> None:
    wf = build_order()
    with pytest.raises(dataclasses.FrozenInstanceError):
        wf.name = "other"  # type: ignore[misc]
    for node in wf.nodes():
        with pytest.raises(dataclasses.FrozenInstanceError):
            node.name = "other"  # type: ignore[misc]
    assert isinstance(wf.steps, tuple)
    large = wf.steps[1]
    assert isinstance(large, IfStep) and isinstance(large.branches, tuple)
    assert all(isinstance(b.steps, tuple) for b in large.branches)
    with pytest.raises(dataclasses.FrozenInstanceError):
        large.branches[0].cond = no  # type: ignore[misc]


def test_building_twice_gives_equal_workflows() -> None:
    b = new("w").step("a", work).parallel("p", step("b", work)).wait_count(1)
    first, second = b.build(), b.build()
    assert first == second and first.id == second.id
    assert first is not second


def test_going_on_after_build_does_not_change_the_built_workflow() -> None:
    b = new("w").step("a", work)
    built = b.build()
    assert [n.name for n in b.step("b", work).build().steps] == ["a", "b"]
    assert [n.name for n in built.steps] == ["a"]


def test_a_builder_reused_in_two_places_gives_two_independent_definitions() -> None:
    base = new("w").step("a", work)
    one = base.step("b", work)
    two = base.step("c", undo)
    assert [n.name for n in one.build().steps] == ["a", "b"]
    assert [n.name for n in two.build().steps] == ["a", "c"]
    assert [n.name for n in base.build().steps] == ["a"]


def test_option_builders_reused_in_two_places_are_independent() -> None:
    p = new("w").parallel("p", step("a", work), step("b", work))
    anyone = p.wait_for(WaitAny).build().steps[0]
    counted = p.wait_count(2).build().steps[0]
    assert isinstance(anyone, ParallelStep) and anyone.strategy is WaitAny
    assert isinstance(counted, ParallelStep) and (counted.strategy, counted.count) == (WaitCount, 2)
    assert p.build().steps[0] == ParallelStep("p", (step("a", work), step("b", work)))
    a = new("w").await_approval("ok", ["x", "y"])
    assert a.quorum(2).build().steps[0] == ApprovalStep("ok", ("x", "y"), 2)
    assert a.timeout("1h").build().steps[0] == ApprovalStep("ok", ("x", "y"), 1, timedelta(hours=1))


def test_a_long_chain_shares_its_steps_instead_of_copying_them() -> None:
    b = new("long")
    for i in range(5000):
        before = b
        b = b.step(f"s{i}", work)
        assert b._chain is not None and b._chain.before is before._chain
    wf = b.build()
    assert len(wf.steps) == 5000 and wf.steps[-1].name == "s4999"


def test_options_given_after_build_do_not_change_the_built_workflow() -> None:
    p = new("w").parallel("p", step("a", work), step("b", work))
    built = p.build()
    p.wait_for(WaitAny)
    a = new("w").await_approval("ok", ["x", "y"])
    approval_built = a.build()
    a.quorum(2).timeout("1h")
    assert built.steps[0] == ParallelStep("p", (step("a", work), step("b", work)))
    assert approval_built.steps[0] == ApprovalStep("ok", ("x", "y"))


def test_a_built_workflow_reused_in_two_places_is_shared_unchanged() -> None:
    part = new("part").step("p1", work).build()
    one = new("one").if_("c", yes).then(part).end().build()
    two = new("two").parallel("fan", part).build()
    assert one.steps[0].branches[0].steps[0] is part  # type: ignore[union-attr]
    assert two.steps[0].branches[0] is part  # type: ignore[union-attr]


def test_sub_workflow_input_is_detached_from_the_callers_dict() -> None:
    data: dict[str, Any] = {"items": [1, 2]}
    wf = new("w").sub_workflow("child", "kid", data).build()
    data["items"].append(3)
    data["extra"] = True
    assert wf.steps[0] == SubWorkflowStep("child", "kid", {"items": [1, 2]})


def test_a_failed_chain_leaves_the_builder_usable() -> None:
    b = new("w").step("a", work)
    with raises("'fan'"):
        b.parallel("fan")
    assert [n.name for n in b.step("b", work).build().steps] == ["a", "b"]


# ---------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_across_identical_builds() -> None:
    assert build_order().id == build_order().id
    assert len(build_order().id) == 16


CHANGES: list[Callable[[Builder], Builder]] = [
    lambda b: b,
    lambda b: b.step("extra", work),
    lambda b: b.sleep("extra", 1),
    lambda b: b.parallel("extra", step("x", work)),
    lambda b: b.parallel("extra", step("x", work), step("y", work)).wait_for(WaitAny),
    lambda b: b.loop("extra").max_iterations(3).do(step("x", work)).end(),
    lambda b: b.loop("extra").max_iterations(4).do(step("x", work)).end(),
    lambda b: b.await_signal("extra"),
    lambda b: b.await_signal("extra").timeout("1h"),
    lambda b: b.await_approval("extra", ["a"]),
    lambda b: b.await_approval("extra", ["a", "b"]).quorum(2),
    lambda b: b.sub_workflow("extra", "child"),
    lambda b: b.sub_workflow("extra", "other-child"),
]


def test_fingerprint_changes_when_the_shape_changes() -> None:
    ids = [change(new("w").step("a", work)).build().id for change in CHANGES]
    assert len(set(ids)) == len(CHANGES)


def test_fingerprints_of_every_variant_differ() -> None:
    variants = [
        new("w").step("a", work).build(),
        new("w").step("b", work).build(),
        new("v").step("a", work).build(),
        new("w").step("a", undo).build(),
        new("w").step("a", work, compensate=undo).build(),
        new("w").if_("c", yes).then(step("a", work)).end().build(),
        new("w").if_("c", yes).then().else_(step("a", work)).end().build(),
    ]
    assert len({wf.id for wf in variants}) == len(variants)


# ---------------------------------------------------------------- properties

Shape = tuple[Any, ...]

leaves = st.sampled_from(["step", "sleep", "signal", "approval", "sub", "user"]).map(
    lambda kind: (kind,)
)


def _compound(children: st.SearchStrategy[Shape]) -> st.SearchStrategy[Shape]:
    seqs = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        st.tuples(
            st.just("if"),
            st.lists(st.lists(children, max_size=3), min_size=1, max_size=3),
            st.none() | st.lists(children, max_size=3),
        ),
        st.tuples(st.just("loop"), seqs, st.integers(1, 1000)),
        st.tuples(st.just("parallel"), seqs, st.sampled_from(["all", "any", "count"])),
        st.tuples(st.just("seq"), seqs),
    )


shapes = st.recursive(leaves, _compound, max_leaves=20)
workflows = st.lists(shapes, min_size=1, max_size=5)


def _add(b: Builder, shape: Shape, names: Iterator[str]) -> Builder:
    """Add ``shape`` to ``b`` through the builder's own methods."""
    kind = shape[0]
    if kind == "seq":
        for s in shape[1]:
            b = _add(b, s, names)
        return b
    name = next(names)
    if kind == "step":
        return b.step(name, work)
    if kind == "sleep":
        return b.sleep(name, "1s")
    if kind == "signal":
        return b.await_signal(name).timeout(5)
    if kind == "approval":
        return b.await_approval(name, ["a", "b"]).quorum(2)
    if kind == "sub":
        return b.sub_workflow(name, "child", {"n": 1})
    if kind == "user":
        return b.parallel(name, UserStep(next(names)))
    if kind == "if":
        _, arms, else_arm = shape
        ib = b.if_(name, yes).then(*[_nested(s, names) for s in arms[0]])
        for arm in arms[1:]:
            ib = ib.else_if(no).then(*[_nested(s, names) for s in arm])
        if else_arm is not None:
            ib = ib.else_(*[_nested(s, names) for s in else_arm])
        return ib.end()
    if kind == "loop":
        _, body, limit = shape
        return b.loop(name).max_iterations(limit).do(*[_nested(s, names) for s in body]).end()
    if kind == "parallel":
        _, branches, strategy = shape
        pb = b.parallel(name, *[_nested(s, names) for s in branches])
        if strategy == "count":
            return pb.wait_count(len(branches))
        return pb.wait_for(WaitStrategy(strategy))
    raise AssertionError(kind)


def _nested(shape: Shape, names: Iterator[str]) -> Node:
    """``shape`` as a step for then/else_/do/parallel: an ActionStep or a small built workflow."""
    if shape[0] == "step":
        return step(next(names), work)
    return _add(new(next(names)), shape, names).build()


def _count_described(d: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    kids: list[dict[str, Any]] = list(d.get("steps", []))
    if d["kind"] == "if":
        kids = [s for arm in d["branches"] for s in arm["steps"]]
    elif d["kind"] == "parallel":
        kids = d["branches"]
    for kid in kids:
        out.append((kid["name"], kid["kind"]))
        out.extend(_count_described(kid))
    return out


@settings(max_examples=150, deadline=None)
@given(workflows)
def test_random_valid_trees_always_build_with_unique_names(tree: list[Shape]) -> None:
    counter = itertools.count()
    names = (f"n{i}" for i in counter)
    b = new("root")
    for shape in tree:
        b = _add(b, shape, names)
    wf = b.build()
    validate(wf)
    used = next(counter)  # every name handed out, the root's aside
    nodes = list(wf.nodes())
    assert len(nodes) == used
    all_names = [n.name for n in nodes]
    assert len(set(all_names)) == len(all_names)
    assert "root" not in all_names
    described = _count_described(wf.describe())
    assert described == [(n.name, n.kind) for n in nodes]
    assert b.build() == wf and b.build().id == wf.id


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=6), st.booleans())
def test_a_tree_builds_exactly_when_its_names_are_unique(names: list[str], nest: bool) -> None:
    b = new("root")
    if nest:
        b = b.if_(names[0], yes).then(*[step(n, work) for n in names[1:]]).end()
    else:
        for n in names:
            b = b.step(n, work)
    if len(set(names)) == len(names):
        assert [n.name for n in b.build().nodes()] == names
    else:
        duplicate = next(n for i, n in enumerate(names) if n in names[:i])
        with raises(repr(duplicate), "twice"):
            b.build()


@settings(max_examples=50, deadline=None)
@given(workflows)
def test_built_trees_are_frozen_all_the_way_down(tree: list[Shape]) -> None:
    names = (f"n{i}" for i in itertools.count())
    b = new("root")
    for shape in tree:
        b = _add(b, shape, names)
    for node in b.build().nodes():
        assert dataclasses.is_dataclass(node)
        with pytest.raises(dataclasses.FrozenInstanceError):
            node.name = "x"  # type: ignore[misc]
        for f in dataclasses.fields(node):
            assert not isinstance(getattr(node, f.name), list)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=12))
def test_any_builder_of_a_chain_may_be_continued_without_changing_the_others(
    forks: list[int],
) -> None:
    chain = [new("root")]
    for i in range(30):
        chain.append(chain[-1].step(f"s{i}", work))
    expected = {}
    for n, at in enumerate(forks):
        forked = chain[at].sleep(f"fork{n}", 1)
        expected[n] = ([f"s{i}" for i in range(at)] + [f"fork{n}"], forked)
    for names, forked in expected.values():
        assert [node.name for node in forked.build().steps] == names
    assert [node.name for node in chain[-1].build().steps] == [f"s{i}" for i in range(30)]


# Parallel map ------------------------------------------------------------------------------


def _map(name: str = "m") -> treadle.LoopBuilder:
    return treadle.new(name).loop("each").for_each("items")


def _noop(ctx: treadle.Context, state: treadle.State) -> None:
    return None


def test_a_parallel_loop_builds_a_map_with_its_options() -> None:
    wf = (
        _map()
        .parallel(max=5, tolerate=0.1)
        .do(treadle.step("ship", _noop))
        .end()
        .step("after", _noop)
        .build()
    )
    (node, _) = wf.steps
    assert node.kind == "map"
    shape = wf.describe()["steps"][0]
    assert shape["for_each"] == "items" and shape["max"] == 5 and shape["tolerate"] == 0.1
    assert shape["steps"][0]["name"] == "ship"
    counted = _map().parallel(max=2).wait_count(3).do(treadle.step("s", _noop)).end().build()
    assert counted.describe()["steps"][0]["strategy"] == "count"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _map().parallel(max=0), "max must be an integer >= 1, not 0"),
        (lambda: _map().parallel(max=2.5), "max must be an integer >= 1, not 2.5"),
        (lambda: _map().parallel(max=True), "max must be an integer >= 1, not True"),
        (lambda: _map().parallel(tolerate=-1), "tolerate must be a count"),
        (lambda: _map().parallel(tolerate=1.5), "not 1.5"),
        (lambda: _map().parallel(tolerate="all"), "not 'all'"),
        (lambda: _map().parallel().tolerate(-0.1), "not -0.1"),
        (lambda: _map().max_iterations(3).parallel(), "drop while_, break_when and max_iterations"),
        (lambda: _map().parallel().wait_count(0), "wait_count must be an integer >= 1"),
        (lambda: _map().parallel().wait_for("most"), "'most' is not a wait strategy"),
        (lambda: _map().parallel().end(), "has no body"),
        (
            lambda: treadle.new("m").loop("each").parallel().do(treadle.step("s", _noop)).end(),
            "needs for_each(key)",
        ),
        (
            lambda: _map().parallel(tolerate=1).wait_for("any").do(treadle.step("s", _noop)).end(),
            "tolerate applies to WaitAll",
        ),
        (
            lambda: _map().parallel().wait_for("count").do(treadle.step("s", _noop)).end(),
            "needs wait_count(n)",
        ),
        (lambda: _map().parallel().do(), "do() needs at least one step"),
        (lambda: _map().parallel().do(42), "map 'each': 42 is not a step"),
    ],
)
def test_parallel_map_misuse_is_refused_when_built(make: Any, message: str) -> None:
    with pytest.raises(treadle.DefinitionError, match=re.escape(message)):
        make()


def test_a_map_builder_is_a_value() -> None:
    open_map = _map().parallel(max=3)
    one = open_map.wait_for(treadle.WaitAny).do(treadle.step("s", _noop)).end().build()
    two = open_map.do(treadle.step("s", _noop)).end().build()
    assert one.describe()["steps"][0]["strategy"] == "any"
    assert two.describe()["steps"][0]["strategy"] == "all"
