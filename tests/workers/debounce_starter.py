"""A process that only starts debounced runs, in a loop, for the debounce tests.

    python debounce_starter.py DB_URL OUT COUNT KEYS

Start ``COUNT`` runs of workflow ``burst`` (stored by the test's engine) one after another, the
i-th with data ``{"i": i}`` and debounce key ``k<i % KEYS>`` (window one hour: no run begins
while it loops), on a :class:`treadle.Client`. After each start returns it appends
``<i>\\t<key>\\t<run id>`` to ``OUT`` (flushed), so that what a start returned is known even
when the process is killed right after. ``COUNT`` 0 loops until killed.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

import treadle


async def main(url: str, out: str, count: int, keys: int) -> None:
    async with treadle.Client(url) as client:
        with Path(out).open("a", encoding="utf-8") as log:  # noqa: ASYNC230  (one process, one loop)
            numbers = itertools.count() if count == 0 else range(count)
            for i in numbers:
                key = f"k{i % keys}"
                run_id = await client.start(
                    "burst", {"i": i}, debounce_key=key, debounce="1h", labels={"i": str(i)}
                )
                log.write(f"{i}\t{key}\t{run_id}\n")
                log.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
