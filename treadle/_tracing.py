"""OpenTelemetry spans per run execution and per step attempt, when ``opentelemetry-api`` is
installed (``pip install treadle[otel]``) and a tracer provider is configured.

Without the package, or with it but no provider set (the API's default proxy), no span object
is made at all: a no-op span still costs more than a step of an engine aiming at one commit per
step.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # pragma: no cover - the extra is not installed
    trace = None  # type: ignore[assignment]

_NO_SPAN: AbstractContextManager[Any] = nullcontext()


def _span(name: str, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
    if trace is None:
        return _NO_SPAN
    # Asked each time so that a provider installed later is used.
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        return _NO_SPAN
    return provider.get_tracer("treadle").start_as_current_span(name, attributes=attributes)


def run_span(run_id: str, workflow: str) -> AbstractContextManager[Any]:
    """A span for one stretch of a run's execution (from its claim to its end or next wait)."""
    return _span(
        f"treadle.run {workflow}", {"treadle.run_id": run_id, "treadle.workflow": workflow}
    )


def step_span(run_id: str, workflow: str, step: str, attempt: int) -> AbstractContextManager[Any]:
    """A span for one attempt of a step; an exception it raises marks the span as an error."""
    return _span(
        f"treadle.step {step}",
        {
            "treadle.run_id": run_id,
            "treadle.workflow": workflow,
            "treadle.step": step,
            "treadle.attempt": attempt,
        },
    )
