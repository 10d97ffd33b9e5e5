"""The OpenAPI 3 document of the API, written by hand so that it says exactly what is served."""

from __future__ import annotations

import copy
from typing import Any

from ._json import ID_PATTERN

_STATUSES = ["pending", "running", "waiting", "paused", "completed", "failed", "cancelled"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_AUTH = {
    "401": _error("No valid token (only when tokens are configured)"),
}
_WRITE = {
    **_AUTH,
    "403": _error("Read-only token (or, for approvals, not an approver)"),
}
_BAD = {"400": _error("Malformed JSON or invalid fields")}
_RUN_404 = {"404": _error("No run has this id")}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_RUN_ID = _path_param("run_id", "The run's id")
_SCHEDULE_ID = _path_param("schedule_id", "The schedule's id")


def _body(schema_name: str, required: bool) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _run_action(summary: str, op_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": op_id,
        "tags": ["runs"],
        "parameters": [_RUN_ID],
        "responses": {
            "200": _json(_ref("Run"), "The run after the call"),
            **_WRITE,
            **_RUN_404,
            "409": _error("The run's status does not allow this (e.g. it has finished)"),
        },
    }
    if extra:
        operation.update(extra)
    return operation


def _decision(kind: str, body: str) -> dict[str, Any]:
    op = _run_action(
        f"{kind.capitalize()} an approval, as the identity of the token",
        f"{kind}Run",
        {
            "parameters": [_RUN_ID, _path_param("name", "The approval's name")],
            "requestBody": _body(body, False),
        },
    )
    op["responses"].update(
        {
            **_BAD,
            "403": _error("Read-only token, or the token's identity is not an approver"),
            "422": _error("The workflow has no approval of this name"),
        }
    )
    return op


def _signal_operation() -> dict[str, Any]:
    op = _run_action(
        "Send a signal; kept until the run reaches await_signal(name)",
        "signalRun",
        {
            "parameters": [_RUN_ID, _path_param("name", "The signal's name")],
            "requestBody": _body("Signal", False),
        },
    )
    op["responses"].update({**_BAD, "422": _error("The workflow awaits no signal of this name")})
    return op


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Identity": {
        "type": "object",
        "required": ["name", "can_write", "auth_required"],
        "properties": {
            "name": {"type": ["string", "null"]},
            "can_write": {"type": "boolean"},
            "auth_required": {"type": "boolean"},
        },
    },
    "Run": {
        "type": "object",
        "required": [
            "id",
            "workflow",
            "status",
            "data",
            "created_at",
            "updated_at",
            "error",
            "waiting_for",
            "parent_id",
        ],
        "properties": {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "status": {"type": "string", "enum": _STATUSES},
            "data": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "error": {"type": ["string", "null"]},
            "waiting_for": {
                "type": "array",
                "items": {"type": "string"},
                "description": "e.g. signal:payment, approval:manager, timer:cool, run:<child>",
            },
            "parent_id": {"type": ["string", "null"]},
        },
    },
    "RunList": {
        "type": "object",
        "required": ["runs"],
        "properties": {"runs": {"type": "array", "items": _ref("Run")}},
    },
    "Event": {
        "type": "object",
        "required": ["at", "kind", "step", "detail"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "kind": {"type": "string"},
            "step": {"type": ["string", "null"]},
            "detail": {"type": "object"},
        },
    },
    "History": {
        "type": "object",
        "required": ["events"],
        "properties": {"events": {"type": "array", "items": _ref("Event")}},
    },
    "Node": {
        "type": "object",
        "description": "A step of a definition: name, kind, and children in steps/branches",
        "required": ["name", "kind"],
        "properties": {
            "name": {"type": "string"},
            "kind": {
                "type": "string",
                "enum": [
                    "workflow",
                    "action",
                    "custom",
                    "if",
                    "loop",
                    "parallel",
                    "signal",
                    "approval",
                    "subworkflow",
                    "sleep",
                ],
            },
            "steps": {"type": "array", "items": _ref("Node")},
            "branches": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Workflow": {
        "type": "object",
        "required": ["name", "id", "definition"],
        "properties": {
            "name": {"type": "string"},
            "id": {"type": "string", "description": "fingerprint of the definition"},
            "definition": _ref("Node"),
        },
    },
    "WorkflowList": {
        "type": "object",
        "required": ["workflows"],
        "properties": {"workflows": {"type": "array", "items": _ref("Workflow")}},
    },
    "StartRun": {
        "type": "object",
        "required": ["workflow"],
        "additionalProperties": False,
        "properties": {
            "workflow": {"type": "string", "minLength": 1},
            "data": {"type": ["object", "null"]},
            "run_id": {
                "type": ["string", "null"],
                "pattern": ID_PATTERN,
                "description": "an id of your own: starting again with it starts nothing",
            },
        },
    },
    "Signal": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"data": {"description": "any JSON; stored at data[<signal name>]"}},
    },
    "Approve": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"comment": {"type": ["string", "null"]}},
    },
    "Reject": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"reason": {"type": ["string", "null"]}},
    },
    "Schedule": {
        "type": "object",
        "required": [
            "id",
            "workflow",
            "expression",
            "timezone",
            "input",
            "enabled",
            "next_run",
            "last_run",
            "next_fires",
        ],
        "properties": {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "expression": {"type": "string"},
            "timezone": {"type": "string"},
            "input": {"type": ["object", "null"]},
            "enabled": {"type": "boolean"},
            "next_run": {"type": ["string", "null"], "format": "date-time"},
            "last_run": {"type": ["string", "null"], "format": "date-time"},
            "next_fires": {"type": "array", "items": {"type": "string", "format": "date-time"}},
            "last_run_id": {"type": ["string", "null"]},
            "last_run_status": {"type": ["string", "null"], "enum": [*_STATUSES, None]},
            "catch_up": {"type": "string", "enum": ["one", "none", "all"]},
            "overlap": {"type": "string", "enum": ["allow", "skip", "buffer_one"]},
            "jitter": {"type": ["number", "null"], "description": "seconds"},
            "catch_up_window": {"type": ["number", "null"], "description": "seconds"},
        },
    },
    "ScheduleList": {
        "type": "object",
        "required": ["schedules"],
        "properties": {"schedules": {"type": "array", "items": _ref("Schedule")}},
    },
    "NewSchedule": {
        "type": "object",
        "required": ["id", "workflow", "expression"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN},
            "workflow": {"type": "string", "minLength": 1},
            "expression": {
                "type": "string",
                "description": "five-field cron, @daily and friends, or @every <duration>",
            },
            "input": {"type": ["object", "null"]},
            "timezone": {"type": ["string", "null"], "description": "IANA zone; UTC if absent"},
            "catch_up": {
                "type": ["string", "null"],
                "enum": ["one", "none", "all", None],
                "description": "missed due times: one run for the latest, none, or all",
            },
            "catch_up_window": {
                "type": ["string", "number", "null"],
                "description": "duration such as '6h' (needed for catch_up=all)",
            },
            "overlap": {"type": ["string", "null"], "enum": ["allow", "skip", "buffer_one", None]},
            "jitter": {"type": ["string", "number", "null"], "description": "duration"},
        },
    },
}

