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


def tracer() -> Any:
    """The tracer to use now, or None when no tracer provider is configured.

    Asked once per stretch of a run's execution, so that a provider installed later is used.
    """
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        return None
    return provider.get_tracer("treadle")


def _span(tracer: Any, name: str, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
    if tracer is None:
        return _NO_SPAN
    span: AbstractContextManager[Any] = tracer.start_as_current_span(name, attributes=attributes)
    return span


def run_span(tracer: Any, run_id: str, workflow: str) -> AbstractContextManager[Any]:
    """A span for one stretch of a run's execution (from its claim to its end or next wait)."""
    return _span(
        tracer,
        f"treadle.run {workflow}",
        {"treadle.run_id": run_id, "treadle.workflow": workflow},
    )


def step_span(
    tracer: Any, run_id: str, workflow: str, step: str, attempt: int
) -> AbstractContextManager[Any]:
    """A span for one attempt of a step; an exception it raises marks the span as an error."""
    if tracer is None:
        return _NO_SPAN
    return _span(
        tracer,
        f"treadle.step {step}",
        {
            "treadle.run_id": run_id,
            "treadle.workflow": workflow,
            "treadle.step": step,
            "treadle.attempt": attempt,
        },
    )
