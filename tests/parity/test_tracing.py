"""OpenTelemetry (the otel extra), the same on Redis and on memory://: a send inside a span
carries its trace context in the message's headers; each run is a CONSUMER span linked to
it, with the queue wait, and retries and dead letters as span events."""

import threading

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from streamwork import Message
from streamwork.testing import run_until_idle

EXPORTER = InMemorySpanExporter()
_installed = threading.Lock()


@pytest.fixture
def spans():
    with _installed:
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
            trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def consumer_spans(exporter):
    return [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.CONSUMER]


def test_trace_context_travels_from_send_to_the_run(app, spans):
    headers, current = {}, {}

    @app.task(bind=True)
    def charge(message: Message, order: int) -> None:
        headers[message.id] = dict(message.headers)
        current[message.id] = trace.get_current_span().get_span_context()  # in its thread
        with trace.get_tracer("shop").start_as_current_span("card api"):
            pass

    with trace.get_tracer("shop").start_as_current_span("checkout") as checkout:
        handle = charge.send(42)
    untraced = charge.send(43)  # no span active: no trace headers
    run_until_idle(app)

    assert headers[handle.id]["traceparent"].split("-")[1] == (
        f"{checkout.get_span_context().trace_id:032x}"
    )
    assert "traceparent" not in headers[untraced.id]
    by_id = {s.attributes["messaging.message.id"]: s for s in consumer_spans(spans)}
    span = by_id[handle.id]
    assert span.name == "charge process"
    assert [link.context.trace_id for link in span.links] == [checkout.get_span_context().trace_id]
    assert span.attributes["messaging.destination.name"] == "default"
    assert span.attributes["streamwork.attempt"] == 1
    assert span.attributes["streamwork.queue_wait_ms"] >= 0
    assert span.attributes["streamwork.outcome"] == "done"
    assert by_id[untraced.id].links == ()
    assert current[handle.id].span_id == span.context.span_id  # current in the handler
    card = [s for s in spans.get_finished_spans() if s.name == "card api"]
    assert span.context.span_id in {s.parent.span_id for s in card}  # a child of the run


def test_retries_and_dead_letters_are_span_events(app, spans):
    @app.task(max_retries=1)
    def flaky() -> None:
        raise ConnectionError("card network down")

    with trace.get_tracer("shop").start_as_current_span("checkout"):
        flaky.send()
    run_until_idle(app, advance_time=True)
    first, second = sorted(consumer_spans(spans), key=lambda s: s.attributes["streamwork.attempt"])
    assert [e.name for e in first.events] == ["retry"]
    assert "card network down" in first.events[0].attributes["exception.message"]
    assert [e.name for e in second.events] == ["dead_letter"]
    assert second.status.status_code == trace.StatusCode.ERROR
    assert first.links[0].context.trace_id == second.links[0].context.trace_id


def test_a_batch_is_one_span_linked_to_each_message(app, spans):
    @app.task(batch_size=10)
    def store(messages):
        pass

    tracer = trace.get_tracer("sensors")
    for n in range(3):
        with tracer.start_as_current_span(f"reading {n}"):
            store.send(n)
    run_until_idle(app)
    (span,) = consumer_spans(spans)
    assert span.attributes["messaging.batch.message_count"] == 3
    assert len(span.links) == 3 and len({link.context.trace_id for link in span.links}) == 3


def test_send_many_and_publish_many_carry_the_context_on_every_message(app, spans):
    headers = []

    @app.task(bind=True)
    def job(message, n):
        headers.append(message.headers.get("traceparent", ""))

    @app.subscriber("ticks", group="g", start="beginning")
    def tick(message):
        headers.append(message.headers.get("traceparent", ""))

    with trace.get_tracer("shop").start_as_current_span("import") as span:
        job.send_many([(n,) for n in range(5)])
        app.publish_many("ticks", list(range(3)))
    run_until_idle(app)
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert len(headers) == 8 and all(h.split("-")[1] == trace_id for h in headers)
