"""``treadle rates``: every rate limiter, its use now and the runs waiting for it."""

from __future__ import annotations

import click

from .._rate_view import rate_rows
from .._wire import RateLimitList
from ..persistence._rates import RateLimitState
from . import _output
from ._app import cli, db_option, json_option, open_client, run


@cli.command()
@db_option
@json_option
def rates(db_url: str, as_json: bool) -> None:
    """Every rate limiter (treadle.RateLimit) in the database: its limit, the calls that may go
    at once now, when the next call may go, and the runs parked until their reserved call."""

    async def work() -> list[RateLimitState]:
        async with open_client(db_url) as client:
            return await client.rate_limits()

    found = run(work)
    if as_json:
        _output.emit_json(RateLimitList.of(found))
        return
    rows = [
        [r.name, r.limit, str(r.burst), str(r.available), r.next_free, str(r.waiting)]
        for r in rate_rows(found)
    ]
    headers = ["LIMITER", "LIMIT", "BURST", "AVAILABLE", "NEXT FREE", "WAITING"]
    click.echo(_output.table(headers, rows, empty="no rate limiters (no step has used one)"))
