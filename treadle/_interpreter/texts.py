"""The run's data held as the JSON text of each top-level value, and its stored form.

Holding each value's text (not one text of the whole data) makes a step's cost depend on what
it touches: its private copy decodes only the keys it reads (:class:`.lazy.LazyData`), only those
are encoded again after it (:func:`seal`), and the merge works per changed key. A list longer
than :data:`CHUNK` elements is held as the texts of chunks of :data:`CHUNK` elements, so that
changing one element (a parallel map's result) encodes one chunk, and a checkpoint writes only
the chunks that changed (:func:`stored_form`, into ``run_values``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, NamedTuple

from .._errors import DataError
from .._state import encode_data
from .._typed import json_form
from ..persistence._values import ASIDE, ValueWrite
from .lazy import UNREAD, LazyData, decode

#: The JSON of one top-level value: its text, or the texts of a long list's chunks (each the
#: elements' texts joined by commas, without brackets).
Text = str | tuple[str, ...]
Texts = dict[str, Text]

#: Elements per chunk of a long list.
CHUNK = 1000
#: A value whose text is longer than this is stored beside the run, written when it changes.
LARGE = 16_384


def _dumps(value: Any, default: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=default)


class _Formed(Exception):
    """A value that JSON lacks: encode again, noting it (see :func:`encode`)."""


def _refuse(value: Any) -> Any:
    raise _Formed


#: The encoder of plain JSON values (the common case: no encoder made per call).
_plain = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_refuse).encode


@lru_cache(maxsize=4096)
def key_json(key: str) -> str:
    """A key as JSON text."""
    return json.dumps(key)


def _key(key: Any, where: str) -> str:
    """A top-level key as JSON makes it (``1`` → ``"1"``), or a :class:`DataError`."""
    if type(key) is str:
        return key
    try:
        return str(next(iter(json.loads(json.dumps({key: None})))))
    except TypeError:
        raise DataError(f"{where}: run data keys must be strings, not {key!r}") from None


def encode(key: str, value: Any, where: str) -> tuple[Text, Any]:
    """The text of ``data[key]`` and the value as stored (read back from the text when it held
    values that JSON lacks, as :func:`~treadle._state.as_stored` does)."""
    try:
        return _encode(value, _plain), value
    except _Formed:
        pass
    except (TypeError, ValueError):
        encode_data({key: value}, where)  # raises the DataError that names the path
        raise
    try:
        text = _encode(value, lambda inner: _dumps(inner, json_form))
    except (TypeError, ValueError):
        encode_data({key: value}, where)
        raise
    return text, decode(text)  # read back: later steps see the JSON form


def _encode(value: Any, dumps: Any) -> Text:
    if type(value) is list and len(value) > CHUNK:
        return tuple(dumps(value[at : at + CHUNK])[1:-1] for at in range(0, len(value), CHUNK))
    return str(dumps(value))


def whole(text: Text) -> str:
    """The JSON text of a value."""
    return text if type(text) is str else "[" + ",".join(text) + "]"


def join(texts: Texts) -> str:
    """The JSON text of the whole data."""
    return "{" + ",".join(key_json(k) + ":" + whole(t) for k, t in texts.items()) + "}"


def split(data_json: str) -> tuple[Texts, dict[str, Any]]:
    """The texts of stored data, and its values."""
    data = json.loads(data_json)
    return {k: encode(k, v, "data")[0] for k, v in data.items()}, data


class Sealed(NamedTuple):
    """A step's private copy after the step: what it changed."""

    #: The copy's keys, in its order.
    keys: list[str]
    #: The text of each key the step set or changed (None: deleted).
    changed: dict[str, Text | None]
    #: The value (as stored) of every key the step read or set.
    values: dict[str, Any]


def seal(private: Any, base: Texts, where: str) -> Sealed:
    """What a step changed of its copy of the data (made over ``base``): the keys it read or
    set are encoded again and compared; the others are as they were."""
    if not isinstance(private, dict):
        raise DataError(
            f"{where}: run data must be a JSON object (dict), not {type(private).__name__}"
        )
    entries: Iterable[tuple[Any, Any]]
    if isinstance(private, LazyData) and private.texts is base:
        entries = dict.items(private)
    else:
        entries = private.items()  # a dict the step made: every key counts as set
    keys: list[str] = []
    changed: dict[str, Text | None] = {}
    values: dict[str, Any] = {}
    for raw, value in entries:
        key = _key(raw, where)
        keys.append(key)
        if value is UNREAD:
            continue
        text, values[key] = encode(key, value, where)
        if base.get(key) != text:
            changed[key] = text
    present = set(keys)
    for key in base:
        if key not in present:
            changed[key] = None
    return Sealed(keys, changed, values)


def is_aside(text: Text | None) -> bool:
    """Whether a value of this text is stored beside the run."""
    return text is not None and (type(text) is not str or len(text) > LARGE)


def stored_form(texts: Texts, stored: Texts | None) -> tuple[str, list[ValueWrite] | None]:
    """What a checkpoint writes of the data: ``runs.data``, and the changes to the values stored
    beside the run since it was ``stored`` (None: unknown, every value aside is written)."""
    aside = [k for k, t in texts.items() if type(t) is not str or len(t) > LARGE]
    before = [] if stored is None else [k for k, t in stored.items() if is_aside(t)]
    if not aside and not before:
        return "{" + ",".join([key_json(k) + ":" + t for k, t in texts.items()]) + "}", None  # type: ignore[operator]
    writes: list[ValueWrite] = []
    old: Texts = stored or {}
    for key in before:
        if not is_aside(texts.get(key)):
            writes.append((key, 0, None))
    for key in aside:
        writes.extend(_changes(key, texts[key], old.get(key) if key in before else None))
    small = ",".join(
        key_json(k) + ":" + ("0" if is_aside(t) else whole(t)) for k, t in texts.items()
    )
    return ASIDE + "{" + small + "}", writes


def _changes(key: str, text: Text, old: Text | None) -> list[ValueWrite]:
    """The rows to write for value ``key`` stored aside (``old``: as stored, if it was)."""
    if text is old:
        return []
    if type(text) is str:
        if text == old:
            return []
        tail = [(key, 1, None)] if type(old) is tuple else []
        return [(key, 0, text), *tail]
    if type(old) is not tuple:
        head: list[ValueWrite] = [(key, 0, None)] if old is not None else []
        return head + [(key, i + 1, c) for i, c in enumerate(text)]
    writes: list[ValueWrite] = [
        (key, i + 1, c)
        for i, c in enumerate(text)
        if i >= len(old) or (c is not old[i] and c != old[i])
    ]
    if len(old) > len(text):
        writes.append((key, len(text) + 1, None))
    return writes
