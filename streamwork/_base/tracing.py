"""OpenTelemetry (the `otel` extra): trace context across the queue, and a span per run.

- At send (tasks, events, the first steps of a workflow): when a span is active, the W3C
  `traceparent` and `tracestate` (and `baggage`) are injected into the message's headers.
- In the worker: each run of a handler is a CONSUMER span, `<task> process`, linked to the
  context its message carried (a link, not a parent: the producer's trace may have ended
  long before), with the queue, message id, attempt and queue wait as attributes; a retry
  and a dead letter are span events; a failure sets the span's status. A batch is one span
  linked to each of its messages. The span is current while the handler runs (sync
  handlers too, in their thread), so spans the handler makes are its children.

Runs and outcomes are _worker/runs.py's `Run` and `Outcome` (typed Any here: that module
imports this module, and the package has no import circles). Everything here is a no-op
when opentelemetry-api is not installed, and runs get no span until a TracerProvider is
set (`trace.set_tracer_provider`, as the SDK's setup does). It never decides an outcome
and never talks to Redis.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed
    trace = None  # type: ignore[assignment]

ENABLED = trace is not None
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
_TRACER_NAME = "streamwork"


_active = False
_checked_at = float("-inf")
RECHECK = 1.0
"""Seconds between two looks for a TracerProvider while none is set (a look costs about a
microsecond: too much for every run)."""


def refresh() -> bool:
    """Look now whether a TracerProvider is set (a worker does as it starts)."""
    global _active, _checked_at
    _checked_at = time.monotonic()
    _active = ENABLED and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _active


def active() -> bool:
    """Whether runs are traced: the API is installed and a TracerProvider was set (with the
    API's default proxy and no SDK, a span would record nothing and only cost time)."""
    if _active or not ENABLED:
        return _active
    if time.monotonic() - _checked_at >= RECHECK:
        return refresh()
    return False


def context() -> dict[str, str]:
    """The active span's trace context as message headers ({} when no span is active)."""
    if not ENABLED or not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def with_context(
    headers: dict[str, Any] | None, found: dict[str, str] | None = None
) -> dict[str, Any]:
    """`headers`, plus the trace context (`found`: looked up once for a batch of sends;
    else the active span's now)."""
    found = context() if found is None else found
    if not found:
        return headers or {}
    return {**(headers or {}), **found}


def _link(headers: dict[str, Any]) -> Any:
    """The link to the span context a message's headers carry, or None."""
    carrier = {k: v for k, v in headers.items() if k in TRACE_HEADERS and isinstance(v, str)}
    if "traceparent" not in carrier:
        return None
    span_context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None


def _attributes(run: Any) -> dict[str, Any]:
    source = run.delivery.source
    attributes: dict[str, Any] = {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.destination.name": source.topic or source.name,
        "messaging.message.id": run.envelope.id,
        "streamwork.task": run.task.name,
        "streamwork.attempt": run.envelope.attempt,
        "streamwork.delivery_count": run.delivery.delivery_count,
    }
    if source.topic is not None:
        attributes["messaging.consumer.group.name"] = source.group
    return attributes


@contextlib.contextmanager
def run_span(runs: Sequence[Any]) -> Iterator[Any]:
    """The span of one handler call on `runs` (one message, or a batch); None when off."""
    if not active():
        yield None
        return
    first = runs[0]
    links = [link for run in runs if (link := _link(run.envelope.headers)) is not None]
    attributes = _attributes(first)
    if len(runs) > 1:
        attributes["messaging.batch.message_count"] = len(runs)
        del attributes["messaging.message.id"]
    tracer = trace.get_tracer(_TRACER_NAME)
    # A new trace root: the run belongs to the consumer, linked to where each message came from.
    with tracer.start_as_current_span(
        f"{first.task.name} process",
        context=otel_context.Context(),
        kind=trace.SpanKind.CONSUMER,
        links=links,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def failed(span: Any, exc: BaseException) -> None:
    """Mark a batch's span failed by `exc` (its messages are then run alone)."""
    if span is not None:
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def record(span: Any, run: Any, outcome: Any) -> None:
    """Put a run's wait and outcome on its span: events for a retry or a dead letter."""
    if span is None:
        return
    if run.wait_ms >= 0:
        span.set_attribute("streamwork.queue_wait_ms", run.wait_ms)
    if outcome is None:
        return
    span.set_attribute("streamwork.outcome", outcome.kind)
    if outcome.kind == "retry":
        span.add_event(
            "retry",
            {"streamwork.attempt": run.envelope.attempt, "streamwork.due_ms": outcome.due_ms,
             "exception.message": outcome.error},
        )  # fmt: skip
    elif outcome.kind == "dead":
        span.add_event("dead_letter", {"exception.message": outcome.error})
    if outcome.kind in ("retry", "dead") or outcome.state == "failed":
        span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.error or outcome.kind))
