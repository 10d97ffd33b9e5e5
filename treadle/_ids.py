"""The one rule for ids and names that leave a definition: run ids, workflow names, signal and
approval names, schedule ids.

An id is a string of 1 to :data:`MAX_ID_LENGTH` characters from letters, digits and ``._:@-``,
the first a letter or a digit, so that it fits a URL path segment, a shell argument (never taken
for an option) and a log line as it is. Ids that treadle derives itself (generated run ids,
``cron:<schedule>:<due time>``, child run ids) follow it too. :data:`ID_PATTERN` is the same rule
as a regular expression, for schemas.
"""

from __future__ import annotations

import hashlib
import re

from ._errors import InvalidId

__all__ = [
    "ID_PATTERN",
    "ID_RULE",
    "MAX_ID_LENGTH",
    "MAX_SCHEDULE_ID_LENGTH",
    "check_id",
    "child_id",
    "is_id",
]

MAX_ID_LENGTH = 200
"""The longest id."""

MAX_SCHEDULE_ID_LENGTH = 160
"""The longest schedule id: the run ids a schedule derives (``cron:<id>:<due time>``) add up to
33 characters and must still be ids."""

ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._:@-]{{0,{MAX_ID_LENGTH - 1}}}$"
"""The rule as a regular expression (for JSON schemas and request models)."""

ID_RULE = (
    f"1 to {MAX_ID_LENGTH} characters from letters, digits and '._:@-', the first a letter or a "
    "digit"
)
"""The rule in words, as error messages and the docs give it."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@-]+")


def is_id(value: object, *, max_length: int = MAX_ID_LENGTH) -> bool:
    """Whether ``value`` follows the id rule."""
    return (
        isinstance(value, str) and 0 < len(value) <= max_length and _ID.fullmatch(value) is not None
    )


def check_id(value: object, what: str = "run id", *, max_length: int = MAX_ID_LENGTH) -> str:
    """Return ``value`` if it is an id; else raise :class:`~treadle.InvalidId` naming it and the
    rule. ``what`` says what the value is for (``"run id"``, ``"workflow name"``, ...)."""
    if is_id(value, max_length=max_length):
        assert isinstance(value, str)
        return value
    rule = ID_RULE.replace(str(MAX_ID_LENGTH), str(max_length))
    shown = repr(value) if not isinstance(value, str) or len(value) <= 60 else _shorten(value)
    kind = "" if isinstance(value, str) else f" (a {type(value).__name__}, not a string)"
    raise InvalidId(f"invalid {what} {shown}{kind}: an id is {rule}", value=value, what=what)


def child_id(parent_id: str, step: str, path: str) -> str:
    """The id of the child run that the sub-workflow step ``step`` at ``path`` starts.

    ``<parent>.<step>.<hash of path>`` as before whenever that is an id (so recovered parents
    find the children they started); otherwise the step name's unsafe characters become ``-``
    and a long id keeps its end, which holds the hash, behind a hash of the whole.
    ``parent_id`` is an id, so the result starts as an id must.
    """
    digest = hashlib.blake2b(path.encode(), digest_size=6).hexdigest()
    plain = f"{parent_id}.{step}.{digest}"
    if is_id(plain):
        return plain
    safe = f"{parent_id}.{_UNSAFE.sub('-', step).strip('-') or 'step'}.{digest}"
    if len(safe) <= MAX_ID_LENGTH:
        return safe
    whole = hashlib.blake2b(plain.encode(), digest_size=8).hexdigest()
    return f"{whole}.{safe[-(MAX_ID_LENGTH - len(whole) - 1) :]}"


def _shorten(value: str) -> str:
    return f"{value[:40]!r}... ({len(value)} characters)"
