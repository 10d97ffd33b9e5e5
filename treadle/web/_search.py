"""Reading a :class:`~treadle.RunFilter` from query parameters (``GET /api/runs``, the runs page),
and the parameters as the OpenAPI document lists them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from .._errors import TreadleError
from .._labels import parse_label
from .._search import RunFilter
from ._errors import ApiError

TIMES = ("created_after", "created_before", "updated_after", "updated_before")
TEXTS = ("workflow", "version", "parent_id")


def _time(params: QueryParams, name: str) -> datetime | None:
    text = params.get(name)
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "BadRequest", f"{name!r} must be an ISO 8601 time") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def query_filter(params: QueryParams) -> RunFilter:
    """The filter the query asks for: ``workflow``, ``status``, ``version``, ``label=k:v``
    (repeatable), the four time bounds, ``error`` and ``parent_id`` (empty values: any)."""
    try:
        fields: dict[str, Any] = {name: params.get(name) or None for name in TEXTS}
        fields["status"] = params.get("status") or None
        fields["labels"] = dict(parse_label(text) for text in params.getlist("label") if text)
        fields["error_contains"] = params.get("error") or None
        fields.update({name: _time(params, name) for name in TIMES})
        return RunFilter(**fields)
    except (TreadleError, ValueError) as exc:
        raise ApiError(400, "BadRequest", str(exc)) from None


def _query(name: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "string", **schema}}


OPENAPI_PARAMETERS: list[dict[str, Any]] = [
    *(_query(name) for name in TEXTS),
    {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/Status"}},
    {
        **_query("label"),
        "description": "key:value (or key=value); repeatable: the run has every one",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string"}},
    },
    *(_query(name, format="date-time") for name in TIMES),
    {**_query("error"), "description": "a part of the run's error (any case)"},
    {**_query("cursor"), "description": "the next_cursor of the previous page"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
]


def dashboard_params(params: QueryParams) -> QueryParams:
    """The dashboard's query as :func:`query_filter` reads it: its one ``label`` box may hold
    several labels, separated by commas or spaces."""
    items = [(k, v) for k, v in params.multi_items() if k != "label"]
    for text in params.getlist("label"):
        items += [("label", part) for part in text.replace(",", " ").split() if part]
    return QueryParams(items)


_FIRST = "first"  # the first page's position in ``back`` (a cursor is never this)


@dataclass(frozen=True)
class Paging:
    """The links of the runs page to the next and the previous page (None: there is none)."""

    next: str | None
    previous: str | None
    newest: str | None


def paging(params: QueryParams, next_cursor: str | None) -> Paging:
    """Links that keep the filters: ``cursor`` is the page's position, ``back`` the positions
    of the pages before it (keyset paging goes forward only, so the way back is carried)."""
    kept = [(k, v) for k, v in params.multi_items() if k not in ("cursor", "back") and v]
    back = [c for c in params.get("back", "").split(".") if c]
    here = params.get("cursor") or ""

    def link(cursor: str, trail: list[str]) -> str:
        extra = [("cursor", cursor)] if cursor else []
        extra += [("back", ".".join(trail))] if trail else []
        return "/runs?" + urlencode(kept + extra)

    return Paging(
        next=link(next_cursor, [*back, here or _FIRST]) if next_cursor else None,
        previous=link(back[-1].replace(_FIRST, ""), back[:-1]) if back else None,
        newest=link("", []) if here else None,
    )
