"""The run's data as a step sees it: a ``dict`` whose values are decoded on first access.

A run's data is held as the JSON text of each top-level value (see :mod:`.texts`). A step
gets a :class:`LazyData` over those texts: nothing is decoded until the step reads a key, so a
step that touches one small key of a run whose data holds a 100,000-element list costs what it
costs with that list absent. Every way of reading a value goes through the decoding:
``[]``, ``get``, ``pop``, ``setdefault``, ``values``, ``items``, ``copy``, ``==``, ``repr``,
``|``, pickling and :func:`copy.deepcopy`, and ``dict(view)``, ``{**view}`` and
``json.dumps(view)`` (which read through ``keys``/``[]`` or ``items``). Only code that reads a
dict's memory directly, bypassing its methods (some C extensions given the dict itself), would
see the placeholder of a value not yet read: so only large values wait to be read (a text
above :data:`EAGER_BELOW` characters, or a chunked list); the others are decoded at once, as
cheap as before. Give such code ``dict(state.data)`` to be sure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final


class _Unread:
    """The placeholder of a value not decoded yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not read yet>"


UNREAD: Final[Any] = _Unread()

EAGER_BELOW: Final = 2048
"""Values whose JSON text is shorter are decoded when the view is made, not on first read."""


def decode(text: str | tuple[str, ...]) -> Any:
    """A value from its text: JSON, or the chunks of a long list (see :mod:`.texts`)."""
    if type(text) is str:
        return json.loads(text)
    return json.loads("[" + ",".join(text) + "]")


class LazyData(dict[str, Any]):
    """The run's data, each value decoded from ``texts`` when first read.

    The keys are all there from the start (``len``, ``in`` and iteration need no decoding);
    a large value is :data:`UNREAD` in the dict's own storage until it is read or set. After
    the step, :func:`.texts.seal` re-encodes only the values that are not :data:`UNREAD`.
    """

    __slots__ = ("texts",)

    def __init__(self, texts: Mapping[str, str | tuple[str, ...]]) -> None:
        super().__init__(
            (k, json.loads(t) if type(t) is str and len(t) < EAGER_BELOW else UNREAD)
            for k, t in texts.items()
        )
        #: The text of every value as the data was when this view was made.
        self.texts = texts

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if value is UNREAD:
            value = decode(self.texts[key])
            dict.__setitem__(self, key, value)
        return value

    def read_all(self) -> None:
        """Decode every value not read yet."""
        for key, value in dict.items(self):
            if value is UNREAD:
                dict.__setitem__(self, key, decode(self.texts[key]))

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401  (that is this method)

    def __iter__(self) -> Iterator[str]:
        # Overridden so that dict(view) and {**view} read through keys() and [] (CPython
        # copies a dict subclass's storage directly only when __iter__ is dict's own).
        return dict.__iter__(self)

    def values(self) -> Any:
        self.read_all()
        return dict.values(self)

    def items(self) -> Any:
        self.read_all()
        return dict.items(self)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            value = self[key]
            dict.__delitem__(self, key)
            return value
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.read_all()
        return dict.popitem(self)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        dict.__setitem__(self, key, default)
        return default

    def copy(self) -> dict[str, Any]:
        """A plain ``dict`` copy, every value decoded."""
        self.read_all()
        return dict(dict.items(self))

    def __eq__(self, other: object) -> bool:
        self.read_all()
        if isinstance(other, LazyData):
            other.read_all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        self.read_all()
        return dict.__repr__(self)

    def __or__(self, other: Any) -> Any:
        return self.copy() | other

    def __ror__(self, other: Any) -> Any:
        return other | self.copy()

    def __reduce__(self) -> Any:
        return (dict, (self.copy(),))

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__reduce__()
