"""Typed data (API.md "Typed data and codecs"): input models validate what ``start`` is given
before anything is stored, steps read it typed as ``ctx.input``, values JSON lacks get one
documented JSON form, and the stored form stays JSON."""

from __future__ import annotations

import dataclasses
import enum
import math
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from enginekit import EngineFactory
from pydantic import BaseModel

import treadle
from treadle import Context, State, Status


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """This file's backends (the codec tests cover PostgreSQL's storage)."""
    name: str = request.param
    return name


class Line(BaseModel):
    sku: str
    qty: int


class OrderIn(BaseModel):
    total: Decimal
    placed: datetime
    lines: list[Line]


@dataclasses.dataclass
class Refund:
    order: uuid.UUID
    on: date


class Colour(enum.Enum):
    RED = "red"


PLACED = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
GOOD = {"total": "12.50", "placed": PLACED.isoformat(), "lines": [{"sku": "a", "qty": 2}]}


def order(fn: treadle.StepFunc) -> treadle.Workflow:
    return treadle.new("order", input=OrderIn).step("check", fn).build()


async def test_bad_start_data_is_a_data_error_listing_each_field_and_stores_nothing(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(order(lambda ctx, state: None))
    bad = {"total": "lots", "lines": [{"sku": 1}]}
    with pytest.raises(treadle.DataError) as caught:
        await engine.start("order", bad, run_id="o-1")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("start of 'order': data does not fit OrderIn: ")
    for field in ("total: ", "placed: Field required", "lines.0.sku: ", "lines.0.qty: "):
        assert field in message
    assert await engine.runs() == []


async def test_steps_read_the_input_typed_and_the_stored_form_is_the_json_dump(
    make_engine: EngineFactory,
) -> None:
    seen: list[Any] = []

    def check(ctx: Context, state: State) -> None:
        before = ctx.input
        state.data["total"] = "13.00"
        seen.extend([before, ctx.input, ctx.input is ctx.input])

    engine = await make_engine(order(check))
    typed = OrderIn(total=Decimal("12.50"), placed=PLACED, lines=[Line(sku="a", qty=2)])
    run_id = await engine.start("order", typed)
    final = await engine.wait(run_id, timeout=10)
    assert final.status is Status.COMPLETED, final.error
    assert final.data == {
        "total": "13.00",
        "placed": "2026-03-01T12:30:00Z",
        "lines": [{"sku": "a", "qty": 2}],
    }
    before, after, same = seen
    assert before == typed and isinstance(before.placed, datetime)
    assert after.total == Decimal("13.00"), "ctx.input reflects the step's own writes"
    assert same is False, "a fresh instance on every read"


async def test_a_dataclass_input_model_validates_through_pydantic(
    make_engine: EngineFactory,
) -> None:
    got: list[Refund] = []
    wf = treadle.new("refund", input=Refund).step("r", lambda c, s: got.append(c.input)).build()
    engine = await make_engine(wf)
    with pytest.raises(treadle.DataError, match="does not fit Refund: order: "):
        await engine.start("refund", {"order": "not-a-uuid", "on": "2026-01-02"})
    order_id = uuid.uuid4()
    run_id = await engine.start("refund", Refund(order_id, date(2026, 1, 2)))
    assert (await engine.wait(run_id, timeout=10)).status is Status.COMPLETED
    assert got == [Refund(order_id, date(2026, 1, 2))]
    assert (await engine.status(run_id)).data == {"order": str(order_id), "on": "2026-01-02"}


async def test_ctx_input_without_a_model_fails_the_step_saying_how_to_get_one(
    engine: treadle.Engine,
) -> None:
    engine.register(treadle.new("plain").step("s", lambda ctx, state: ctx.input).build())
    final = await engine.wait(await engine.start("plain", {}), timeout=10)
    assert final.status is Status.FAILED
    assert "workflow 'plain' has no input model" in (final.error or "")
    assert "input=Model" in (final.error or "")


def test_only_workflows_with_an_input_model_have_it_in_their_shape_and_fingerprint() -> None:
    plain = treadle.new("order").step("check", print).build()
    typed = treadle.new("order", input=OrderIn).step("check", print).build()
    assert "input" not in plain.describe()
    assert typed.describe()["input"] == f"{__name__}.OrderIn"
    assert typed.id != plain.id
    assert plain.id == treadle.Workflow("order", plain.steps).id
    with pytest.raises(treadle.DefinitionError, match="pydantic model class or a dataclass"):
        treadle.new("order", input=dict)


async def test_a_start_by_name_is_validated_by_the_worker_that_has_the_model(
    make_engine: EngineFactory,
) -> None:
    worker = await make_engine(order(lambda ctx, state: None))
    await worker.settle()
    web = await make_engine(max_concurrent_runs=0)  # no step code, no model: start by name
    bad = await web.start("order", {"total": "lots"})
    good = await web.start("order", {**GOOD, "total": 12.5})
    failed = await worker.wait(bad, timeout=10)
    assert failed.status is Status.FAILED
    assert "data does not fit OrderIn: total: " in (failed.error or "")
    history = await worker.history(bad)
    assert [e.kind for e in history][-1] == "run_failed"
    assert "placed: Field required" in history[-1].detail["error"]
    done = await worker.wait(good, timeout=10)
    assert done.status is Status.COMPLETED
    assert done.data["total"] == "12.5" and done.data["placed"] == "2026-03-01T12:30:00Z"


async def test_a_child_run_is_validated_against_its_own_model(engine: treadle.Engine) -> None:
    engine.register(
        order(lambda ctx, state: None),
        treadle.new("parent").sub_workflow("child", "order", {"total": "x"}).build(),
    )
    final = await engine.wait(await engine.start("parent", {}), timeout=10)
    assert final.status is Status.FAILED
    assert "data does not fit OrderIn" in (final.error or "")


async def test_values_json_lacks_are_stored_in_their_json_form(engine: treadle.Engine) -> None:
    seen: list[Any] = []

    def result(ctx: Context, state: State) -> Any:
        state.data["when"] = PLACED
        return {
            "day": date(2026, 1, 2),
            "at": time(9, 30),
            "price": Decimal("9.99"),
            "id": uuid.UUID(int=7),
            "colour": Colour.RED,
            "refund": Refund(uuid.UUID(int=8), date(2026, 1, 3)),
            "line": Line(sku="b", qty=1),
            "pair": (1, 2),
        }

    wf = (
        treadle.new("forms")
        .step("result", result)
        .if_("iso", lambda s: isinstance(s.data["when"], str))
        .then(treadle.step("next", lambda ctx, state: seen.append(state.data["result"]["day"])))
        .end()
        .build()
    )
    engine.register(wf)
    start = {"started": datetime(2026, 1, 1, tzinfo=UTC)}
    run_id = await engine.start("forms", start, run_id="f-1")
    assert await engine.start("forms", start, run_id="f-1") == run_id  # digest of JSON forms
    final = await engine.wait(run_id, timeout=10)
    assert final.status is Status.COMPLETED, final.error
    assert final.data == {
        "started": "2026-01-01T00:00:00+00:00",
        "when": "2026-03-01T12:30:00+00:00",
        "result": {
            "day": "2026-01-02",
            "at": "09:30:00",
            "price": "9.99",
            "id": str(uuid.UUID(int=7)),
            "colour": "red",
            "refund": {"order": str(uuid.UUID(int=8)), "on": "2026-01-03"},
            "line": {"sku": "b", "qty": 1},
            "pair": [1, 2],
        },
    }
    assert seen == ["2026-01-02"], "later steps and conditions see the stored form"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"raw", "at odd.inner[1]: bytes have no JSON form"),
        (math.nan, "at odd.inner[1]: Out of range float values"),
        (Decimal("NaN"), "at odd.inner[1]: Decimal NaN has no JSON form"),
        ({1, 2}, "at odd.inner[1]: a set has no JSON form"),
        (object(), "at odd.inner[1]: Object of type object has no JSON form"),
    ],
)
async def test_values_without_a_json_form_fail_the_step_naming_where_they_are(
    engine: treadle.Engine, value: Any, says: str
) -> None:
    wf = treadle.new("odd").step("odd", lambda ctx, state: {"inner": [1, value]}).build()
    engine.register(wf)
    final = await engine.wait(await engine.start("odd", {"kept": True}), timeout=10)
    assert final.status is Status.FAILED
    assert f"step 'odd': run data is not JSON-serialisable {says}" in (final.error or "")
    assert final.data == {"kept": True}


