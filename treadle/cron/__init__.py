"""Cron schedules: parsing expressions and computing their due times."""

from treadle.cron._expression import CronError, CronExpression, next_fire, next_fires

__all__ = ["CronError", "CronExpression", "next_fire", "next_fires"]