_LIST_PARAMS = [
    {"name": "workflow", "in": "query", "schema": {"type": "string"}},
    {"name": "status", "in": "query", "schema": {"type": "string", "enum": _STATUSES}},
    {"name": "parent_id", "in": "query", "schema": {"type": "string"}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
]

_PATHS: dict[str, Any] = {
    "/api/whoami": {
        "get": {
            "summary": "The identity of the caller's token",
            "operationId": "whoami",
            "tags": ["auth"],
            "responses": {"200": _json(_ref("Identity"), "The caller"), **_AUTH},
        }
    },
    "/api/runs": {
        "get": {
            "summary": "Runs, newest first",
            "operationId": "listRuns",
            "tags": ["runs"],
            "parameters": _LIST_PARAMS,
            "responses": {"200": _json(_ref("RunList"), "The runs"), **_BAD, **_AUTH},
        },
        "post": {
            "summary": "Start a run (idempotent with run_id)",
            "operationId": "startRun",
            "tags": ["runs"],
            "requestBody": _body("StartRun", True),
            "responses": {
                "201": _json(_ref("Run"), "The run"),
                **_BAD,
                **_WRITE,
                "404": _error("No workflow of this name is registered"),
            },
        },
    },
    "/api/runs/{run_id}": {
        "get": {
            "summary": "One run",
            "operationId": "getRun",
            "tags": ["runs"],
            "parameters": [_RUN_ID],
            "responses": {"200": _json(_ref("Run"), "The run"), **_AUTH, **_RUN_404},
        }
    },
    "/api/runs/{run_id}/history": {
        "get": {
            "summary": "What happened to the run, in order",
            "operationId": "getHistory",
            "tags": ["runs"],
            "parameters": [_RUN_ID],
            "responses": {"200": _json(_ref("History"), "The history"), **_AUTH, **_RUN_404},
        }
    },
    "/api/runs/{run_id}/definition": {
        "get": {
            "summary": "The shape of the workflow definition the run follows",
            "operationId": "getDefinition",
            "tags": ["runs"],
            "parameters": [_RUN_ID],
            "responses": {
                "200": _json(_ref("Node"), "The definition"),
                **_AUTH,
                "404": _error("No run has this id, or its definition is unknown"),
            },
        }
    },
    "/api/runs/{run_id}/signal/{name}": {"post": _signal_operation()},
    "/api/runs/{run_id}/approve/{name}": {"post": _decision("approve", "Approve")},
    "/api/runs/{run_id}/reject/{name}": {"post": _decision("reject", "Reject")},
    "/api/runs/{run_id}/pause": {"post": _run_action("Pause a run", "pauseRun")},
    "/api/runs/{run_id}/resume": {"post": _run_action("Resume a paused run", "resumeRun")},
    "/api/runs/{run_id}/cancel": {"post": _run_action("Cancel a run", "cancelRun")},
    "/api/workflows": {
        "get": {
            "summary": "The registered workflows with their definitions",
            "operationId": "listWorkflows",
            "tags": ["workflows"],
            "responses": {"200": _json(_ref("WorkflowList"), "The workflows"), **_AUTH},
        }
    },
    "/api/workflows/{name}": {
        "get": {
            "summary": "One registered workflow",
            "operationId": "getWorkflow",
            "tags": ["workflows"],
            "parameters": [_path_param("name", "The workflow's name")],
            "responses": {
                "200": _json(_ref("Workflow"), "The workflow"),
                **_AUTH,
                "404": _error("No workflow of this name is registered"),
            },
        }
    },
    "/api/schedules": {
        "get": {
            "summary": "Every schedule with its next fire times",
            "operationId": "listSchedules",
            "tags": ["schedules"],
            "responses": {
                "200": _json(_ref("ScheduleList"), "The schedules"),
                **_AUTH,
            },
        },
        "post": {
            "summary": "Add a schedule",
            "operationId": "addSchedule",
            "tags": ["schedules"],
            "requestBody": _body("NewSchedule", True),
            "responses": {
                "201": _json(_ref("Schedule"), "The schedule"),
                **_BAD,
                **_WRITE,
                "404": _error("No workflow of this name is registered"),
                "409": _error("A schedule with this id exists"),
            },
        },
    },
    "/api/schedules/{schedule_id}": {
        "get": {
            "summary": "One schedule",
            "operationId": "getSchedule",
            "tags": ["schedules"],
            "parameters": [_SCHEDULE_ID],
            "responses": {
                "200": _json(_ref("Schedule"), "The schedule"),
                **_AUTH,
                "404": _error("No schedule has this id"),
            },
        },
        "delete": {
            "summary": "Delete a schedule",
            "operationId": "removeSchedule",
            "tags": ["schedules"],
            "parameters": [_SCHEDULE_ID],
            "responses": {
                "204": {"description": "Deleted"},
                **_WRITE,
                "404": _error("No schedule has this id"),
            },
        },
    },
}

for _action in ("enable", "disable"):
    _PATHS[f"/api/schedules/{{schedule_id}}/{_action}"] = {
        "post": {
            "summary": f"{_action.capitalize()} a schedule",
            "operationId": f"{_action}Schedule",
            "tags": ["schedules"],
            "parameters": [_SCHEDULE_ID],
            "responses": {
                "200": _json(_ref("Schedule"), "The schedule"),
                **_WRITE,
                "404": _error("No schedule has this id"),
            },
        }
    }

_DOCUMENT: dict[str, Any] = {
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
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}, {}],
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document."""
    return copy.deepcopy(_DOCUMENT)
