"""A PostgreSQL server for the tests.

- ``pg_dsn`` (session fixture): the DSN of a server. ``TREADLE_TEST_PG_DSN`` if set (its user
  needs CREATEDB); otherwise a throwaway server is made with ``initdb`` + ``pg_ctl`` (from
  ``/usr/lib/postgresql/*/bin`` or ``pg_config --bindir``) in a temporary folder, on a free port
  of 127.0.0.1, trust authentication, ``fsync=off``; as root it runs as the ``postgres`` user. It
  is stopped and removed at the end of the session. Without either, tests that use it skip.
- ``fresh_database(pg_dsn) -> dsn``: a new, empty-of-rows database with the treadle schema
  (``CREATE DATABASE ... TEMPLATE`` a migrated template, which is fast), so that tests do not see
  each other's rows. ``fresh_database(pg_dsn, migrated=False)`` gives a database with no schema.
- ``pg_server`` (session fixture): the :class:`PgServer`, with ``stop()``, ``start()`` and
  ``restart()``, for outage tests; it skips when the server is an external one.
- ``fresh_pg_dsn`` (fixture): ``fresh_database(pg_dsn)`` for one test.

Use from a conftest with ``from pgserver import pg_dsn, pg_server, fresh_pg_dsn`` (importing a
fixture registers it) and call ``pgserver.fresh_database(...)`` directly.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ENV = "TREADLE_TEST_PG_DSN"


def _bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        path = Path(out.stdout.strip())
        if (path / "pg_ctl").exists():
            return path
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgServer:
    """A throwaway PostgreSQL cluster in a temporary folder."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="treadle-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb",
            "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        self.running = False

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr}{result.stdout}\n{log}"
            )

    #: Test servers trade durability for speed; the benchmark's server turns it back on.
    settings = "-c fsync=off -c full_page_writes=off -c max_connections=200"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} {self.settings} "
            "-c log_min_messages=warning"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", options, "start")  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect everybody; ``immediate``: like a crash)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            self.running = False

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down ``down_for`` seconds, start again."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def dsn(self, dbname: str = "postgres") -> str:
        """A URL for one of its databases."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def destroy(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


_lock = threading.Lock()
_server: PgServer | None = None
_created: list[tuple[str, str]] = []  # (server dsn, database) made by fresh_database
_templates: dict[str, str] = {}  # server dsn -> template database


def server() -> PgServer | None:
    """The session's throwaway server (started on first use), or None with an external DSN."""
    global _server
    if os.environ.get(ENV):
        return None
    with _lock:
        if _server is None:
            bindir = _bindir()
            if bindir is None:
                pytest.skip(f"no PostgreSQL binaries found and {ENV} is not set")
            made = PgServer(bindir)
            made.start()
            atexit.register(made.destroy)
            _server = made
        return _server


def server_dsn() -> str:
    """The DSN of the session's server (a database of it that tests do not use for rows)."""
    external = os.environ.get(ENV)
    if external:
        return external
    found = server()
    assert found is not None
    return found.dsn()


def with_database(dsn: str, dbname: str) -> str:
    """``dsn`` pointing at another database."""
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(path="/" + dbname))
    import psycopg

    return psycopg.conninfo.make_conninfo(dsn, dbname=dbname)


def _admin(dsn: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def _template(dsn: str) -> str:
    with _lock:
        name = _templates.get(dsn)
        if name is not None:
            return name
        name = f"treadle_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        _admin(dsn, f'CREATE DATABASE "{name}"')
        _created.append((dsn, name))
        from treadle.persistence._postgres import PostgresPersistence

        PostgresPersistence(with_database(dsn, name))._upgrade()
        _templates[dsn] = name
        return name


def fresh_database(dsn: str, *, migrated: bool = True) -> str:
    """A new database on the server of ``dsn`` (with the treadle schema unless ``migrated`` is
    false); returns its DSN. Dropped at the end of the session."""
    name = f"treadle_t_{uuid.uuid4().hex[:12]}"
    template = _template(dsn) if migrated else "template0"
    _admin(dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    with _lock:
        _created.append((dsn, name))
    return with_database(dsn, name)


def drop_created() -> None:
    """Drop every database that :func:`fresh_database` made (on an external server)."""
    with _lock:
        created = list(reversed(_created))
        _created.clear()
        _templates.clear()
    for dsn, name in created:
        with contextlib.suppress(Exception):  # best effort clean-up
            _admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """The DSN of a PostgreSQL server for this session (see the module's docstring)."""
    global _server
    dsn = server_dsn()
    yield dsn
    if os.environ.get(ENV):
        drop_created()
        return
    with _lock:
        made, _server = _server, None
        _created.clear()
        _templates.clear()
    if made is not None:
        made.destroy()


@pytest.fixture(scope="session")
def pg_server(pg_dsn: str) -> PgServer:
    """The throwaway server, to stop and start in outage tests (skips with an external one)."""
    found = server()
    if found is None:
        pytest.skip(f"{ENV} points at an external server: it cannot be restarted by the tests")
    return found


@pytest.fixture
def fresh_pg_dsn(pg_dsn: str) -> str:
    """A new migrated database for one test."""
    return fresh_database(pg_dsn)
