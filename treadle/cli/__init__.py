"""The ``treadle`` command line: a thin shell over the engine's calls.

Every option can also come from an environment variable: ``TREADLE_DB``, ``TREADLE_APP`` and
``TREADLE_JSON`` for the shared ones, ``TREADLE_<COMMAND>_<OPTION>`` for the others (e.g.
``TREADLE_WORKER_CONCURRENCY``).
"""

from __future__ import annotations

from . import (
    _admin,
    _bulk,
    _cron,
    _cron_ops,
    _limits,
    _rates,
    _retention,
    _runs,
    _versions,
    _worker,
)
from ._app import DEFAULT_DB, cli, load_workflows

__all__ = ["DEFAULT_DB", "cli", "load_workflows", "main"]

_COMMANDS = (
    _admin,
    _bulk,
    _cron,
    _cron_ops,
    _rates,
    _limits,
    _retention,
    _runs,
    _versions,
    _worker,
)  # imported for the commands they add to `cli`


def main() -> None:
    """Entry point of the ``treadle`` script and of ``python -m treadle``."""
    cli(prog_name="treadle")
