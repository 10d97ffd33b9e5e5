"""The wire shapes of concurrency limits (``GET /api/limits``, ``treadle limits --json``),
re-exported by :mod:`treadle._wire`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .persistence._records import LimitUse


class Limit(BaseModel):
    """One concurrency key in use: a workflow's name, or ``workflow[key]`` for a keyed limit."""

    key: str
    limit: int = Field(description="how many runs of this key may hold a slot at once")
    in_use: int = Field(description="how many runs hold a slot now")
    queued: int = Field(description="how many runs wait for a slot")
    holders: list[str] = Field(description="the runs holding its slots")
    waiting: list[str] = Field(description="the queued runs, in the order they will get a slot")

    @classmethod
    def of(cls, use: LimitUse) -> Limit:
        """The shape of one key's use."""
        return cls(
            key=use.key,
            limit=use.limit,
            in_use=len(use.holders),
            queued=len(use.queued),
            holders=list(use.holders),
            waiting=list(use.queued),
        )


class LimitList(BaseModel):
    """``GET /api/limits``: every concurrency key that a run holds or waits for, by key."""

    limits: list[Limit]

    @classmethod
    def of(cls, uses: list[LimitUse]) -> LimitList:
        """The shape of every key's use."""
        return cls(limits=[Limit.of(u) for u in uses])
