"""OpenTelemetry spans per run execution and per step attempt, when ``opentelemetry-api`` is
installed (``pip install treadle[otel]``) and a tracer provider is configured.

Without the package, or with it but no provider set (the API's default proxy), no span object
is made at all: a no-op span still costs more than a step of an engine aiming at one commit per
step.

Across processes: :func:`capture` turns the caller's current span context into W3C Trace Context
fields (``traceparent``, ``tracestate``) with the globally configured propagator, stored with
the run as JSON (``runs.trace``); every stretch of the run's execution, in whatever process,
starts its run span as a child of that context, so one trace covers the caller's request, the
run, its steps and its child runs (whose stored context is their parent's run span).
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from typing import Any

try:
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - the extra is not installed
    trace = None  # type: ignore[assignment]
    propagate = None  # type: ignore[assignment]

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


def _carrier() -> dict[str, str]:
    """The current span context as W3C fields, empty when no tracer provider is configured or
    no span is current (nothing is asked of OpenTelemetry then but whether it is configured)."""
    if trace is None or isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return {}
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def capture() -> str | None:
    """The current span context as stored JSON (``{"traceparent": ...}``), or None when there
    is none (see :func:`_carrier`)."""
    carrier = _carrier()
    return json.dumps(carrier, sort_keys=True) if carrier else None


def with_trace(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` of a history event with the current trace context under ``"trace"``, when
    there is one."""
    carrier = _carrier()
    if carrier:
        detail["trace"] = dict(sorted(carrier.items()))
    return detail


def _parent(stored: str | None) -> Any:
    """The OpenTelemetry context of a stored trace (None: none, or unreadable)."""
    if not stored:
        return None
    try:
        carrier = json.loads(stored)
    except ValueError:
        return None
    return propagate.extract(carrier) if isinstance(carrier, dict) else None


def run_span(
    tracer: Any, run_id: str, workflow: str, parent: str | None = None
) -> AbstractContextManager[Any]:
    """A span for one stretch of a run's execution (from its claim to its end or next wait),
    a child of the stored trace context ``parent`` when there is one."""
    if tracer is None:
        return _NO_SPAN
    span: AbstractContextManager[Any] = tracer.start_as_current_span(
        f"treadle.run {workflow}",
        context=_parent(parent),
        attributes={"treadle.run_id": run_id, "treadle.workflow": workflow},
    )
    return span


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
