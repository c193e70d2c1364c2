"""Lifecycle events against a real redis-server: one per state change, written with it;
readers resume by id with no gap and no duplicate; they survive a Redis restart with AOF;
the stream's cap holds."""

import asyncio
import threading

import pytest

from streamwork import App
from streamwork._base import protocol
from streamwork.errors import ConfigurationError
from streamwork.testing import RedisServer, WorkerThread, drain, wait_until


def kinds(events, message_id):
    return [e.event for e in events if e.message_id == message_id]


def test_each_state_change_writes_one_event(redis_url):
    app = App(redis_url, events=True)
    started = threading.Event()

    @app.task(bind=True, max_retries=1, retry_on=(ConnectionError,))
    def job(message, n):
        message.progress(0.5, note="half")
        if n == 2:
            raise ConnectionError("flaky")
        if n == 3:
            raise ValueError("broken")

    @app.task
    async def slow():
        started.set()
        await asyncio.sleep(30)

    ok, retried, failed, dropped = job.send(1), job.send(2), job.send(3), job.send(4)
    assert dropped.cancel("duplicate") == "cancelled"
    running = slow.send()
    with WorkerThread(app):
        assert started.wait(10)
        running.cancel("user")
        wait_until(lambda: running.status().state == "cancelled")
        wait_until(lambda: failed.status().state == "failed" and ok.status().state == "done")
    events = app.read_events(count=1000)
    assert kinds(events, ok.id) == ["sent", "started", "progress", "done"]
    assert kinds(events, retried.id)[:4] == ["sent", "started", "progress", "retried"]
    assert kinds(events, failed.id) == ["sent", "started", "progress", "failed"]
    assert kinds(events, dropped.id) == ["sent", "cancelled"]  # once, though a worker saw it
    assert kinds(events, running.id) == ["sent", "started", "cancelled"]
    [failure] = [e for e in events if e.message_id == failed.id and e.event == "failed"]
    assert (failure.task, failure.attempt, failure.error) == ("job", 1, "ValueError: broken")
    assert failure.worker and failure.queue == "default"
    [progress] = [e for e in events if e.message_id == ok.id and e.event == "progress"]
    assert (progress.progress, progress.note) == (0.5, "half")
    [cancelled] = [e for e in events if e.message_id == dropped.id and e.event == "cancelled"]
    assert cancelled.error == "duplicate"


def test_a_reader_resumes_after_a_restart_with_no_gap_and_no_duplicate(redis_url):
    app = App(redis_url, events=["orders"])

    @app.task(queue="orders")
    def order(n):
        pass

    seen = []

    async def read(since, stop_after):
        async for event in app.events("orders", since=since):
            seen.append(event)
            if len(seen) == stop_after:
                break
        await app.aclose()

    order.send_many([(n,) for n in range(50)])
    asyncio.run(read("0", 20))  # a consumer reads 20, then stops (a restart)
    order.send_many([(n,) for n in range(50, 80)])
    asyncio.run(read(seen[-1].id, 80))  # resumes after the last id it saw
    expected = app.connection.redis.xrange(app.keys("orders").events)
    assert [e.id for e in seen] == [entry_id.decode() for entry_id, _ in expected]
    assert len({e.message_id for e in seen}) == 80


def test_since_dollar_sees_only_new_events_and_follow_blocks_for_them(redis_url):
    app = App(redis_url, events=True)

    @app.task
    def job():
        pass

    job.send()

    async def first_new():
        stream = app.events(since="$")
        reader = asyncio.ensure_future(stream.__anext__())
        client = app.connection.redis
        while not any("b" in c["flags"] for c in client.client_list()):
            await asyncio.sleep(0.01)  # until Redis shows the reader blocked
        assert not reader.done()  # blocked: nothing new yet
        await job.send_async()
        event = await asyncio.wait_for(reader, 10)
        await stream.aclose()
        await app.aclose()
        return event

    event = asyncio.run(first_new())
    assert event.event == "sent" and len(app.read_events()) == 2


