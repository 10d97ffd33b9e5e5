"""The DBOS side's benchmark workflow, shared by its SQLite and PostgreSQL scripts (which run in
the DBOS virtual environment): three steps that do nothing."""

from __future__ import annotations

from dbos import DBOS


@DBOS.step()
def noop_step(x: int) -> int:
    """A step that does nothing."""
    return x


@DBOS.workflow()
def three_steps(x: int) -> int:
    """The benchmark's workflow: three steps that do nothing."""
    noop_step(x)
    noop_step(x)
    noop_step(x)
    return x
