"""Where runs are kept: the persistence contract and its backends."""

from __future__ import annotations

from .._codec import Codec
from ._base import Persistence
from ._scripted import SQLPersistence
from ._sqlite import MemoryPersistence, SQLitePersistence


def with_codec(persistence: Persistence, codec: Codec | None) -> Persistence:
    """``persistence``, storing values at rest through ``codec`` when one is given (None leaves
    its codec as it is). Only treadle's own persistences (:class:`SQLPersistence`) take one."""
    if codec is None:
        return persistence
    if not isinstance(persistence, SQLPersistence):
        raise TypeError(
            f"codec= needs one of treadle's persistences (a SQLPersistence), not {persistence!r}"
        )
    persistence.codec = codec
    return persistence


def persistence_from_url(url: str) -> SQLPersistence:
    """Open a backend by URL: ``memory://``, ``sqlite:///path`` (or a plain path), or
    ``postgresql://...``."""
    if url.startswith("memory:"):
        return MemoryPersistence()
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        if path.startswith("///"):
            path = path[3:]
        elif path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"invalid SQLite URL {url!r}: expected sqlite:///path/to/file.db")
        return SQLitePersistence(path)
    if url.startswith(("postgresql:", "postgres:")):
        from ._postgres import PostgresPersistence

        backend: SQLPersistence = PostgresPersistence(url)
        return backend
    if "://" not in url:
        return SQLitePersistence(url)
    raise ValueError(
        f"unknown database URL {url!r}: use memory://, sqlite:///path or postgresql://..."
    )


__all__ = [
    "Codec",
    "MemoryPersistence",
    "Persistence",
    "SQLPersistence",
    "SQLitePersistence",
    "persistence_from_url",
    "with_codec",
]