def test_events_survive_a_redis_restart_with_aof():
    with RedisServer(["--appendonly", "yes", "--appendfsync", "always"]) as server:
        app = App(server.url, events=True)

        @app.task
        def job(n):
            pass

        job.send_many([(n,) for n in range(10)])
        drain(app)
        before = [e.id for e in app.read_events(count=1000)]
        server.restart()
        app.connection.close()
        assert [e.id for e in app.read_events(count=1000)] == before and len(before) == 30
        app.close()


def test_the_cap_holds(redis_url):
    app = App(redis_url, events=True, events_max_len=200)

    @app.task
    def job(n):
        pass

    job.send_many([(n,) for n in range(3000)])
    length = app.connection.redis.xlen(app.keys("default").events)
    assert 200 <= length < 400  # approximate trimming: whole stream nodes (100 entries)


def test_events_are_off_by_default_and_reading_them_says_how_to_turn_them_on(app):
    @app.task
    def job():
        pass

    job.send()
    drain(app)
    assert not app.connection.redis.exists(app.keys("default").events)
    with pytest.raises(ConfigurationError, match="create it with events=True"):
        app.read_events()
    with pytest.raises(ConfigurationError, match="'default' records no events"):
        app.read_events("default")


def test_since_a_datetime(redis_url):
    from datetime import datetime, timezone

    app = App(redis_url, events=True)

    @app.task
    def job():
        pass

    job.send()
    middle = datetime.fromtimestamp((protocol.now_ms() + 5) / 1000, timezone.utc)
    wait_until(lambda: protocol.now_ms() > middle.timestamp() * 1000 + 5)
    later = job.send()
    assert [e.message_id for e in app.read_events(since=middle)] == [later.id]


def test_a_replayed_dead_letter_is_queued_again_with_a_replayed_event(redis_url):
    from streamwork import Reject
    from streamwork.ops import dead_letters

    app = App(redis_url, events=True)
    calls = []

    @app.task
    def picky():
        calls.append(1)
        if len(calls) == 1:
            raise Reject("not yet")

    handle = picky.send()
    drain(app)
    assert handle.status().state == "dead"
    report = dead_letters.replay(app.connection, app.queue_source("default"))
    assert report.replayed == 1
    assert (handle.status().state, handle.status().error) == ("queued", None)
    drain(app)
    assert handle.status().state == "done"
    events = kinds(app.read_events(count=100), handle.id)
    assert events == ["sent", "started", "dead", "replayed", "started", "done"]


def test_schedule_ticks_and_triggers_write_sent_events(redis_url):
    app = App(redis_url, events=True)

    @app.task
    def report():
        pass

    app.add_schedule("hourly", report, every=3600)
    message_id = app.trigger_schedule("hourly")
    protocol.advance_clock(3_600_500)
    try:
        drain(app)  # its ticker enqueues the tick now due; the worker runs both
    finally:
        protocol.reset_clock()
    events = app.read_events(count=100)
    sent = [e.message_id for e in events if e.event == "sent"]
    assert sent[0] == message_id and len(sent) == 2
    assert kinds(events, sent[1]) == ["sent", "started", "done"]


def test_subscriber_groups_record_their_own_events(redis_url):
    app = App(redis_url, events=["orders.created/billing"])
    seen = []

    @app.subscriber("orders.created", group="billing", max_retries=1)
    def bill(message):
        seen.append(message.payload)
        if message.payload == "bad" and message.attempt == 1:
            raise ConnectionError("later")

    @app.subscriber("orders.created", group="audit")
    def audit(message):
        pass

    stream = app.topic_keys("orders.created").stream
    with WorkerThread(app):
        wait_until(
            lambda: (
                app.connection.redis.exists(stream)
                and len(app.connection.redis.xinfo_groups(stream)) == 2
            ),
            message="both groups created",
        )
        app.publish("orders.created", "ok")
        app.publish("orders.created", "bad")
        wait_until(lambda: seen.count("bad") == 2, timeout=10)
        wait_until(lambda: len(app.read_events(count=100)) >= 6)
    events = app.read_events(count=100)
    assert {e.queue for e in events} == {"orders.created/billing"}  # audit records none
    by_message = {}
    for event in events:
        by_message.setdefault(event.message_id, []).append(event.event)
    assert sorted(by_message.values()) == [
        ["started", "done"],
        ["started", "retried", "started", "done"],
    ]
    assert app.read_events("orders.created/billing", count=100) == events
