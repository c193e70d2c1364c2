"""OpenTelemetry (the `otel` extra): spans that follow the messaging semantic conventions.

- Send: a PRODUCER span `send QUEUE` (or `send TOPIC`) per send, current while the message
  is built, so the message carries its context (W3C `traceparent`, `tracestate`,
  `baggage` headers). A many-send is one `send QUEUE` span with a link to a `create QUEUE`
  span per message, whose context that message carries; a workflow's send is one span its
  first steps carry. With tracing off, a send carries the caller's active span context, if
  any.
- Process: each handler call is a CONSUMER span `process QUEUE` (a batch: one span),
  linked to the context each message carried (a link, not a parent: the producer's trace
  may have ended long before); a retry and a dead letter are span events; a failure sets
  the span's status and `error.type`. The span is current while the handler runs (sync
  handlers too, in their thread), so spans the handler makes are its children.
- Settle: a CLIENT span `settle QUEUE` per batch of outcomes written with their XACKs.

`messaging.system` is "streamwork": the registry's values name brokers (kafka, rabbitmq…)
and its "redis" is a database value, which redis-py's own instrumentation uses for the
commands underneath; queues, groups, retries and dead letters are streamwork's semantics.

Runs and outcomes are _worker/runs.py's `Run` and `Outcome` (typed Any here: that module
imports this module, and the package has no import circles). Everything here is a no-op
when opentelemetry-api is not installed, and nothing gets a span until a TracerProvider is
set (`trace.set_tracer_provider`, as the SDK's setup does). It never decides an outcome
and never talks to Redis.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed
    trace = None  # type: ignore[assignment]

ENABLED = trace is not None
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
_TRACER_NAME = "streamwork"
SYSTEM = "streamwork"
"""`messaging.system` (see the module's docstring for why not "redis")."""
_OFF = contextlib.nullcontext()


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


def _operation(operation: str, destination: str, server: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": destination,
        **server,
    }


def _source_attributes(operation: str, source: Any, server: Mapping[str, Any]) -> dict[str, Any]:
    attributes = _operation(operation, source.topic or source.queue, server)
    attributes["messaging.consumer.group.name"] = source.group
    if source.partition is not None:
        attributes["messaging.destination.partition.id"] = str(source.partition)
    return attributes


def _attributes(run: Any, server: Mapping[str, Any]) -> dict[str, Any]:
    attributes = _source_attributes("process", run.delivery.source, server)
    attributes["messaging.message.id"] = run.envelope.id
    attributes["streamwork.task"] = run.task.name
    attributes["streamwork.attempt"] = run.envelope.attempt
    attributes["streamwork.delivery_count"] = run.delivery.delivery_count
    return attributes


@contextlib.contextmanager
def _span(name: str, kind: Any, attributes: dict[str, Any], **options: Any) -> Iterator[Any]:
    """A span current in its block; an exception out of it sets `error.type` and the
    span's status."""
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        name,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
        **options,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            failed(span, exc)
            raise


def send_span(
    destination: str, server: Mapping[str, Any], batch: Creations | None = None
) -> contextlib.AbstractContextManager[Any]:
    """The PRODUCER span `send DESTINATION` of one send (current while its message is
    built, so the message carries its context), or of a many-send (`batch`: linked to each
    message's create span); a no-op context when tracing is off."""
    if not active():
        return _OFF
    attributes = _operation("send", destination, server)
    links: list[Any] = []
    if batch is not None:
        attributes["messaging.batch.message_count"] = len(batch.links)
        links = batch.links
    return _span(f"send {destination}", trace.SpanKind.PRODUCER, attributes, links=links)


class Planned(Protocol):
    """A send's plan, as the spans see it (`_send/producer.py`'s Plan)."""

    @property
    def ids(self) -> Sequence[str]: ...


P = TypeVar("P", bound=Planned)


class _Made(contextlib.AbstractContextManager[Any]):
    """A plan made with tracing off: the block just gets it (no generator per send)."""

    __slots__ = ("plan",)

    def __init__(self, plan: Any) -> None:
        self.plan = plan

    def __enter__(self) -> Any:
        return self.plan

    def __exit__(self, *exc: object) -> None:
        return None


def planned_send(
    destination: str, server: Mapping[str, Any], plan: Callable[[], P]
) -> contextlib.AbstractContextManager[P]:
    """The plan of one send, made inside its send span so that its message carries the
    span's context; the block writes it, inside the span too."""
    if not active():
        return _Made(plan())
    return _traced_send(destination, server, plan)


@contextlib.contextmanager
def _traced_send(destination: str, server: Mapping[str, Any], plan: Callable[[], P]) -> Iterator[P]:
    with send_span(destination, server) as span:
        made = plan()
        yield made
        sent(span, made.ids[0])  # known once it is written (an id read off its entry)


def planned_many(
    destination: str, server: Mapping[str, Any], plan: Callable[[Creations], P]
) -> contextlib.AbstractContextManager[P]:
    """The plan of a many-send, each message with its create span's context (or the
    caller's, tracing off); the block writes it inside the batch's send span, linked to
    them."""
    creations = Creations(destination, server)
    made = plan(creations)
    if not creations.is_active:
        return _Made(made)
    return _traced_many(destination, server, creations, made)


@contextlib.contextmanager
def _traced_many(
    destination: str, server: Mapping[str, Any], creations: Creations, made: P
) -> Iterator[P]:
    with send_span(destination, server, creations):
        yield made


def retarget(
    span: Any, destination: str, count: int, workflow: str, server: Mapping[str, Any]
) -> None:
    """Name a workflow's send span once its first steps are known: their queue(s), how many
    messages, the workflow's id (every step carries this span's context)."""
    if span is not None:
        span.set_attributes(dict(server))
        span.update_name(f"send {destination}")
        span.set_attribute("messaging.destination.name", destination)
        span.set_attribute("messaging.batch.message_count", count)
        span.set_attribute("streamwork.workflow", workflow)


def sent(span: Any, message_id: str) -> None:
    """Name the message a single send's span sent."""
    if span is not None:
        span.set_attribute("messaging.message.id", message_id)


class Creations:
    """The trace context each message of a many-send carries: with tracing on, that of a
    `create DESTINATION` span per message (the batch's send span links to them); else the
    caller's active span context, looked up once for the batch."""

    def __init__(self, destination: str, server: Mapping[str, Any]) -> None:
        self.links: list[Any] = []
        self.is_active = active()
        self._found = {} if self.is_active else context()
        if self.is_active:
            self._attributes = _operation("create", destination, server)
            self._name = f"create {destination}"

    def next(self) -> dict[str, str]:
        if not self.is_active:
            return self._found
        tracer = trace.get_tracer(_TRACER_NAME)
        span = tracer.start_span(
            self._name, kind=trace.SpanKind.PRODUCER, attributes=self._attributes
        )
        span.end()
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        self.links.append(trace.Link(span.get_span_context()))
        return carrier


def run_span(
    runs: Sequence[Any], server: Mapping[str, Any]
) -> contextlib.AbstractContextManager[Any]:
    """The span of one handler call on `runs` (one message, or a batch); None when off."""
    if not active():
        return _OFF
    first = runs[0]
    links = [link for run in runs if (link := _link(run.envelope.headers)) is not None]
    attributes = _attributes(first, server)
    if len(runs) > 1:
        attributes["messaging.batch.message_count"] = len(runs)
        del attributes["messaging.message.id"]
    # A new trace root: the run belongs to the consumer, linked to where each message came from.
    return _span(
        f"process {attributes['messaging.destination.name']}",
        trace.SpanKind.CONSUMER,
        attributes,
        context=otel_context.Context(),
        links=links,
    )


def settle_span(
    source: Any, count: int, server: Mapping[str, Any]
) -> contextlib.AbstractContextManager[Any]:
    """The CLIENT span `settle QUEUE` of one batch of outcomes written with their XACKs."""
    if not active():
        return _OFF
    attributes = _source_attributes("settle", source, server)
    attributes["messaging.batch.message_count"] = count
    return _span(
        f"settle {attributes['messaging.destination.name']}",
        trace.SpanKind.CLIENT,
        attributes,
        context=otel_context.Context(),
    )


def failed(span: Any, exc: BaseException) -> None:
    """Mark a span failed by `exc` (a batch's: its messages are then run alone)."""
    if span is not None:
        span.set_attribute("error.type", type(exc).__qualname__)
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
        error = outcome.error or outcome.kind
        span.set_attribute("error.type", _error_type(error, outcome.kind))
        span.set_status(trace.Status(trace.StatusCode.ERROR, error))


def _error_type(error: str, kind: str) -> str:
    """An outcome's `error.type`: the exception's class ("ValueError: ..."), else the
    outcome's kind (a rejection's reason is free text: too many values for a type)."""
    name = error.partition(":")[0]
    return name if name.replace(".", "").isidentifier() else kind
