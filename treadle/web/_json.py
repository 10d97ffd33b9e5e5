"""Reading requests into the models of :mod:`treadle._wire`, and writing models as responses."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from .._state import Status
from .._wire import Request as Body
from .._wire import to_json
from ._errors import ApiError

MAX_BODY = 1_000_000
"""The largest request body read, in bytes: reading stops there (413)."""

B = TypeVar("B", bound=Body)


async def read_bytes(request: Request) -> bytes:
    """The request's body, read only up to :data:`MAX_BODY` bytes (413 beyond); 415 for a body
    that is not ``application/json``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, "PayloadTooLarge", f"body is larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "PayloadTooLarge", f"body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw.strip() and media_type != "application/json":
        raise ApiError(
            415, "UnsupportedMediaType", f"body must be application/json, not {media_type!r}"
        )
    return raw


async def read_body(request: Request, model: type[B], *, required: bool) -> B:
    """The request's JSON body as ``model``; an empty optional body is the model's defaults."""
    raw = await read_bytes(request)
    if not raw.strip():
        if required:
            raise ApiError(400, "BadRequest", "a JSON object body is required")
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(400, "BadRequest", _message(exc, model)) from None


def _message(exc: ValidationError, model: type[BaseModel]) -> str:
    """The validation errors on one line, each naming its field."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            parts.append(f"unknown field {where!r} (allowed: {allowed})")
        elif error["type"] == "json_invalid":
            parts.append(f"body is not valid JSON: {error['ctx']['error']}")
        elif where:
            parts.append(f"{where!r}: {error['msg']}")
        else:
            parts.append(f"body: {error['msg']}")
    return "; ".join(parts)


def json_response(model: BaseModel, status: int = 200) -> Response:
    """``model`` as the JSON response (fields left unset, such as a leaf step's ``steps``,
    stay out)."""
    return Response(to_json(model), status_code=status, media_type="application/json")


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
