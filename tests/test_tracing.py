"""OpenTelemetry: a span per run execution and per step attempt, with the run id and step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import treadle

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the first module of the session to trace
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    yield _EXPORTER


async def test_runs_and_step_attempts_become_spans_with_run_id_step_and_errors(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    tries: list[int] = []

    def flaky(ctx: treadle.Context, state: treadle.State) -> None:
        tries.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("down")

    workflow = (
        treadle.new("traced")
        .step("first", lambda ctx, state: None)
        .step("flaky", flaky, retry=treadle.RetryPolicy().attempts(2).backoff("1ms", "1ms"))
        .build()
    )
    engine = treadle.Engine()
    engine.register(workflow)
    async with engine:
        run_id = await engine.start("traced")
        assert (await engine.wait(run_id, 10)).status is treadle.Status.COMPLETED

    finished = spans.get_finished_spans()
    steps = [s for s in finished if s.name.startswith("treadle.step")]
    assert [(s.name, s.attributes["treadle.attempt"]) for s in steps] == [
        ("treadle.step first", 1),
        ("treadle.step flaky", 1),
        ("treadle.step flaky", 2),
    ]
    assert all(s.attributes["treadle.run_id"] == run_id for s in steps)
    assert steps[1].status.status_code is StatusCode.ERROR
    assert steps[2].status.status_code is not StatusCode.ERROR
    runs = [s for s in finished if s.name == "treadle.run traced"]
    assert len(runs) >= 2  # one per execution stretch: before and after the retry backoff
    assert all(s.attributes["treadle.workflow"] == "traced" for s in runs)
    step_parents = {s.parent.span_id for s in steps if s.parent is not None}
    assert step_parents <= {s.context.span_id for s in runs}
