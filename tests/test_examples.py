"""The recipes in examples/ run for real: each web app is served on 127.0.0.1 by its own server
process (uvicorn, flask run, Django's runserver), ``treadle worker`` processes execute the
order workflow, and an HTTP client walks an order through. The web processes run with the step
code made unimportable (tests/workers/web_without_steps.py): they start runs by name only.

Side effects are counted in the ledger file that the example's steps append to
(``ORDERS_LEDGER``), so "each step done once" is checked exactly, also across a SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pgserver
import pytest

ROOT = Path(__file__).resolve().parent.parent
WITHOUT_STEPS = Path(__file__).parent / "workers" / "web_without_steps.py"
DEADLINE = 20.0
ORDER = {"customer": "ada@example.com", "items": ["book", "lamp"], "total": 4200}
PAYMENT = {"amount": 4200, "reference": "pay-1"}


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def eventually(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` at the deadline."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline:g}s: {what}")
        time.sleep(0.05)


class Deployment:
    """The processes of one deployment — web servers and workers on one database — started
    with the repository on their PYTHONPATH, and killed at the end of the test."""

    def __init__(self, tmp_path: Path, db: str) -> None:
        self.tmp_path = tmp_path
        self.db = db
        self.ledger = tmp_path / "ledger.tsv"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "TREADLE_DB": db,
            "ORDERS_LEDGER": str(self.ledger),
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start a process whose output goes to ``<name>.log``."""
        log_path = self.tmp_path / f"{name}-{len(self.procs)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                args, cwd=self.tmp_path, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        self.logs[proc.pid] = log_path
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        """What the process printed so far."""
        return self.logs[proc.pid].read_text(errors="replace")

    def alive(self, proc: subprocess.Popen[bytes]) -> None:
        """Fail with the process's output if it has exited."""
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited {proc.returncode}:\n{self.output(proc)}")

    def worker(self) -> subprocess.Popen[bytes]:
        """A ``treadle worker`` for the order workflow, once it has stored the definition."""
        proc = self.spawn(
            "worker",
            [
                sys.executable, "-m", "treadle", "worker", "examples.orders.workflows:order",
                "--db", self.db, "--lease", "2", "--drain", "1",
            ],
        )  # fmt: skip

        def ready() -> bool:
            self.alive(proc)
            return " ready: workflows order" in self.output(proc)

        eventually(ready, "the worker is ready")
        return proc

    def web(self, name: str, server: list[str], port: int) -> httpx.Client:
        """Start a web example under ``server`` (without the step code) and return an HTTP
        client on it once it answers."""
        proc = self.spawn(name, [sys.executable, str(WITHOUT_STEPS), *server])
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

        def answers() -> bool:
            self.alive(proc)
            try:
                return http.get("/orders/none-such").status_code == 404
            except httpx.TransportError:
                return False

        eventually(answers, f"{name} answers on port {port}")
        return http

    def close(self) -> None:
        """Kill every process that is left."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)

    def effects(self, run_id: str) -> list[str]:
        """The side effects of ``run_id``, in order (reserve, charge, ship, release, ...)."""
        if not self.ledger.exists():
            return []
        lines = [line.split("\t") for line in self.ledger.read_text().splitlines()]
        return [fields[1] for fields in lines if fields[0] == run_id]


def fastapi(port: int) -> list[str]:
    """The FastAPI service under uvicorn."""
    return ["-m", "uvicorn", "examples.fastapi_service.app:app", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip


def flask(port: int) -> list[str]:
    """The Flask app under its development server."""
    return ["-m", "flask", "--app", "examples.flask_app.app", "run", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip


def django(port: int) -> list[str]:
    """The Django project under runserver."""
    return [str(ROOT / "examples" / "django_app" / "manage.py"), "runserver", "--noreload",
            f"127.0.0.1:{port}"]  # fmt: skip


SERVERS = {"fastapi": fastapi, "flask": flask, "django": django}


@pytest.fixture
def sqlite_deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A deployment on a SQLite file."""
    deployment = Deployment(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}")
    yield deployment
    deployment.close()


