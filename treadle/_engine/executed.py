"""The leases this engine has begun executing runs under, so that none is executed twice.

A run is executed under a lease, named by its fencing token; every claim, and every wake-up by
a delivery, makes a new one. Several paths may each hand the executor the same lease: a
signal's delivery that woke a run and an approval's delivery that found it already woken both
return it, and the second may get there only after a driver has executed the run under that
lease to its end. Executing it again from that stale record would run its steps again and could
overwrite its end with an older position (the token still matches). So each (run, token) is
executed at most once here.
"""

from __future__ import annotations

from collections import OrderedDict

REMEMBERED = 10_000
"""How many runs' latest leases are kept: a stale hand-over comes within moments of the one it
repeats, long before this many other runs have started here."""


class Executed:
    """The latest lease (token) under which each recent run began executing here."""

    def __init__(self, remembered: int = REMEMBERED) -> None:
        self._tokens: OrderedDict[str, int] = OrderedDict()
        self._remembered = remembered

    def begin(self, run_id: str, token: int) -> bool:
        """Record that the run begins executing under ``token``; False when it already began
        under that lease (or a newer one) here: then it must not be executed again."""
        if self._tokens.get(run_id, -1) >= token:
            return False
        self._tokens[run_id] = token
        self._tokens.move_to_end(run_id)
        if len(self._tokens) > self._remembered:
            self._tokens.popitem(last=False)
        return True
