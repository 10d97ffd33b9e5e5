"""Structured logging: every record made while a run executes carries its run id and step.

The engine sets two context variables around each step (they follow the step into its worker
thread), and :class:`RunContextFilter` copies them onto log records — the engine's own and those
that user code logs inside a step.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from typing import Any

current_run: ContextVar[str | None] = ContextVar("treadle_run", default=None)
current_step: ContextVar[str | None] = ContextVar("treadle_step", default=None)


class RunContextFilter(logging.Filter):
    """Adds ``run_id`` and ``step`` attributes (None outside a run) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops it."""
        if getattr(record, "run_id", None) is None:
            record.run_id = current_run.get()
        if getattr(record, "step", None) is None:
            record.step = current_step.get()
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, run_id, step (and any error)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "step": getattr(record, "step", None),
        }
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: int | str = logging.INFO, *, json_lines: bool = False) -> None:
    """Log to stderr with the run id and step on every line (``json_lines`` for machines)."""
    handler = logging.StreamHandler()
    handler.addFilter(RunContextFilter())
    if json_lines:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s [run=%(run_id)s step=%(step)s] %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