def order_status(http: httpx.Client, run_id: str) -> dict[str, Any]:
    """GET /orders/{id}, which must succeed."""
    response = http.get(f"/orders/{run_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(http: httpx.Client, run_id: str, status: str) -> dict[str, Any]:
    """Poll the order until it has ``status``."""
    return eventually(  # type: ignore[no-any-return]
        lambda: (body := order_status(http, run_id))["status"] == status and body,
        f"order {run_id} is {status}",
    )


def start_order(http: httpx.Client, **headers: str) -> str:
    """POST /orders; the new order's id."""
    response = http.post("/orders", json=ORDER, headers=headers)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def assert_error(response: httpx.Response, status: int, error: str, *words: str) -> None:
    """The response is a JSON error of that status and kind whose message has ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()["error"]
    assert body["type"] == error, body
    for word in words:
        assert word in body["message"], body


def walk_an_order_through(deployment: Deployment, http: httpx.Client) -> None:
    """The order waits for its payment, is paid, completes with each step done once; bad
    requests get clear JSON 4xx errors."""
    run_id = start_order(http)
    waiting = wait_for(http, run_id, "waiting")
    assert waiting["waiting_for"] == ["signal:payment"]
    assert deployment.effects(run_id) == ["reserve"]

    response = http.post(f"/orders/{run_id}/payment", json=PAYMENT)
    assert response.status_code == 202, response.text
    done = wait_for(http, run_id, "completed")
    assert done["data"]["ship"] == {"tracking": f"TRK-{run_id}"}
    assert done["data"]["payment"] == PAYMENT
    assert deployment.effects(run_id) == ["reserve", "charge", "ship"]

    assert_error(http.get("/orders/none-such"), 404, "RunNotFound", "none-such")
    assert_error(http.post("/orders/none-such/payment", json=PAYMENT), 404, "RunNotFound")
    assert_error(http.post(f"/orders/{run_id}/payment", json=PAYMENT), 409, "InvalidTransition",
                 "completed")  # fmt: skip
    malformed = http.post(
        "/orders", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(malformed, 422, "ValidationError", "JSON")
    assert_error(http.post("/orders", json={"customer": "ada"}), 422, "ValidationError", "items")
    assert_error(http.post(f"/orders/{run_id}/payment", json={"amount": -1}), 422,
                 "ValidationError", "amount")  # fmt: skip

    # The Idempotency-Key header names the run: a repeat starts nothing, other data is a conflict.
    first = start_order(http, **{"Idempotency-Key": "checkout-7"})
    assert start_order(http, **{"Idempotency-Key": "checkout-7"}) == first == "checkout-7"
    other = http.post("/orders", json={**ORDER, "total": 1}, headers={"Idempotency-Key": first})
    assert_error(other, 409, "RunExists", "checkout-7")
    bad_key = http.post("/orders", json=ORDER, headers={"Idempotency-Key": "a b"})
    assert_error(bad_key, 422, "InvalidId", "Idempotency-Key")


@pytest.mark.parametrize("framework", ["flask", "django"])
def test_a_sync_client_web_app_starts_and_pays_orders_that_a_worker_runs(
    sqlite_deployment: Deployment, framework: str
) -> None:
    sqlite_deployment.worker()
    port = free_port()
    http = sqlite_deployment.web(framework, SERVERS[framework](port), port)
    walk_an_order_through(sqlite_deployment, http)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_fastapi_service_needs_a_worker_to_have_stored_the_workflow_first(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    if backend == "sqlite":
        db = f"sqlite:///{tmp_path / 'orders.db'}"
    else:
        db = pgserver.fresh_database(request.getfixturevalue("pg_dsn"))
    deployment = Deployment(tmp_path, db)
    try:
        port = free_port()
        http = deployment.web("fastapi", fastapi(port), port)
        early = http.post("/orders", json=ORDER)
        assert_error(early, 503, "WorkflowNotFound", "'order'", "worker")

        deployment.worker()
        walk_an_order_through(deployment, http)
    finally:
        deployment.close()


def test_an_order_survives_a_worker_killed_while_it_waits_for_payment(
    sqlite_deployment: Deployment,
) -> None:
    first = sqlite_deployment.worker()
    port = free_port()
    http = sqlite_deployment.web("fastapi", fastapi(port), port)
    run_id = start_order(http)
    wait_for(http, run_id, "waiting")

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # With no worker alive the payment is still accepted: it waits in the run's inbox.
    response = http.post(
        f"/orders/{run_id}/payment", json=PAYMENT, headers={"Idempotency-Key": "p1"}
    )
    assert response.status_code == 202, response.text
    again = http.post(f"/orders/{run_id}/payment", json=PAYMENT, headers={"Idempotency-Key": "p1"})
    assert again.status_code == 202, again.text
    paid = order_status(http, run_id)
    assert paid["status"] == "pending"  # it can go on, and waits for a worker that has it
    assert paid["waiting_for"][0].startswith("worker:")
    assert sqlite_deployment.effects(run_id) == ["reserve"]

    sqlite_deployment.worker()
    wait_for(http, run_id, "completed")
    assert sqlite_deployment.effects(run_id) == ["reserve", "charge", "ship"]


def test_a_cancelled_order_gives_its_stock_back(sqlite_deployment: Deployment) -> None:
    sqlite_deployment.worker()
    port = free_port()
    http = sqlite_deployment.web("flask", flask(port), port)
    run_id = start_order(http)
    wait_for(http, run_id, "waiting")

    response = http.post(f"/orders/{run_id}/cancel")
    assert response.status_code == 202, response.text
    wait_for(http, run_id, "cancelled")
    assert sqlite_deployment.effects(run_id) == ["reserve", "release"]
    assert_error(http.post(f"/orders/{run_id}/cancel"), 409, "InvalidTransition", "cancelled")


def test_the_script_runs_an_order_in_process_and_resumes_it_when_run_again(
    tmp_path: Path,
) -> None:
    deployment = Deployment(tmp_path, "")
    command = [sys.executable, "-m", "examples.script", str(tmp_path / "script.db")]
    for _ in range(2):
        done = subprocess.run(
            command, cwd=tmp_path, env=deployment.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "order script-order-1: completed, tracking TRK-script-order-1\n"
    assert deployment.effects("script-order-1") == ["reserve", "charge", "ship"]
