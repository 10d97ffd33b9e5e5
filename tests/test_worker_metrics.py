"""``treadle worker --metrics-port``: a worker process on a SQLite file serves its own Prometheus
metrics; runs started by a :class:`treadle.Client` in this process show up in them. Also: the
Grafana dashboard in docs/ queries only metrics that are exported."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import treadle
from treadle._prometheus import METRICS

sys.path.insert(0, str(Path(__file__).parent / "workers"))
from obs_app import WORKFLOWS

WORKERS = Path(__file__).parent / "workers"
GRAFANA = Path(__file__).parent.parent / "docs" / "grafana-treadle.json"
DEADLINE = 20.0
PORT = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def worker_args(db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "treadle", "worker", "obs_app:WORKFLOWS", "--db", f"sqlite:///{db}",
            "--lease", "2", "--drain", "0.2", *extra]  # fmt: skip


class Worker:
    """One ``treadle worker`` process with its log file."""

    def __init__(self, db: Path, log: Path, *extra: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                worker_args(db, *extra), cwd=WORKERS, stdout=out, stderr=out, env=os.environ
            )

    def port(self) -> int:
        found = until(lambda: PORT.findall(self.text()), self)
        assert isinstance(found, list)
        return int(found[-1])

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def until(check: Callable[[], object], worker: Worker | None = None) -> object:
    deadline = time.monotonic() + DEADLINE
    while True:
        found = check()
        if found:
            return found
        if worker is not None and worker.proc.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.proc.returncode}):\n{worker.text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out{'' if worker is None else ':' + worker.text()}")
        time.sleep(0.05)


def scrape(port: int) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


def start_runs(db: Path) -> list[str]:
    with treadle.SyncClient(f"sqlite:///{db}") as client:
        ids = [client.start("greet", {"name": n}) for n in ("ada", "bob", "cy")]
        ids += [client.start("flaky"), client.start("broken"), client.start("parent")]
        ids += [client.start("waiter", run_id=f"wait-{n}") for n in range(2)]
        ids += [client.start("timed", run_id="nap"), client.start("sleepy")]
        return ids


def test_a_workers_metrics_count_what_it_executed_and_show_the_queue(
    tmp_path: Path, workers: list[Worker]
) -> None:
    db = tmp_path / "runs.db"
    log = tmp_path / "worker.log"
    workers.append(Worker(db, log, "--metrics-port", "0", "--metrics-refresh", "0.2"))
    port = workers[0].port()
    start_runs(db)

    def settled() -> Samples | None:
        samples = scrape(port)
        done = value(samples, "treadle_runs_completed_total", workflow="greet") == 3
        done = done and value(samples, "treadle_runs_completed_total", workflow="sleepy") == 1
        waiting = value(samples, "treadle_runs_waiting", kind="signal") == 2
        return samples if done and waiting else None

    samples = until(settled, workers[0])
    assert isinstance(samples, dict)
    assert value(samples, "treadle_runs_completed_total", workflow="flaky") == 1
    assert value(samples, "treadle_runs_completed_total", workflow="parent") == 1
    assert value(samples, "treadle_runs_completed_total", workflow="leaf") == 1
    assert value(samples, "treadle_runs_failed_total", workflow="broken") == 1
    finished = {"workflow": "broken", "status": "failed"}
    assert value(samples, "treadle_runs_finished_total", **finished) == 1
    # The client created the runs; this worker created the child run of "parent".
    assert value(samples, "treadle_runs_started_total", workflow="leaf") == 1
    assert value(samples, "treadle_runs_started_total", workflow="greet") is None
    hello = {"workflow": "greet", "step": "hello"}
    assert value(samples, "treadle_step_duration_seconds_count", **hello) == 3
    assert value(samples, "treadle_step_duration_seconds_bucket", **hello, le="+Inf") == 3
    assert value(samples, "treadle_step_duration_seconds_bucket", **hello, le="300.0") == 3
    retried = {"workflow": "flaky", "step": "wobble"}
    assert value(samples, "treadle_step_retries_total", **retried) == 1
    claims = value(samples, "treadle_claims_total")
    assert claims is not None and claims >= 10  # every run at least once (a retry claims again)
    assert value(samples, "treadle_lease_losses_total") == 0
    batches = value(samples, "treadle_commit_batch_size_count")
    assert batches is not None and batches > 0
    assert value(samples, "treadle_commit_seconds_count") == batches
    assert value(samples, "treadle_runs_waiting", kind="timer") == 1
    assert value(samples, "treadle_runs_waiting", kind="approval") == 0
    assert value(samples, "treadle_runs_waiting", kind="child") == 0
    assert value(samples, "treadle_runs", status="waiting") == 3
    assert value(samples, "treadle_oldest_runnable_age_seconds") == 0
    renewals = value(samples, "treadle_lease_renewals_total")
    assert renewals is not None and renewals > 0  # the heartbeat renewed the lease of "sleepy"

    # SIGKILL: the counters were this process's, the queue is the database's. A new worker
    # (executing nothing) shows the parked runs at once, and the lag of a pending run grows.
    workers[0].proc.send_signal(signal.SIGKILL)
    workers[0].proc.wait(5)
    with treadle.SyncClient(f"sqlite:///{db}") as client:
        client.start("greet", run_id="late")
    log = tmp_path / "worker2.log"
    workers.append(Worker(db, log, "--metrics-port", "0", "--concurrency", "1", "--no-cron"))
    port = workers[1].port()
    fresh = scrape(port)
    assert value(fresh, "treadle_runs_waiting", kind="signal") == 2
    assert value(fresh, "treadle_runs_completed_total", workflow="greet") in (None, 0, 1)
    workers[1].proc.send_signal(signal.SIGTERM)
    assert workers[1].proc.wait(20) == 0, workers[1].text()


def test_a_run_no_worker_takes_shows_as_queue_depth_and_growing_lag(
    tmp_path: Path, workers: list[Worker]
) -> None:
    db = tmp_path / "runs.db"

    async def store_pending() -> None:
        engine = treadle.Engine(treadle.SQLitePersistence(str(db)), max_concurrent_runs=0)
        engine.register(next(w for w in WORKFLOWS if w.name == "greet"))
        async with engine:
            await engine.start("greet", run_id="queued")

    asyncio.run(store_pending())
    # This worker has only "leaf": the run of "greet" stays pending, waiting for an engine.
    os.environ["OBS_ONLY"] = "leaf"
    try:
        workers.append(Worker(db, tmp_path / "w.log", "--metrics-port", "0", "--metrics-refresh",
                              "0.2"))  # fmt: skip
    finally:
        del os.environ["OBS_ONLY"]
    port = workers[0].port()
    samples = scrape(port)
    assert value(samples, "treadle_queue_depth") == 1
    assert value(samples, "treadle_runs", status="pending") == 1
    lag = lambda: (value(scrape(port), "treadle_oldest_runnable_age_seconds") or 0) > 0.5  # noqa: E731
    until(lag, workers[0])


def test_metrics_port_without_prometheus_client_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from treadle.cli import main\n"
        f"sys.argv = {worker_args(tmp_path / 'x.db', '--metrics-port', '0')[2:]!r}\n"
        "main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=WORKERS, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: --metrics-port needs prometheus-client, which comes with the web extra: "
        "pip install 'treadle[web]'"
    ]


def test_the_grafana_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    exported = set(METRICS)
    for name in METRICS:
        if name in ("treadle_step_duration_seconds", "treadle_commit_batch_size",
                    "treadle_commit_seconds"):  # fmt: skip
            exported |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    queried = {m for expr in exprs for m in re.findall(r"\btreadle_[a-z_]+", expr)}
    assert queried <= exported, queried - exported
    assert set(METRICS) - {re.sub(r"_(bucket|sum|count)$", "", q) for q in queried} == set()


def test_a_metrics_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            worker_args(tmp_path / "x.db", "--metrics-port", str(port)),
            cwd=WORKERS,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"]
    assert "Traceback" not in done.stderr
