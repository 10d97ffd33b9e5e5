"""Traces across processes: the trace context of the caller of ``start`` is stored with the run
and continued by the spans of the worker process that executes it, and by its child runs, so
that one trace covers request -> run -> steps -> child run -> child steps; also after the
worker is SIGKILLed mid-step and another one goes on.

The worker (``treadle worker obs_app:WORKFLOWS``, tests/workers/obs_app.py) exports its spans to
a JSON-lines file; this process has an SDK tracer provider with an in-memory exporter.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import treadle
from treadle._tracing import capture

sys.path.insert(0, str(Path(__file__).parent / "workers"))
from obs_app import WORKFLOWS as OBS_WORKFLOWS
from sample_codec import Base64Codec

WORKERS = Path(__file__).parent / "workers"
DEADLINE = 20.0
Span = dict[str, Any]


@pytest.fixture(scope="module")
def tracer() -> Iterator[trace.Tracer]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # another test module may have set one
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    yield provider.get_tracer("tests")


class Worker:
    def __init__(self, tmp_path: Path, name: str, **env: str) -> None:
        self.log = tmp_path / f"{name}.log"
        db = f"sqlite:///{tmp_path / 'runs.db'}"
        args = [sys.executable, "-m", "treadle", "worker", "obs_app:WORKFLOWS", "--db", db,
                "--lease", "2", "--no-cron"]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, cwd=WORKERS, stdout=out, stderr=out, env={**os.environ, **env}
            )

    async def until(self, check: Any, what: str) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while not (found := check()):
            assert self.proc.poll() is None, f"worker exited before {what}:\n{self.log.read_text()}"
            assert loop.time() < deadline, f"timed out waiting for {what}:\n{self.log.read_text()}"
            await asyncio.sleep(0.02)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def exported(path: Path) -> list[Span]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def named(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s["name"] == name]


async def started_under_request(
    tracer: trace.Tracer, db: Path, workflow: str
) -> tuple[str, str, str]:
    """Start a run inside a "web request" span; (run id, trace id, request span id)."""
    async with treadle.Client(f"sqlite:///{db}") as client:
        with tracer.start_as_current_span("web request") as request:
            run_id = await client.start(workflow)
        context = request.get_span_context()
        stored = json.loads((await client.persistence.get_run(run_id)).trace)  # type: ignore[union-attr]
    assert stored["traceparent"].split("-")[1] == f"{context.trace_id:032x}"
    return run_id, f"{context.trace_id:032x}", f"{context.span_id:016x}"


async def test_one_trace_covers_the_request_the_run_its_steps_and_its_child_run(
    tracer: trace.Tracer, tmp_path: Path, workers: list[Worker]
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    workers.append(Worker(tmp_path, "worker", OBS_SPANS=str(spans_file)))
    await workers[0].until(lambda: b"ready" in workers[0].log.read_bytes(), "the worker")
    run_id, trace_id, request_id = await started_under_request(
        tracer, tmp_path / "runs.db", "parent"
    )

    def complete() -> list[Span] | None:
        spans = exported(spans_file)
        runs = named(spans, "treadle.run parent")
        done = len(runs) == 2 and named(spans, "treadle.step leaf-step")
        return spans if done else None

    spans = await workers[0].until(complete, "the spans of the run and its child")
    assert {s["trace_id"] for s in spans} == {trace_id}
    assert all(s["pid"] == workers[0].proc.pid for s in spans)
    # Each stretch of the parent run (before the child, after it) continues the request.
    parent_runs = named(spans, "treadle.run parent")
    assert [s["parent_id"] for s in parent_runs] == [request_id, request_id]
    assert {s["attributes"]["treadle.run_id"] for s in parent_runs} == {run_id}
    (before,) = named(spans, "treadle.step before")
    assert before["parent_id"] == parent_runs[0]["span_id"]
    # The child run's span is a child of the parent's run span that started it.
    (child_run,) = named(spans, "treadle.run leaf")
    assert child_run["parent_id"] == parent_runs[0]["span_id"]
    assert child_run["attributes"]["treadle.run_id"].startswith(f"{run_id}.child.")
    (leaf_step,) = named(spans, "treadle.step leaf-step")
    assert leaf_step["parent_id"] == child_run["span_id"]


async def test_after_a_sigkill_mid_step_the_next_worker_continues_the_same_trace(
    tracer: trace.Tracer, tmp_path: Path, workers: list[Worker]
) -> None:
    spans_file, marker = tmp_path / "spans.jsonl", tmp_path / "blocked"
    env = {"OBS_SPANS": str(spans_file)}
    workers.append(Worker(tmp_path, "first", OBS_BLOCK=str(marker), **env))
    await workers[0].until(lambda: b"ready" in workers[0].log.read_bytes(), "the worker")
    run_id, trace_id, request_id = await started_under_request(
        tracer, tmp_path / "runs.db", "traced"
    )
    await workers[0].until(marker.exists, "the step 'slow' to begin")
    workers[0].proc.send_signal(signal.SIGKILL)
    workers[0].proc.wait(5)
    killed = exported(spans_file)
    assert [s["name"] for s in killed] == ["treadle.step first"]  # the run span never ended

    workers.append(Worker(tmp_path, "second", **env))

    def finished() -> list[Span] | None:
        spans = exported(spans_file)
        return spans if named(spans, "treadle.step last") else None

    spans = await workers[1].until(finished, "the run to finish in the second worker")
    assert {s["trace_id"] for s in spans} == {trace_id}
    later = [s for s in spans if s["pid"] == workers[1].proc.pid]
    runs = named(later, "treadle.run traced")
    assert runs and {s["parent_id"] for s in runs} == {request_id}
    assert {s["name"] for s in later} >= {
        "treadle.step slow",
        "treadle.run leaf",
        "treadle.step leaf-step",
        "treadle.step last",
    }
    async with treadle.Client(f"sqlite:///{tmp_path / 'runs.db'}") as client:
        state = await client.status(run_id)
    assert state.status is treadle.Status.COMPLETED


async def test_without_a_current_span_or_a_provider_nothing_is_captured(
    tracer: trace.Tracer,
) -> None:
    assert capture() is None  # a provider, but no span is current
    with tracer.start_as_current_span("outer"):
        stored = capture()
    assert stored is not None and set(json.loads(stored)) >= {"traceparent"}


async def test_the_callers_context_is_stored_with_the_run_and_its_child_on_every_backend(
    tracer: trace.Tracer, engine: treadle.Engine
) -> None:
    engine.register(next(w for w in OBS_WORKFLOWS if w.name == "leaf"))
    engine.register(next(w for w in OBS_WORKFLOWS if w.name == "parent"))
    with tracer.start_as_current_span("caller") as caller:
        run_id = await engine.start("parent")
    await engine.wait(run_id, 10)
    trace_id = f"{caller.get_span_context().trace_id:032x}"
    stored = await engine.persistence.get_run(run_id)
    assert stored is not None and stored.trace is not None
    assert json.loads(stored.trace)["traceparent"].split("-")[1] == trace_id
    (child,) = await engine.persistence.list_runs(parent_id=run_id, limit=10)
    assert child.trace is not None
    assert json.loads(child.trace)["traceparent"].split("-")[1] == trace_id
    untraced = await engine.start("leaf")  # no span current: nothing stored
    assert (await engine.persistence.get_run(untraced)).trace is None  # type: ignore[union-attr]


async def test_the_trace_is_stored_in_plain_text_even_with_a_codec(
    tracer: trace.Tracer, tmp_path: Path
) -> None:
    db = tmp_path / "coded.db"
    engine = treadle.Engine(treadle.SQLitePersistence(str(db)), codec=Base64Codec())
    engine.register(next(w for w in OBS_WORKFLOWS if w.name == "leaf"))
    async with engine:
        with tracer.start_as_current_span("caller"):
            run_id = await engine.start("leaf", run_id="coded")
        await engine.wait(run_id, 10)
    with sqlite3.connect(db) as conn:
        ((text, data),) = conn.execute("SELECT trace, data FROM runs WHERE id = 'coded'")
    assert json.loads(text)["traceparent"].startswith("00-")
    assert not data.startswith("{")  # the data went through the codec


async def test_a_signal_keeps_the_senders_trace_in_the_runs_history(
    tracer: trace.Tracer, engine: treadle.Engine
) -> None:
    engine.register(next(w for w in OBS_WORKFLOWS if w.name == "waiter"))
    run_id = await engine.start("waiter")
    with tracer.start_as_current_span("sender") as sender:
        await engine.signal(run_id, "go", {"ok": True})
    await engine.wait(run_id, 10)
    (received,) = [e for e in await engine.history(run_id) if e.kind == "signal_received"]
    trace_id = f"{sender.get_span_context().trace_id:032x}"
    assert received.detail["trace"]["traceparent"].split("-")[1] == trace_id
    assert received.detail["data"] == {"ok": True}
