"""The OpenAPI 3.1 document of the API: a table of the paths with their summaries and error
codes, written here; every schema generated from the models of :mod:`treadle._wire`."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .. import _wire as wire
from .._ids import ID_PATTERN
from ._search import OPENAPI_PARAMETERS

_ERRORS = {
    400: "Malformed JSON or invalid fields",
    401: "No valid token (only when tokens are configured)",
    403: "Read-only token (or, for approvals, not an approver)",
    404: "Not found",
    409: "Conflict with the current state (a run not held; a migration refused; deleting an "
    "unfinished run)",
    413: "Body larger than 1 MB",
    415: "Body is not application/json",
    422: "The workflow has no wait of this name",
}
_WRITE = (400, 401, 403, 413, 415)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"{wire.REF}{name}"}


def _param(name: str, where: str = "path", **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": "string", **schema},
    }


_LIST_RUNS = OPENAPI_PARAMETERS

_IDEMPOTENCY_KEY = {
    **_param("Idempotency-Key", "header", pattern=ID_PATTERN),
    "description": "The sender's key (an id): a repeated delivery with the same key to the same "
    "run is acknowledged and stored once",
}
_KEYED = ("signalRun", "approveRun", "rejectRun")

# method, path, operationId, tag, summary, request body model, (status, response model), errors
_Row = tuple[str, str, str, str, str, str | None, tuple[int, str | None], tuple[int, ...]]
_RUN = "/api/runs/{run_id}"
_SCHEDULE = "/api/schedules/{schedule_id}"
_ROUTES: tuple[_Row, ...] = (
    ("get", "/api/whoami", "whoami", "auth", "The identity of the caller's token",
     None, (200, "Identity"), (401,)),
    ("get", "/api/runs", "listRuns", "runs", "Runs, newest first",
     None, (200, "RunList"), (400, 401)),
    ("post", "/api/runs", "startRun", "runs", "Start a run (idempotent with run_id)",
     "StartRun", (201, "Run"), (*_WRITE, 404)),
    ("post", "/api/runs/bulk/{action}", "bulkAction", "runs",
     "cancel, resume, retry, abort or migrate every run a filter matches, as the token's identity",
     "BulkAction", (200, "BulkOutcome"), _WRITE),
    ("get", _RUN, "getRun", "runs", "One run", None, (200, "Run"), (401, 404)),
    ("get", f"{_RUN}/history", "getHistory", "runs", "What happened to the run, in order",
     None, (200, "History"), (401, 404)),
    ("get", f"{_RUN}/definition", "getDefinition", "runs",
     "The shape of the workflow definition the run follows", None, (200, "Node"), (401, 404)),
    ("post", f"{_RUN}/signal/{{name}}", "signalRun", "runs",
     "Send a signal; kept until the run reaches await_signal(name)",
     "SendSignal", (200, "Run"), (*_WRITE, 404, 409, 422)),
    ("post", f"{_RUN}/approve/{{name}}", "approveRun", "runs",
     "Approve an approval, as the identity of the token",
     "Approve", (200, "Run"), (*_WRITE, 404, 409, 422)),
    ("post", f"{_RUN}/reject/{{name}}", "rejectRun", "runs",
     "Reject an approval, as the identity of the token",
     "Reject", (200, "Run"), (*_WRITE, 404, 409, 422)),
    ("post", f"{_RUN}/pause", "pauseRun", "runs", "Pause a run",
     None, (200, "Run"), (401, 403, 404, 409)),
    ("post", f"{_RUN}/resume", "resumeRun", "runs", "Resume a paused run",
     None, (200, "Run"), (401, 403, 404, 409)),
    ("post", f"{_RUN}/cancel", "cancelRun", "runs", "Cancel a run",
     None, (200, "Run"), (401, 403, 404, 409)),
    ("delete", _RUN, "deleteRun", "runs",
     "Delete a finished run now, whole, with its descendants (an erasure request)",
     None, (200, "DeletedRuns"), (401, 403, 404, 409)),
    ("post", f"{_RUN}/retry", "retryRun", "runs",
     "Run the failed step of a held run again, as the identity of the token",
     None, (200, "Run"), (401, 403, 404, 409)),
    ("post", f"{_RUN}/skip", "skipStep", "runs",
     "Mark the failed step of a held run done (data merged) and go on, as the token's identity",
     "SkipStep", (200, "Run"), (*_WRITE, 404, 409)),
    ("post", f"{_RUN}/abort", "abortRun", "runs",
     "Compensate a held run and end it failed, as the identity of the token",
     "AbortRun", (200, "Run"), (*_WRITE, 404, 409)),
    ("post", f"{_RUN}/migrate", "migrateRun", "runs",
     "Move a run onto another definition of its workflow (or only plan it: dry_run)",
     "MigrateRun", (200, "MigrationPlan"), (*_WRITE, 404, 409)),
    ("post", f"{_RUN}/fork", "forkRun", "runs",
     "Start a new run that keeps the steps before from_step of this one",
     "ForkRun", (201, "Forked"), (*_WRITE, 404)),
    ("get", "/api/workflows", "listWorkflows", "workflows",
     "The registered workflows with their definitions", None, (200, "WorkflowList"), (401,)),
    ("get", "/api/workflows/{name}", "getWorkflow", "workflows", "One registered workflow",
     None, (200, "Workflow"), (401, 404)),
    ("get", "/api/limits", "listLimits", "limits",
     "Every concurrency key in use: its limit, holders and queued runs",
     None, (200, "LimitList"), (401,)),
    ("get", "/api/schedules", "listSchedules", "schedules",
     "Every schedule with its next fire times", None, (200, "ScheduleList"), (401,)),
    ("post", "/api/schedules", "addSchedule", "schedules", "Add a schedule",
     "NewSchedule", (201, "Schedule"), (*_WRITE, 404, 409)),
    ("get", _SCHEDULE, "getSchedule", "schedules", "One schedule",
     None, (200, "Schedule"), (401, 404)),
    ("delete", _SCHEDULE, "removeSchedule", "schedules", "Delete a schedule",
     None, (204, None), (401, 403, 404)),
    ("post", f"{_SCHEDULE}/enable", "enableSchedule", "schedules", "Enable a schedule",
     None, (200, "Schedule"), (401, 403, 404)),
    ("post", f"{_SCHEDULE}/disable", "disableSchedule", "schedules", "Disable a schedule",
     None, (200, "Schedule"), (401, 403, 404)),
    ("post", f"{_SCHEDULE}/trigger", "triggerSchedule", "schedules",
     "Start a run of the schedule now (once per key)",
     "TriggerSchedule", (201, "Triggered"), (*_WRITE, 404)),
    ("post", f"{_SCHEDULE}/backfill", "backfillSchedule", "schedules",
     "Start one run per due time in [from, to) that has none",
     "BackfillSchedule", (200, "Backfilled"), (*_WRITE, 404)),
    ("get", "/api/rate-limits", "listRateLimits", "rate-limits",
     "Every rate limiter: its settings, calls available now, the next free time, runs waiting",
     None, (200, "RateLimitList"), (401,)),
)  # fmt: skip


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _operation(row: _Row) -> dict[str, Any]:
    _, path, op_id, tag, summary, body, (status, schema), errors = row
    params = [_param(part[1:-1]) for part in path.split("/") if part.startswith("{")]
    responses: dict[str, Any] = {
        str(status): _json(schema, "Done") if schema else {"description": "Done"}
    }
    if params:  # an id in the path that breaks the id rule is refused as an invalid field
        errors = tuple(sorted({400, *errors}))
    responses.update({str(code): _json("Error", _ERRORS[code]) for code in errors})
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": op_id,
        "tags": [tag],
        "parameters": _LIST_RUNS
        if op_id == "listRuns"
        else [*params, _IDEMPOTENCY_KEY]
        if op_id in _KEYED
        else params,
        "responses": responses,
    }
    if body is not None:
        required = body in ("StartRun", "AbortRun", "NewSchedule", "BackfillSchedule")
        operation["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


@cache
def _document() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, "serialization") for m in wire.RESPONSES
    ]
    models += [(m, "validation") for m in wire.REQUESTS]
    _, schemas = models_json_schema(models, ref_template=wire.REF + "{model}")
    paths: dict[str, Any] = {}
    for row in _ROUTES:
        paths.setdefault(row[1], {})[row[0]] = _operation(row)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "treadle",
            "version": "1",
            "description": (
                "Runs, approvals, signals and schedules of a treadle engine. Errors are "
                '{"error": {"type", "message"}}. With tokens configured, every call needs '
                "'Authorization: Bearer <token>', and calls that change state need a read-write "
                "token; approvals are decided as the token's identity."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document."""
    return copy.deepcopy(_document())
