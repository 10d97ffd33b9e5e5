"""Cron schedules: parsing expressions, computing their due times, and starting runs on them."""

from treadle.cron._cron import Cron, Schedule, ScheduleExists, ScheduleNotFound
from treadle.cron._expression import CronError, CronExpression, next_fire, next_fires
from treadle.cron._operations import Backfill

__all__ = [
    "Backfill",
    "Cron",
    "CronError",
    "CronExpression",
    "Schedule",
    "ScheduleExists",
    "ScheduleNotFound",
    "next_fire",
    "next_fires",
]
