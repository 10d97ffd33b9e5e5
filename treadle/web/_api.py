"""The JSON API under ``/api``: one thin handler per engine call and per schedule operation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _wire as wire
from .._engine import Engine
from .._search import RunFilter
from ._auth import Authenticator, Identity
from ._errors import ApiError
from ._json import json_response, query_limit, read_body
from ._openapi import openapi_document
from ._schedules import Schedules
from ._search import query_filter

Handler = Callable[[Request], Awaitable[Response]]


class Api:
    """The API's handlers over one engine, one authenticator and the schedules."""

    def __init__(self, engine: Engine, auth: Authenticator, schedules: Schedules) -> None:
        self.engine = engine
        self.auth = auth
        self.schedules = schedules

    # Helpers ---------------------------------------------------------------------------------

    def reader(self, request: Request) -> Identity:
        """The caller, allowed to read."""
        return self.auth.require(request, write=False)

    def writer(self, request: Request) -> Identity:
        """The caller, allowed to change state."""
        return self.auth.require(request, write=True)

    async def run_json(self, run_id: str, status: int = 200) -> Response:
        """The run's current state as the response."""
        return json_response(wire.Run.of(await self.engine.status(run_id)), status)

    # Who am I --------------------------------------------------------------------------------

    async def whoami(self, request: Request) -> Response:
        """GET /api/whoami."""
        identity = self.reader(request)
        shape = wire.Identity(
            name=identity.name, can_write=identity.can_write, auth_required=not self.auth.open
        )
        return json_response(shape)

    # Runs ------------------------------------------------------------------------------------

    async def list_runs(self, request: Request) -> Response:
        """GET /api/runs?workflow&status&label=k:v&...&cursor&limit: one page, newest first."""
        self.reader(request)
        flt = query_filter(request.query_params)
        cursor = request.query_params.get("cursor") or None
        page = await self.engine.find_runs(flt, cursor=cursor, limit=query_limit(request))
        runs = [wire.Run.of(s) for s in page.runs]
        return json_response(wire.RunList(runs=runs, next_cursor=page.next_cursor))

    async def bulk(self, request: Request) -> Response:
        """POST /api/runs/bulk/{action} {filter, run_ids, dry_run, ...}: as the token's
        identity."""
        identity = self.writer(request)
        body = await read_body(request, wire.BulkAction, required=False)
        result = await self.engine.bulk(
            request.path_params["action"],
            RunFilter(**body.filter.fields()),
            dry_run=body.dry_run,
            by=identity.name,
            reason=body.reason,
            to=body.to,
            rename=body.rename,
            run_ids=body.run_ids,
        )
        return json_response(wire.BulkOutcome.of(result))

    async def start_run(self, request: Request) -> Response:
        """POST /api/runs {workflow, data, run_id}."""
        self.writer(request)
        body = await read_body(request, wire.StartRun, required=True)
        new_id = await self.engine.start(
            body.workflow,
            body.data,
            run_id=body.run_id,
            deadline=body.deadline,
            labels=body.labels,
            priority=body.priority,
            debounce_key=body.debounce_key,
            debounce=body.debounce,
            debounce_max=body.debounce_max,
        )
        response = await self.run_json(new_id, 201)
        response.headers["Location"] = f"/api/runs/{new_id}"
        return response

    async def get_run(self, request: Request) -> Response:
        """GET /api/runs/{run_id}."""
        self.reader(request)
        return await self.run_json(request.path_params["run_id"])

    async def history(self, request: Request) -> Response:
        """GET /api/runs/{run_id}/history."""
        self.reader(request)
        events = await self.engine.history(request.path_params["run_id"])
        return json_response(wire.History(events=[wire.Event.of(e) for e in events]))

    async def definition(self, request: Request) -> Response:
        """GET /api/runs/{run_id}/definition."""
        self.reader(request)
        return JSONResponse(await self.engine.definition(request.path_params["run_id"]))

    async def signal(self, request: Request) -> Response:
        """POST /api/runs/{run_id}/signal/{name} {data}."""
        self.writer(request)
        body = await read_body(request, wire.SendSignal, required=False)
        run_id = request.path_params["run_id"]
        await self.engine.signal(
            run_id, request.path_params["name"], body.data, idempotency_key=_key(request)
        )
        return await self.run_json(run_id)

    async def approve(self, request: Request) -> Response:
        """POST /api/runs/{run_id}/approve/{name} {comment}: decided as the token's identity."""
        identity = self.writer(request)
        body = await read_body(request, wire.Approve, required=False)
        run_id = request.path_params["run_id"]
        name = request.path_params["name"]
        await self.engine.approve(
            run_id, name, by=identity.name, comment=body.comment, idempotency_key=_key(request)
        )
        return await self.run_json(run_id)

    async def reject(self, request: Request) -> Response:
        """POST /api/runs/{run_id}/reject/{name} {reason}: decided as the token's identity."""
        identity = self.writer(request)
        body = await read_body(request, wire.Reject, required=False)
        run_id = request.path_params["run_id"]
        name = request.path_params["name"]
        await self.engine.reject(
            run_id, name, by=identity.name, reason=body.reason, idempotency_key=_key(request)
        )
        return await self.run_json(run_id)

    # Runs that outlive their code -------------------------------------------------------------

    async def retry(self, request: Request) -> Response:
        """POST /api/runs/{run_id}/retry: as the token's identity."""
        identity = self.writer(request)
        run_id = request.path_params["run_id"]
        await self.engine.retry(run_id, by=identity.name)
        return await self.run_json(run_id)

    async def skip(self, request: Request) -> Response:
        """POST /api/runs/{run_id}/skip {data}: as the token's identity."""
        identity = self.writer(request)
        body = await read_body(request, wire.SkipStep, required=False)
        run_id = request.path_params["run_id"]
        await self.engine.skip(run_id, body.data, by=identity.name)
        return await self.run_json(run_id)

    async def abort(self, request: Request) -> Response:
        """POST /api/runs/{run_id}/abort {reason}: as the token's identity."""
        identity = self.writer(request)
        body = await read_body(request, wire.AbortRun, required=True)
        run_id = request.path_params["run_id"]
        await self.engine.abort(run_id, body.reason, by=identity.name)
        return await self.run_json(run_id)

    async def migrate(self, request: Request) -> Response:
        """POST /api/runs/{run_id}/migrate {to, rename, dry_run}: the plan (409 when it
        cannot move and it is not a dry run)."""
        identity = self.writer(request)
        body = await read_body(request, wire.MigrateRun, required=False)
        run_id = request.path_params["run_id"]
        if body.dry_run:
            plan = await self.engine.plan_migration(run_id, to=body.to, rename=body.rename)
        else:
            plan = await self.engine.migrate(
                run_id, to=body.to, rename=body.rename, by=identity.name
            )
        return json_response(wire.MigrationPlan.of(plan))

    async def fork(self, request: Request) -> Response:
        """POST /api/runs/{run_id}/fork {from_step, data, version}: the new run's id."""
        self.writer(request)
        body = await read_body(request, wire.ForkRun, required=False)
        new_id = await self.engine.fork(
            request.path_params["run_id"],
            from_step=body.from_step,
            data=body.data,
            version=body.version,
        )
        response = json_response(wire.Forked(run_id=new_id), 201)
        response.headers["Location"] = f"/api/runs/{new_id}"
        return response

    async def delete_run(self, request: Request) -> Response:
        """DELETE /api/runs/{run_id}: a finished run, whole, with its descendants (409 for an
        unfinished one)."""
        self.writer(request)
        deleted = await self.engine.delete(request.path_params["run_id"])
        return json_response(wire.DeletedRuns(deleted=deleted))

    def control(self, action: str) -> Handler:
        """POST /api/runs/{run_id}/pause|resume|cancel."""

        async def handler(request: Request) -> Response:
            self.writer(request)
            run_id = request.path_params["run_id"]
            call: Callable[[str], Awaitable[None]] = getattr(self.engine, action)
            await call(run_id)
            return await self.run_json(run_id)

        handler.__name__ = f"{action}_run"
        return handler

    # Workflows -------------------------------------------------------------------------------

    async def workflows(self, request: Request) -> Response:
        """GET /api/workflows."""
        self.reader(request)
        items = sorted(self.engine.workflows.values(), key=lambda w: w.name)
        return json_response(wire.WorkflowList(workflows=[wire.Workflow.of(w) for w in items]))

    async def workflow(self, request: Request) -> Response:
        """GET /api/workflows/{name}."""
        self.reader(request)
        name = request.path_params["name"]
        wf = self.engine.workflows.get(name)
        if wf is None:
            raise ApiError(404, "WorkflowNotFound", f"workflow {name!r} is not registered")
        return json_response(wire.Workflow.of(wf))

    async def limits(self, request: Request) -> Response:
        """GET /api/limits."""
        self.reader(request)
        return json_response(wire.LimitList.of(await self.engine.limits()))

    # Schedules -------------------------------------------------------------------------------

    async def list_schedules(self, request: Request) -> Response:
        """GET /api/schedules."""
        self.reader(request)
        return json_response(wire.ScheduleList(schedules=await self.schedules.all()))

    async def add_schedule(self, request: Request) -> Response:
        """POST /api/schedules {id, workflow, expression, input, timezone}."""
        self.writer(request)
        body = await read_body(request, wire.NewSchedule, required=True)
        response = json_response(await self.schedules.add(body), 201)
        response.headers["Location"] = f"/api/schedules/{body.id}"
        return response

    async def get_schedule(self, request: Request) -> Response:
        """GET /api/schedules/{schedule_id}."""
        self.reader(request)
        return json_response(await self.schedules.one(request.path_params["schedule_id"]))

    async def remove_schedule(self, request: Request) -> Response:
        """DELETE /api/schedules/{schedule_id}."""
        self.writer(request)
        await self.schedules.remove(request.path_params["schedule_id"])
        return Response(status_code=204)

    def toggle_schedule(self, enabled: bool) -> Handler:
        """POST /api/schedules/{schedule_id}/enable|disable."""

        async def handler(request: Request) -> Response:
            self.writer(request)
            schedule_id = request.path_params["schedule_id"]
            return json_response(await self.schedules.set_enabled(schedule_id, enabled))

        handler.__name__ = "enable_schedule" if enabled else "disable_schedule"
        return handler

    async def trigger_schedule(self, request: Request) -> Response:
        """POST /api/schedules/{schedule_id}/trigger {key?}."""
        self.writer(request)
        body = await read_body(request, wire.TriggerSchedule, required=False)
        triggered = await self.schedules.trigger(request.path_params["schedule_id"], body)
        return json_response(triggered, 201)

    async def backfill_schedule(self, request: Request) -> Response:
        """POST /api/schedules/{schedule_id}/backfill {from, to}."""
        self.writer(request)
        body = await read_body(request, wire.BackfillSchedule, required=True)
        return json_response(
            await self.schedules.backfill(request.path_params["schedule_id"], body)
        )

    async def rate_limits(self, request: Request) -> Response:
        """GET /api/rate-limits."""
        self.reader(request)
        return json_response(wire.RateLimitList.of(await self.engine.rate_limits()))

    # The document ----------------------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        """GET /api/openapi.json (public: it describes the API, not its data)."""
        return JSONResponse(openapi_document())

    def routes(self) -> list[Route]:
        """Every route of the API."""
        run = "/api/runs/{run_id}"
        sched = "/api/schedules/{schedule_id}"
        return [
            Route("/api/openapi.json", self.openapi, methods=["GET"]),
            Route("/api/whoami", self.whoami, methods=["GET"]),
            Route("/api/runs", self.list_runs, methods=["GET"]),
            Route("/api/runs", self.start_run, methods=["POST"]),
            Route("/api/runs/bulk/{action}", self.bulk, methods=["POST"]),
            Route(run, self.get_run, methods=["GET"]),
            Route(run, self.delete_run, methods=["DELETE"]),
            Route(f"{run}/history", self.history, methods=["GET"]),
            Route(f"{run}/definition", self.definition, methods=["GET"]),
            Route(f"{run}/signal/{{name}}", self.signal, methods=["POST"]),
            Route(f"{run}/approve/{{name}}", self.approve, methods=["POST"]),
            Route(f"{run}/reject/{{name}}", self.reject, methods=["POST"]),
            Route(f"{run}/pause", self.control("pause"), methods=["POST"]),
            Route(f"{run}/resume", self.control("resume"), methods=["POST"]),
            Route(f"{run}/cancel", self.control("cancel"), methods=["POST"]),
            Route(f"{run}/retry", self.retry, methods=["POST"]),
            Route(f"{run}/skip", self.skip, methods=["POST"]),
            Route(f"{run}/abort", self.abort, methods=["POST"]),
            Route(f"{run}/migrate", self.migrate, methods=["POST"]),
            Route(f"{run}/fork", self.fork, methods=["POST"]),
            Route("/api/workflows", self.workflows, methods=["GET"]),
            Route("/api/workflows/{name}", self.workflow, methods=["GET"]),
            Route("/api/limits", self.limits, methods=["GET"]),
            Route("/api/schedules", self.list_schedules, methods=["GET"]),
            Route("/api/schedules", self.add_schedule, methods=["POST"]),
            Route(sched, self.get_schedule, methods=["GET"]),
            Route(sched, self.remove_schedule, methods=["DELETE"]),
            Route(f"{sched}/enable", self.toggle_schedule(True), methods=["POST"]),
            Route(f"{sched}/disable", self.toggle_schedule(False), methods=["POST"]),
            Route(f"{sched}/trigger", self.trigger_schedule, methods=["POST"]),
            Route(f"{sched}/backfill", self.backfill_schedule, methods=["POST"]),
            Route("/api/rate-limits", self.rate_limits, methods=["GET"]),
        ]


def _key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header of a signal or decision (checked as an id by the engine)."""
    return request.headers.get("idempotency-key")
