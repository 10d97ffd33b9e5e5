"""The rules for run labels: a key (an id) and a text value, set at start or by a step."""

from __future__ import annotations

from collections.abc import Mapping

from ._errors import DataError
from ._ids import check_id

MAX_LABEL_KEY = 64
"""The longest label key (an id of at most this many characters)."""

MAX_LABEL_VALUE = 200
"""The longest label value."""

MAX_LABELS = 32
"""The most labels one run can have."""


def check_label(key: object, value: object) -> tuple[str, str]:
    """``(key, value)`` if they make a label: the key an id of at most :data:`MAX_LABEL_KEY`
    characters (:class:`InvalidId` otherwise), the value a string of 1 to
    :data:`MAX_LABEL_VALUE` printable characters (:class:`DataError` otherwise)."""
    check_id(key, "label key", max_length=MAX_LABEL_KEY)
    assert isinstance(key, str)
    if not isinstance(value, str):
        raise DataError(
            f"label {key!r}: the value must be a string, not {type(value).__name__} "
            f"(write str(value) to label with it)"
        )
    if not 0 < len(value) <= MAX_LABEL_VALUE or not value.isprintable():
        raise DataError(
            f"label {key!r}: the value must be 1 to {MAX_LABEL_VALUE} printable characters, "
            f"not {value[:40]!r}{'...' if len(value) > 40 else ''} ({len(value)} characters)"
        )
    return key, value


def check_labels(labels: object, *, count: int = 0) -> dict[str, str]:
    """A checked copy of ``labels`` (a mapping of label keys to values, see
    :func:`check_label`); ``count`` is how many other labels the run has already."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise DataError(f"labels must be a dict of strings, not {type(labels).__name__}")
    checked = dict(check_label(k, v) for k, v in labels.items())
    if len(checked) + count > MAX_LABELS:
        raise DataError(f"a run can have at most {MAX_LABELS} labels, not {len(checked) + count}")
    return checked


def parse_label(text: str, separators: str = "=:") -> tuple[str, str]:
    """A label written ``key=value`` (or ``key:value``) on a command line or in a query."""
    at = min((i for i in (text.find(s) for s in separators) if i > 0), default=-1)
    if at < 0:
        raise DataError(f"a label filter is written key=value (or key:value), not {text!r}")
    return check_label(text[:at], text[at + 1 :])
