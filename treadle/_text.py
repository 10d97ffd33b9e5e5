"""Text that every backend can store.

Python strings may hold what no database takes as text: NUL (PostgreSQL refuses it in ``text``
and ``jsonb``) and lone surrogates (``os.fsdecode`` makes them from a file name that is not
UTF-8; no UTF-8 encoder takes them). Two rules, one for each origin of the text:

- Text that *code* produces (error messages, tracebacks, event details) is made storable with
  :func:`storable`: the offending characters are escaped, so the failure is still recorded.
- Text and JSON that a *caller* gives (run data, ids, signal payloads, comments) is checked with
  :func:`require_storable`, which refuses it up front with a :class:`DataError` naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from ._errors import DataError

#: How deeply caller-given JSON may nest (lists and objects) before it is refused.
MAX_DEPTH = 256

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\\x00" if code == 0 else f"\\u{code:04x}"


def storable(text: str) -> str:
    """``text`` with NUL written as ``\\x00`` and each lone surrogate as ``\\udcff`` (the way
    Python's ``repr`` and ``backslashreplace`` write them); any other text is returned as it is.

    The result can be stored as text by every backend. Use it for text that code produced, such
    as the message of an exception raised by a step: ``"cannot open \\udcff.csv"`` is stored as
    the 22 characters ``cannot open \\udcff.csv``. Never raises.
    """
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(_escape, text)


def storable_json(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with :func:`storable` applied to every
    string in it, keys included; other values are returned as they are. Never raises."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {
            storable(k) if isinstance(k, str) else k: storable_json(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [storable_json(item) for item in value]
    return value


def require_storable(value: Any, field: str) -> None:
    """Refuse caller-given text or JSON that a backend could not store faithfully.

    ``value`` is a string or JSON-like data (dicts, lists, tuples, strings, numbers, ``None``);
    every string in it, dict keys included, is checked. Raises :class:`DataError` naming
    ``field`` (e.g. ``"run_id"``, ``"signal 'payment' payload"``) when a string holds NUL or a
    lone surrogate, or when lists and dicts nest more than :data:`MAX_DEPTH` deep (instead of a
    ``RecursionError`` further on). Returns ``None`` and changes nothing when ``value`` is fine.
    Values of other types are not checked here: serialisation refuses those.
    """
    # An explicit stack, not recursion: the point is to refuse what recursion cannot handle.
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            found = _UNSTORABLE.search(item)
            if found is not None:
                what = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
                raise DataError(
                    f"{field} holds {what} ({storable(found.group())!s} at position "
                    f"{found.start()} of {storable(item[:40])!r}), which cannot be stored"
                )
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise DataError(f"{field} is nested more than {MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                stack.extend((key, depth + 1) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
