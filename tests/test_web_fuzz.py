"""Schema-driven fuzzing of the API (schemathesis): whatever the input, never a server error,
and every response matches the OpenAPI document."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import treadle
from treadle.web import Identity, create_app

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


def _noop(ctx: treadle.Context, state: treadle.State) -> None:
    return None


TOKEN = "fuzz-token"
WORKFLOWS = (
    treadle.new("expense").step("prepare", _noop).await_approval("manager", []).build(),
    treadle.new("payment").await_signal("paid").step("ship", _noop).build(),
)


class EngineOwner:
    """The API app, plus a lifespan that opens the engine (schemathesis runs the app on one event
    loop of its own and starts its lifespan once); everything else goes to the app as it is."""

    def __init__(self) -> None:
        self.engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
        for workflow in WORKFLOWS:
            self.engine.register(workflow)
        self.app = create_app(self.engine, tokens={TOKEN: Identity("fuzzer", True)})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.engine.open()
                # a few runs for the fuzzer to find: waiting, and finished
                for run_id, name in (("r1", "expense"), ("r2", "payment"), ("r3", "payment")):
                    await self.engine.start(name, run_id=run_id)
                await self.engine.cancel("r3")
                await treadle.Cron(self.engine).add("s1", "payment", "@hourly")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


KNOWN = {
    "run_id": ["r1", "r2", "r3"],
    "schedule_id": ["s1"],
    "name": ["paid", "manager", "expense"],
    "workflow": ["payment", "expense"],
}


def _maybe(value: Any, known: list[str]) -> Any:
    """One of ``known`` for most generated values (deterministically), else the value."""
    pick = zlib.crc32(repr(value).encode()) % (len(known) + 1)
    return known[pick] if pick < len(known) else value


APP = EngineOwner()
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_never_fails_with_a_server_error(case: Any) -> None:
    # most cases aim at runs, names and a schedule that exist, so that bodies reach the engine
    params = case.path_parameters or {}
    for key, known in KNOWN.items():
        if key in params:
            params[key] = _maybe(params[key], known)
    if isinstance(case.body, dict) and isinstance(case.body.get("workflow"), str):
        case.body["workflow"] = _maybe(case.body["workflow"], KNOWN["workflow"])
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
