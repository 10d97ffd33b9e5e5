"""Typed data: the JSON forms of common Python values, and input models.

Run data is stored as JSON, never pickled. Values that JSON lacks but every application has get
one documented JSON form (:func:`json_form`, the one converter, used wherever run data is
serialised); reading them back as Python values is what an input model is for
(``treadle.new(name, input=Model)``, ``ctx.input``): pydantic turns the ISO text of a
``datetime`` field back into a ``datetime``.

pydantic is imported only when a workflow has an input model (``import treadle`` stays light).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ._errors import DataError, DefinitionError

if TYPE_CHECKING:
    from pydantic import TypeAdapter


def json_form(value: Any) -> Any:
    """The JSON form of a value that JSON has no type for (``json.dumps(default=json_form)``).

    ``datetime``, ``date`` and ``time``: ISO 8601 text (``isoformat()``); ``Decimal`` and
    ``UUID``: their text; an ``Enum``: its value; a dataclass instance: a dict of its fields; a
    pydantic model: its JSON-mode dump (tuples are lists already). Anything else raises
    :class:`TypeError` (which serialisation turns into a :class:`DataError` naming where the
    value is): sets (no order), bytes, NaN, arbitrary objects.
    """
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"Decimal {value} has no JSON form (NaN and infinities are refused)")
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, set | frozenset):
        raise TypeError("a set has no JSON form (it has no order): store a sorted list")
    # Only an imported pydantic can have made a model: no import here just to check.
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes | bytearray):
        raise TypeError("bytes have no JSON form (encode them, e.g. base64, into a str)")
    raise TypeError(f"Object of type {type(value).__name__} has no JSON form")


def bad_path(value: Any, path: str = "") -> str | None:
    """Where in ``value`` the first value without a JSON form is (``items[2].when``), or None.

    Only for error messages: it walks what serialisation refused, so it may be slow."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path}[{key!r}]" if path else repr(key)
            found = bad_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = bad_path(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(the value)"
    if value is None or isinstance(value, str | int | float | bool):
        return None
    try:
        form = json_form(value)
    except TypeError:
        return path or "(the value)"
    return bad_path(form, path)


# Input models ---------------------------------------------------------------------------------


def check_model(owner: str, model: object) -> type[Any] | None:
    """``model`` if it may be an input model (a pydantic model class or a dataclass type), else
    :class:`DefinitionError` naming ``owner``."""
    if model is None:
        return None
    if isinstance(model, type) and dataclasses.is_dataclass(model):
        return model
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(model, type) and issubclass(model, pydantic.BaseModel):
        return model
    raise DefinitionError(
        f"{owner}: input must be a pydantic model class or a dataclass type, not {model!r}"
    )


def model_name(model: type[Any]) -> str:
    """The qualified name of a model (``shop.models.OrderIn``), as stored with a definition."""
    return f"{model.__module__}.{model.__qualname__}"


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}  # one per model: building one is slow


def _adapter(model: type[Any]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        from pydantic import TypeAdapter

        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter


def _problems(exc: Exception) -> str:
    """The fields of a pydantic ValidationError and what is wrong with each, on one line."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    parts = []
    for error in errors(include_url=False):
        where = ".".join(str(p) for p in error.get("loc", ())) or "(the data)"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def validate(model: type[Any], data: Any, where: str) -> Any:
    """``data`` (a dict, or an instance of ``model``) validated as ``model``: an instance.

    Raises :class:`DataError` ("<where>: data does not fit OrderIn: total: Input should be a
    valid number; items.0.sku: Field required"), one line naming every bad field."""
    from pydantic import ValidationError

    if isinstance(data, dict) and type(data) is not dict:
        data = dict(data)  # a step's lazy data: pydantic reads a dict's storage directly
    try:
        return _adapter(model).validate_python(data)
    except ValidationError as exc:
        raise DataError(
            f"{where}: data does not fit {model.__qualname__}: {_problems(exc)}"
        ) from None


def as_json_data(model: type[Any], data: Any, where: str) -> dict[str, Any]:
    """``data`` validated as ``model`` and dumped in JSON mode: the run data to store."""
    instance = validate(model, data, where)
    dumped = _adapter(model).dump_python(instance, mode="json")
    if not isinstance(dumped, dict):
        raise DataError(f"{where}: {model.__qualname__} does not dump to a JSON object")
    return dumped
