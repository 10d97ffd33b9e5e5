"""The app of the observability tests (tests/test_worker_metrics.py, tests/test_traces.py), run
as ``treadle worker obs_app:WORKFLOWS`` from this folder.

With ``OBS_SPANS=<file>`` in the environment, importing it installs an OpenTelemetry SDK tracer
provider whose exporter appends every ended span to that file as one JSON line (written and
flushed at once, so that spans ended before a SIGKILL are kept). With ``OBS_BLOCK=<file>``, the
step "slow" of the workflow "traced" writes that file and then blocks forever (until SIGKILL).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import treadle


def _file_exporter(path: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class JsonLines(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            lines = []
            for span in spans:
                context, parent = span.context, span.parent
                assert context is not None
                lines.append(
                    json.dumps(
                        {
                            "name": span.name,
                            "trace_id": f"{context.trace_id:032x}",
                            "span_id": f"{context.span_id:016x}",
                            "parent_id": None if parent is None else f"{parent.span_id:016x}",
                            "attributes": dict(span.attributes or {}),
                            "pid": os.getpid(),
                        }
                    )
                )
            with open(path, "a") as out:
                out.write("".join(f"{line}\n" for line in lines))
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))
    trace.set_tracer_provider(provider)


if os.environ.get("OBS_SPANS"):
    _file_exporter(os.environ["OBS_SPANS"])


def hello(ctx: treadle.Context, state: treadle.State) -> str:
    return f"hello {state.data.get('name', 'you')}"


def slow(ctx: treadle.Context, state: treadle.State) -> None:
    marker = os.environ.get("OBS_BLOCK")
    if marker:
        Path(marker).write_text(ctx.run_id)
        threading.Event().wait()  # until SIGKILL


async def doze(ctx: treadle.Context, state: treadle.State) -> None:
    await asyncio.sleep(1.5)  # longer than a heartbeat of a 2s lease


def wobble(ctx: treadle.Context, state: treadle.State) -> None:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")


def explode(ctx: treadle.Context, state: treadle.State) -> None:
    raise treadle.NonRetryableError("out of paper")


QUICK_RETRY = treadle.RetryPolicy(max_attempts=3, initial_wait=timedelta(milliseconds=50))

WORKFLOWS = [
    treadle.new("greet").step("hello", hello).step("again", hello).build(),
    treadle.new("leaf").step("leaf-step", hello).build(),
    treadle.new("parent").step("before", hello).sub_workflow("child", "leaf").build(),
    treadle.new("traced")
    .step("first", hello)
    .step("slow", slow)
    .sub_workflow("child", "leaf")
    .step("last", hello)
    .build(),
    treadle.new("flaky").step("wobble", wobble, retry=QUICK_RETRY).build(),
    treadle.new("broken").step("explode", explode).build(),
    treadle.new("waiter").await_signal("go").build(),
    treadle.new("timed").sleep("nap", "1h").build(),
    treadle.new("sleepy").step("doze", doze).build(),
]

if os.environ.get("OBS_ONLY"):  # a worker that has only some of the workflows
    WORKFLOWS = [w for w in WORKFLOWS if w.name in os.environ["OBS_ONLY"].split(",")]