def test_the_sync_engine_starts_with_a_model_instance() -> None:
    with treadle.SyncEngine() as engine:
        engine.register(order(lambda ctx, state: None))
        typed = OrderIn(total=Decimal("1"), placed=PLACED, lines=[])
        final = engine.wait(engine.start("order", typed), timeout=10)
    assert final.status is Status.COMPLETED
    assert final.data == {"total": "1", "placed": "2026-03-01T12:30:00Z", "lines": []}


async def test_signal_data_takes_the_json_forms_and_bytes_are_refused_naming_where() -> None:
    engine = treadle.Engine()
    engine.register(treadle.new("paid").await_signal("go").build())
    async with engine:
        run_id = await engine.start("paid")
        with pytest.raises(treadle.DataError, match=r"data of signal 'go'.*at data\.x: bytes"):
            await engine.signal(run_id, "go", {"x": b"1"})
        when = datetime(2030, 1, 1, 12, 30, tzinfo=UTC)
        await engine.signal(run_id, "go", {"when": when, "amount": Decimal("1.50")})
        final = await engine.wait(run_id, 5)
        assert final.data["go"] == {"when": "2030-01-01T12:30:00+00:00", "amount": "1.50"}
        assert len([e for e in await engine.history(run_id) if e.kind == "signal_received"]) == 1
