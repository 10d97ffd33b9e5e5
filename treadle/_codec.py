"""The codec hook: how run data, inbox payloads and results are written at rest.

A :class:`Codec` turns the JSON text that treadle stores into other text and back: encryption
(``cryptography.fernet``), compression, an envelope from a key service. ``Engine(persistence,
codec=...)`` stores every run's data and position, every inbox payload (signals, approvals) and
every history event's detail (step results, errors, signal data) encoded; what SQL reads
(statuses, names, times, leases) stays as it is, so no query looks inside encoded text.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Codec(Protocol):
    """Two functions on text, ``decode(encode(text)) == text`` for every JSON text.

    ``encode`` may give any text a database stores (no NUL character, no lone surrogate:
    base64 or hex output is the usual choice); it may differ from call to call (a random
    nonce). ``decode`` raises (any exception) on text it cannot decode, e.g. with another key.
    Both are called on the threads that run database transactions: keep them quick and free
    of I/O (fetch keys once, up front).
    """

    def encode(self, text: str) -> str:
        """The stored form of ``text`` (JSON)."""
        ...

    def decode(self, text: str) -> str:
        """The JSON text that ``encode`` was given."""
        ...
