"""Every error the HTTP API returns, in one shape, mapped from treadle's errors in one place.

The shape is ``{"error": {"type": "RunNotFound", "message": "..."}}``; ``type`` is stable (the
name of the treadle error, or one of the API's own: ``BadRequest``, ``Unauthorized``,
``Forbidden``, ``NotFound``, ``MethodNotAllowed``, ``ScheduleNotFound``, ``Conflict``,
``PayloadTooLarge``, ``UnsupportedMediaType``, ``InternalError``). A ``ValueError`` from the
engine (bad input it refused, such as text it cannot store) is a 400 with its message, never a
500.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .._errors import (
    DataError,
    DefinitionError,
    DefinitionMismatch,
    InvalidTransition,
    NotAnApprover,
    RunExists,
    RunNotFound,
    TreadleError,
    UnknownApproval,
    UnknownSignal,
    WorkflowNotFound,
)
from .._wire import Error, ErrorDetail
from ..cron import CronError, ScheduleExists, ScheduleNotFound

log = logging.getLogger("treadle.web")


class ApiError(Exception):
    """An error the API reports as it is: a status, a stable type name and a message."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message


#: treadle errors and their HTTP statuses; the first matching class wins (subclasses first).
STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (NotAnApprover, 403),
    (RunNotFound, 404),
    (WorkflowNotFound, 404),
    (InvalidTransition, 409),
    (RunExists, 409),
    (DefinitionMismatch, 409),
    (UnknownSignal, 422),
    (UnknownApproval, 422),
    (DataError, 400),
    (DefinitionError, 400),
    (ScheduleNotFound, 404),
    (ScheduleExists, 409),
    (CronError, 400),
)

_HTTP_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "Unprocessable",
    503: "Unavailable",
}


def error_body(status: int, type_: str, message: str) -> Response:
    """The JSON response of an error."""
    body = Error(error=ErrorDetail(type=type_, message=message)).model_dump_json()
    return Response(body, status_code=status, media_type="application/json")


def as_api_error(exc: Exception) -> ApiError:
    """Translate any exception into the :class:`ApiError` the API reports for it."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):
        return ApiError(
            exc.status_code, _HTTP_TYPES.get(exc.status_code, "HTTPError"), str(exc.detail)
        )
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return ApiError(status, type(exc).__name__, str(exc))
    if isinstance(exc, TreadleError) and isinstance(exc, LookupError):
        return ApiError(404, type(exc).__name__, str(exc))
    if isinstance(exc, ValueError):
        type_ = type(exc).__name__ if isinstance(exc, TreadleError) else "BadRequest"
        return ApiError(400, type_, str(exc) or type_)
    return ApiError(500, "InternalError", "internal error; see the server log")


async def handle_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: every error becomes the one JSON shape."""
    error = as_api_error(exc)
    if error.status >= 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    response = error_body(error.status, error.type, error.message)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="treadle"'
    return response
