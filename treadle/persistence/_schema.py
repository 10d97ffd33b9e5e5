"""Schema versions: the start-up check and the migrations, written once for every dialect.

The dialect's ``schema`` block is the whole schema at :data:`SCHEMA_VERSION`: what an empty
database gets. A block ``migrate_<n>`` (``sql/<dialect>/migrations.sql``) takes a database from
version n-1 to n; each new version adds one per dialect and changes the schema blocks to match
(``tests/test_store_contract.py`` checks that migrating the oldest snapshot in ``tests/data/``
gives exactly what the schema block creates).
"""

from __future__ import annotations

from .._errors import SchemaVersionError
from ._sql import Tx

SCHEMA_VERSION = 6
"""The schema version this treadle reads and writes (``treadle_meta.schema_version``)."""


def schema_version(tx: Tx) -> int:
    """The database's schema version: 0 when it has no treadle schema."""
    if tx.one("has_meta_table") is None:
        return 0
    row = tx.one("get_meta", key="schema_version")
    return 0 if row is None else int(row["value"])


def _create_schema(tx: Tx) -> None:
    tx.execute("schema")
    tx.execute("set_meta", key="schema_version", value=str(SCHEMA_VERSION))


def ensure_schema(tx: Tx) -> int:
    """At start-up: create the schema in an empty database; return the version found or made."""
    if tx.one("has_meta_table") is None:
        _create_schema(tx)
        return SCHEMA_VERSION
    return schema_version(tx)


def migrate(tx: Tx) -> str:
    """Bring the schema to :data:`SCHEMA_VERSION` under the schema lock: create it, or apply
    the ``migrate_<n>`` blocks in order. Returns what was done, in a sentence."""
    tx.execute("schema_lock")
    found = schema_version(tx)
    if found > SCHEMA_VERSION:
        raise _newer(found)
    if found == SCHEMA_VERSION:
        return f"the schema is at version {SCHEMA_VERSION}: nothing to do"
    if found == 0:
        _create_schema(tx)
        return f"created the treadle schema, version {SCHEMA_VERSION}"
    for version in range(found + 1, SCHEMA_VERSION + 1):
        tx.execute(f"migrate_{version}")
    tx.execute("set_meta", key="schema_version", value=str(SCHEMA_VERSION))
    return f"upgraded the treadle schema from version {found} to {SCHEMA_VERSION}"


def check_version(found: int, upgrade_command: str) -> None:
    """Raise :class:`SchemaVersionError` unless ``found`` is :data:`SCHEMA_VERSION`; an older
    database's message names ``upgrade_command``."""
    if found > SCHEMA_VERSION:
        raise _newer(found)
    if found < SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {found}, older than this treadle needs "
            f"({SCHEMA_VERSION}): run '{upgrade_command}'"
        )


def _newer(found: int) -> SchemaVersionError:
    return SchemaVersionError(
        f"the database has schema version {found}, newer than this treadle supports "
        f"({SCHEMA_VERSION}): upgrade treadle on this machine"
    )
