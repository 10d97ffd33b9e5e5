"""Reading requests and writing the API's JSON: bodies, parameters and the shapes of runs,
events, workflows and schedules."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request

from .._state import Event, State, Status
from ._errors import ApiError

MAX_BODY = 1_000_000
MAX_DEPTH = 100
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$"
_ID = re.compile(ID_PATTERN)


def iso(value: datetime | None) -> str | None:
    """An aware datetime as ISO 8601, or None."""
    return None if value is None else value.isoformat()


def _check_value(body: Any) -> None:
    """400 for strings that are not valid Unicode (lone surrogates) or nesting deeper than
    :data:`MAX_DEPTH` (which would strain every later reader of the run's data)."""
    stack: list[tuple[Any, int]] = [(body, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, "BadRequest", f"body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(400, "BadRequest", "body contains invalid Unicode") from None
        elif isinstance(value, dict):
            stack.extend((key, depth + 1) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


async def read_body(request: Request, *, required: bool) -> dict[str, Any]:
    """The request's JSON object body; ``{}`` for an empty optional body; 400 otherwise."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "PayloadTooLarge", f"body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        if required:
            raise ApiError(400, "BadRequest", "a JSON object body is required")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "BadRequest", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "body must be a JSON object")
    _check_value(body)
    return body


def optional_str(body: Mapping[str, Any], key: str, *, limit: int = 10_000) -> str | None:
    """``body[key]`` as a string or None; 400 for anything else."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "BadRequest", f"'{key}' must be a string or null")
    if len(value) > limit:
        raise ApiError(400, "BadRequest", f"'{key}' is longer than {limit} characters")
    return value


def required_str(body: Mapping[str, Any], key: str) -> str:
    """``body[key]``, a non-empty string; 400 otherwise."""
    value = optional_str(body, key, limit=1000)
    if not value:
        raise ApiError(400, "BadRequest", f"'{key}' is required: a non-empty string")
    return value


def identifier(value: str, what: str) -> str:
    """An id given by a caller: letters, digits and ``._:@-``, at most 200 characters."""
    if not _ID.match(value):
        raise ApiError(
            400,
            "BadRequest",
            f"{what} {value!r} is invalid: use letters, digits and . _ : @ - (at most 200)",
        )
    return value


def optional_object(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """``body[key]``: a JSON object or null; 400 otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, "BadRequest", f"'{key}' must be a JSON object or null")
    return value


def only_keys(body: Mapping[str, Any], allowed: set[str]) -> None:
    """400 when the body has keys outside ``allowed`` (catches typos such as ``"comemnt"``)."""
    extra = sorted(set(body) - allowed)
    if extra:
        raise ApiError(400, "BadRequest", f"unknown field(s) {extra}; allowed: {sorted(allowed)}")


def query_limit(request: Request, default: int = 100, maximum: int = 1000) -> int:
    """The ``limit`` query parameter, 1..maximum."""
    text = request.query_params.get("limit")
    if text is None or text == "":
        return default
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise ApiError(400, "BadRequest", f"'limit' must be an integer from 1 to {maximum}")
    return int(text)


def query_status(request: Request) -> Status | None:
    """The ``status`` query parameter, a run status or absent."""
    text = request.query_params.get("status")
    if not text:
        return None
    try:
        return Status(text)
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise ApiError(400, "BadRequest", f"'status' must be one of {allowed}") from None


def state_json(state: State) -> dict[str, Any]:
    """A run as the API shows it."""
    return {
        "id": state.id,
        "workflow": state.workflow,
        "status": state.status.value,
        "data": state.data,
        "created_at": iso(state.created_at),
        "updated_at": iso(state.updated_at),
        "error": state.error,
        "waiting_for": list(state.waiting_for),
        "parent_id": state.parent_id,
    }


def event_json(event: Event) -> dict[str, Any]:
    """A history event as the API shows it."""
    return {"at": iso(event.at), "kind": event.kind, "step": event.step, "detail": event.detail}


def schedule_json(schedule: Any, next_fires: list[datetime]) -> dict[str, Any]:
    """A schedule (a :class:`treadle.Schedule` or anything with its fields)."""
    raw_input = getattr(schedule, "input", None)
    if isinstance(raw_input, str):
        with contextlib.suppress(ValueError):
            raw_input = json.loads(raw_input)
    return {
        "id": schedule.id,
        "workflow": schedule.workflow,
        "expression": schedule.expression,
        "timezone": getattr(schedule, "timezone", "UTC"),
        "input": raw_input,
        "enabled": bool(schedule.enabled),
        "next_run": iso(getattr(schedule, "next_run", None)),
        "last_run": iso(getattr(schedule, "last_run", None)),
        "next_fires": [iso(t) for t in next_fires],
        "last_run_id": getattr(schedule, "last_run_id", None),
        "last_run_status": _text(getattr(schedule, "last_run_status", None)),
        "catch_up": getattr(schedule, "catch_up", "one"),
        "overlap": getattr(schedule, "overlap", "allow"),
        "jitter": _seconds(getattr(schedule, "jitter", None)),
        "catch_up_window": _seconds(getattr(schedule, "catch_up_window", None)),
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    seconds = getattr(value, "total_seconds", None)
    return float(seconds()) if callable(seconds) else float(value)
