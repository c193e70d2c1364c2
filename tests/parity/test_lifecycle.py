"""Status, cancellation and progress behave the same on Redis and on memory://."""

import pytest

from streamwork import ConfigurationError, ResultTimeout, StreamworkError, TaskCancelled
from streamwork._base import protocol
from streamwork.testing import run_until_idle


def test_status_follows_a_message_to_done_and_through_retries(app):
    calls = []

    @app.task(bind=True, max_retries=2)
    def flaky(message):
        calls.append(message.attempt)
        message.progress(0.25 * message.attempt, note=f"attempt {message.attempt}")
        if message.attempt < 3:
            raise ConnectionError("not yet")

    handle = flaky.send()
    assert handle.status().state == "queued"
    run_until_idle(app)
    retrying = handle.status()
    assert (retrying.state, retrying.attempts) == ("retrying", 1)
    assert retrying.error == "ConnectionError: not yet"
    run_until_idle(app, advance_time=True)
    done = handle.status()
    assert (done.state, done.attempts, done.progress, done.note) == ("done", 3, 0.75, "attempt 3")
    assert calls == [1, 2, 3]


def test_cancelled_messages_never_run(app):
    ran = []

    @app.task
    def job(n):
        ran.append(n)

    queued, delayed, kept = job.send(1), job.send_with(args=(2,), delay=60), job.send(3)
    assert queued.cancel("dup") == "cancelled"
    assert delayed.cancel() == "cancelled"
    summary = run_until_idle(app, advance_time=True)
    assert ran == [3] and summary.ran == 1
    assert [h.status().state for h in (queued, delayed, kept)] == ["cancelled"] * 2 + ["done"]
    assert queued.status().error == "dup"
    assert kept.cancel() == "finished"
    assert app.handle(job, protocol.new_id()).cancel() == "unknown"


def test_events_record_each_state_change(app):
    from streamwork import App

    events_app = App(app.url, events=True)
    ran = []

    @events_app.task(max_retries=1)
    def job(n):
        ran.append(n)
        if n == 2 and len(ran) < 3:
            raise ConnectionError("again")

    first, second, dropped = job.send(1), job.send(2), job.send(3)
    dropped.cancel()
    run_until_idle(events_app, advance_time=True)
    events = events_app.read_events(count=100)
    by_message = {}
    for event in events:
        by_message.setdefault(event.message_id, []).append(event.event)
    assert by_message[first.id] == ["sent", "started", "done"]
    assert by_message[second.id] == ["sent", "started", "retried", "started", "done"]
    assert by_message[dropped.id] == ["sent", "cancelled"]
    resumed = events_app.read_events(since=events[2].id, count=100)
    assert [e.id for e in resumed] == [e.id for e in events[3:]]


def test_the_result_of_a_cancelled_message_is_task_cancelled_at_once(app):
    @app.task(store_result=True)
    def add(x, y):
        return x + y

    queued, delayed, kept = add.send(1, 1), add.send_with(args=(2, 2), delay=60), add.send(3, 3)
    queued.cancel("not needed")
    delayed.cancel()
    # a cancelled message never has a result: no waiting out the 30 s (ResultTimeout)
    with pytest.raises(TaskCancelled, match="was cancelled: not needed") as raised:
        queued.result(timeout=30)
    assert raised.value.reason == "not needed" and isinstance(raised.value, StreamworkError)
    with pytest.raises(TaskCancelled):
        delayed.result(timeout=30)
    run_until_idle(app, advance_time=True)
    assert kept.result(timeout=None) == 6  # None: no limit
    with pytest.raises(ResultTimeout):
        add.send(4, 4).result(timeout=0.2)
    with pytest.raises(ConfigurationError, match="timeout must be seconds >= 0 or None"):
        kept.result(timeout=-1)


def test_a_plain_message_runs_without_a_start_step_and_keeps_its_lifecycle(app):
    """Recorded messages (no start step): cancelled while queued they leave the stream at
    once; delivered, they read running (from the pending entries list) and are cancelled
    as running ones; their outcome writes the attempt and the worker."""
    ran = []

    @app.task
    def job(n):
        ran.append(n)

    client = app.connection.redis
    source = app.queue_source("default")
    keep, drop, taken = job.send(1), job.send(2), job.send(3)
    assert drop.cancel() == "cancelled" and client.xlen(source.stream) == 2
    client.xgroup_create(source.stream, source.group, "0", mkstream=True)
    client.xreadgroup(source.group, "elsewhere", {source.stream: ">"}, count=1)  # keep's
    running = keep.status()
    assert (running.state, running.worker, running.attempts) == ("running", "elsewhere", 1)
    assert keep.cancel() == "cancelling"
    assert taken.status().state == "queued"
    run_until_idle(app)
    assert ran == [3]
    done = taken.status()
    assert (done.state, done.attempts) == ("done", 1) and done.worker not in (None, "elsewhere")
    # its status is the compact record now (lua/_status.lua): read, cancelled, as the hash was
    assert done.task == job.name and done.updated_at is not None
    assert taken.cancel() == "finished" and taken.status() == done


def test_a_message_sent_by_entry_is_found_from_its_id_alone(app):
    """A plain send writes its entry alone; its id (the entry's) finds it, names its task,
    and a cancel before any worker read it keeps it from running."""
    ran = []

    @app.task(queue="mail")
    def job(n):
        ran.append(n)

    kept, dropped = job.send(1), job.send(2)
    queued = app.handle(kept.id).status()  # the id alone: its queue is read off it
    assert (queued.state, queued.task, queued.attempts) == ("queued", job.name, 0)
    assert dropped.cancel("no") == "cancelled"
    cancelled = dropped.status()
    assert (cancelled.state, cancelled.task, cancelled.error) == ("cancelled", job.name, "no")
    run_until_idle(app)
    assert ran == [1] and kept.status().state == "done"
    assert app.handle(job, protocol.new_id()).status().state == "unknown"
