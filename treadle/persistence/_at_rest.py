"""Values at rest: run data, positions, inbox payloads and event details through a codec.

One boundary, below the transaction scripts: :class:`AtRestTx` wraps a transaction so that the
parameters ``data``, ``cursor``, ``payload`` and ``detail`` are encoded on their way into SQL and
the columns of those names decoded on their way out. Scripts and SQL never see encoded text
(no statement reads inside those values), and the rows the core gets are plain JSON as always.

The stored form of an encoded value is ``~codec:`` followed by the codec's text; in a JSON
column (an event's ``detail``, ``jsonb`` on PostgreSQL) that text as a JSON string. No JSON text
starts with ``~``, so a reader tells encoded values from plain ones (rows stored before the
codec was configured stay readable), and a reader without the codec says so instead of
returning garbage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._codec import Codec
from .._errors import CodecError, DataError
from .._text import require_storable
from ._sql import Row, Tx
from ._values import ASIDE, filled

T = TypeVar("T")

MARKER = "~codec:"
"""What the stored form of an encoded value starts with."""

_TEXT = {
    "data": "data",
    "cursor": "position",
    "payload": "inbox payload",
    "result": "result",
    "content": "large value",
}
_JSON = {"detail": "history"}
_COLUMNS = (*_TEXT, *_JSON)
_QUOTED = json.dumps(MARKER)[:-1]  # how a JSON string holding an encoded value starts

NO_CODEC_HINT = (
    "pass the codec it was written with (Engine(codec=...), --codec MODULE:ATTR or TREADLE_CODEC)"
)


class AtRest:
    """How one persistence writes values at rest: through ``codec``, or as they are."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec

    def seal(self, text: str) -> str:
        """The stored form of JSON ``text``."""
        if self.codec is None:
            return text
        encoded = self.codec.encode(text)
        if not isinstance(encoded, str):
            raise CodecError(
                f"codec {self.codec!r}.encode returned {type(encoded).__name__}, not str"
            )
        try:
            require_storable(encoded, f"the output of codec {self.codec!r}")
        except DataError as exc:
            raise CodecError(str(exc)) from None
        return MARKER + encoded

    def open(self, stored: str, what: str, run_id: object) -> str:
        """The JSON text of a stored value (``stored`` itself when it is not encoded)."""
        if not stored.startswith(MARKER):
            return stored
        about = f"the {what} of run {run_id!r}"
        if self.codec is None:
            raise CodecError(
                f"{about} is encoded with a codec and this reader has none: {NO_CODEC_HINT}"
            )
        try:
            text = self.codec.decode(stored[len(MARKER) :])
            json.loads(text[len(ASIDE) :] if text.startswith(ASIDE) else text)
        except Exception as exc:
            raise CodecError(
                f"{about} cannot be decoded by codec {self.codec!r} (is it the codec it was "
                f"written with?): {type(exc).__name__}: {exc}"
            ) from None
        return str(text)

    def params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Statement parameters with the values to encode encoded (in place)."""
        if self.codec is None:
            return params
        for key in params.keys() & _TEXT.keys():
            if isinstance(params[key], str):
                params[key] = self.seal(params[key])
        detail = params.get("detail")
        if isinstance(detail, str):
            params["detail"] = json.dumps(self.seal(detail))
        return params

    def row(self, row: Row) -> Row:
        """A row with its encoded values decoded (``row`` itself when none is)."""
        opened: dict[str, Any] | None = None
        keys = row.keys()
        for key in _COLUMNS:
            value = row[key] if key in keys else None
            if not isinstance(value, str):
                continue
            if key in _TEXT and value.startswith(MARKER):
                what = _TEXT[key]
            elif key in _JSON and value.startswith((MARKER, _QUOTED)):
                what = _JSON[key]
                value = value if value.startswith(MARKER) else json.loads(value)
            else:
                continue
            opened = dict(row) if opened is None else opened
            run_id = opened.get("id") if "run_id" not in opened else opened["run_id"]
            opened[key] = self.open(value, what, run_id)
        return row if opened is None else opened


class AtRestTx:
    """A :class:`Tx` whose statements store values at rest as ``rest`` says."""

    def __init__(self, tx: Tx, rest: AtRest) -> None:
        self._tx = tx
        self._rest = rest

    def execute(self, statement: str, /, **params: Any) -> int:
        """As :meth:`Tx.execute`, parameters encoded."""
        return self._tx.execute(statement, **self._rest.params(params))

    def one(self, statement: str, /, **params: Any) -> Row | None:
        """As :meth:`Tx.one`, parameters encoded and the row decoded."""
        row = self._tx.one(statement, **self._rest.params(params))
        return None if row is None else self._whole(row)

    def all(self, statement: str, /, **params: Any) -> Sequence[Row]:
        """As :meth:`Tx.all`, parameters encoded and the rows decoded."""
        return [self._whole(r) for r in self._tx.all(statement, **self._rest.params(params))]

    def _whole(self, row: Row) -> Row:
        """A row decoded, with the run's data whole (see :mod:`._values`)."""
        row = self._rest.row(row)
        if "data" in row.keys():  # noqa: SIM118  (sqlite3.Row: `in` looks at the values)
            data = row["data"]
            if isinstance(data, str) and data.startswith(ASIDE):
                return filled(self._tx, row, self._rest.row)
        return row

    def many(self, statement: str, rows: Sequence[dict[str, Any]], /) -> None:
        """As :meth:`Tx.many`, parameters encoded."""
        self._tx.many(statement, [self._rest.params(dict(r)) for r in rows])

    def notify(self, run_id: str) -> None:
        """As :meth:`Tx.notify`."""
        self._tx.notify(run_id)


def at_rest(rest: AtRest, script: Callable[[Tx], T]) -> Callable[[Tx], T]:
    """``script`` run on its transaction wrapped by :class:`AtRestTx`."""

    def wrapped(tx: Tx) -> T:
        return script(AtRestTx(tx, rest))

    return wrapped
