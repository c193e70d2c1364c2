"""OpenTelemetry (the otel extra), the same on Redis and on memory://, as the messaging
semantic conventions name them: a PRODUCER span `send QUEUE` per send whose context the
message carries (a many-send: one send span linked to a `create QUEUE` span per message);
each run a CONSUMER span `process QUEUE` linked to it, with the queue wait, retries and
dead letters as span events and `error.type` on failures; a CLIENT span `settle QUEUE` per
batch of outcomes written."""

import threading

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from streamwork import App, ConnectionFailed, Message
from streamwork._base import tracing
from streamwork.testing import free_port, run_until_idle

EXPORTER = InMemorySpanExporter()
_installed = threading.Lock()


@pytest.fixture
def spans():
    with _installed:
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
            trace.set_tracer_provider(provider)
    tracing.refresh()  # the process looks for a provider at most once a second otherwise
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def kind(exporter, name):
    return [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind[name]]


def consumer_spans(exporter):
    return kind(exporter, "CONSUMER")


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
    alone = charge.send(43)  # no span active: its send span is a trace of its own
    run_until_idle(app)

    sends = {s.attributes["messaging.message.id"]: s for s in kind(spans, "PRODUCER")}
    send = sends[handle.id]
    assert (
        send.name == "send default" and send.parent.span_id == checkout.get_span_context().span_id
    )
    assert send.attributes["messaging.system"] == "streamwork"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.operation.name"] == "send"
    assert send.attributes["messaging.destination.name"] == "default"
    assert "server.address" in send.attributes
    traceparent = headers[handle.id]["traceparent"].split("-")
    assert traceparent[1] == f"{checkout.get_span_context().trace_id:032x}"
    assert traceparent[2] == f"{send.context.span_id:016x}"  # the message carries the send span
    assert sends[alone.id].parent is None
    assert (
        headers[alone.id]["traceparent"].split("-")[2] == f"{sends[alone.id].context.span_id:016x}"
    )

    by_id = {s.attributes["messaging.message.id"]: s for s in consumer_spans(spans)}
    span = by_id[handle.id]
    assert span.name == "process default"
    assert [link.context.span_id for link in span.links] == [send.context.span_id]
    assert span.attributes["messaging.destination.name"] == "default"
    assert span.attributes["messaging.operation.type"] == "process"
    assert span.attributes["messaging.consumer.group.name"] == "workers"
    assert span.attributes["messaging.system"] == "streamwork"
    assert span.attributes["streamwork.task"] == "charge"
    assert span.attributes["streamwork.attempt"] == 1
    assert span.attributes["streamwork.queue_wait_ms"] >= 0
    assert span.attributes["streamwork.outcome"] == "done"
    assert [link.context.span_id for link in by_id[alone.id].links] == [
        sends[alone.id].context.span_id
    ]
    assert current[handle.id].span_id == span.context.span_id  # current in the handler
    card = [s for s in spans.get_finished_spans() if s.name == "card api"]
    assert span.context.span_id in {s.parent.span_id for s in card}  # a child of the run

    settles = [s for s in kind(spans, "CLIENT") if s.name == "settle default"]
    assert sum(s.attributes["messaging.batch.message_count"] for s in settles) == 2
    assert all(s.attributes["messaging.operation.type"] == "settle" for s in settles)


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
    assert first.attributes["error.type"] == second.attributes["error.type"] == "ConnectionError"
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


def test_send_many_and_publish_many_are_one_send_span_linked_to_a_create_span_per_message(
    app, spans
):
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
    creates = {s.context.span_id: s for s in kind(spans, "PRODUCER") if s.name.startswith("create")}
    carried = {int(h.split("-")[2], 16) for h in headers}
    assert carried == set(creates)  # each message its own create span
    sends = {s.name: s for s in kind(spans, "PRODUCER") if s.name.startswith("send")}
    assert set(sends) == {"send default", "send ticks"}
    assert sends["send default"].attributes["messaging.batch.message_count"] == 5
    linked = {link.context.span_id for s in sends.values() for link in s.links}
    assert linked == set(creates)
    ticks = [s for s in consumer_spans(spans) if s.name == "process ticks"]
    assert [s.attributes["messaging.consumer.group.name"] for s in ticks] == ["g"] * 3


def test_a_partitions_process_span_names_the_queue_and_its_partition(app, spans):
    app.queue("orders", partitions=3)

    @app.task(queue="orders")
    def place(n):
        pass

    place.send_with(args=(1,), partition_key="customer-7")
    run_until_idle(app)
    (span,) = consumer_spans(spans)
    assert span.name == "process orders"
    assert span.attributes["messaging.destination.partition.id"] in {"0", "1", "2"}


def test_a_send_that_fails_has_an_error_type(spans):
    app = App(f"redis://127.0.0.1:{free_port()}/0")
    job = app.task(name="job")(print)
    with pytest.raises(ConnectionFailed):
        job.send(1)
    (send,) = kind(spans, "PRODUCER")
    assert send.attributes["error.type"] == "ConnectionFailed"
    assert send.status.status_code == trace.StatusCode.ERROR
    assert send.attributes["server.port"] > 0
    app.close()


def test_a_workflow_is_one_send_span_its_steps_link_to(app, spans):
    from streamwork import chain

    @app.task
    def first(n):
        return n + 1

    @app.task(queue="second")
    def second(n):
        return n

    with trace.get_tracer("shop").start_as_current_span("checkout") as checkout:
        handle = chain(first.s(1), second.s()).send()
    run_until_idle(app)
    (send,) = kind(spans, "PRODUCER")
    assert (
        send.name == "send default" and send.parent.span_id == checkout.get_span_context().span_id
    )
    assert send.attributes["streamwork.workflow"] == handle.id
    assert send.attributes["messaging.batch.message_count"] == 1  # the first step
    assert "server.address" in send.attributes
    runs = {s.name: s for s in consumer_spans(spans)}
    assert set(runs) == {"process default", "process second"}
    (link,) = runs["process default"].links  # the first step carries the send span
    assert link.context.span_id == send.context.span_id
