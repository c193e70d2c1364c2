"""Behaviour that must be the same on Redis and on memory:// (see conftest.py)."""

import pytest

from streamwork import Reject, Retry, TaskFailed
from streamwork._base.settings import WorkerSettings
from streamwork.ops import dead_letters
from streamwork.ops.stats import queue_state, topic_states
from streamwork.testing import run_until_idle, wait_until


def test_a_sent_task_runs_and_its_result_is_stored(app):
    @app.task(store_result=True)
    def add(a, b):
        return a + b

    handle = add.send(2, 3)
    summary = run_until_idle(app)
    assert handle.result(timeout=1) == 5
    assert (summary.done, summary.by_task["add"]["done"]) == (1, 1)
    assert queue_state(app, "default").is_empty


def test_failures_are_retried_with_backoff_then_succeed(app):
    attempts = []

    @app.task(max_retries=3)
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("not yet")

    flaky.send()
    assert run_until_idle(app).retried == 1  # the retry is delayed: not run without the clock
    summary = run_until_idle(app, advance_time=True)
    assert len(attempts) == 3 and summary.done == 1 and summary.retried == 1


def test_retry_and_reject_steer_the_message(app):
    runs = []

    @app.task(max_retries=5)
    def later():
        runs.append("later")
        if runs.count("later") == 1:
            raise Retry(delay=600)

    @app.task
    def refuse():
        raise Reject("not for us")

    later.send()
    refuse.send()
    summary = run_until_idle(app, advance_time=True)
    assert runs == ["later", "later"]
    assert summary.by_task["refuse"]["dead"] == 1
    [entry] = dead_letters.list_dead_letters(app.connection, app.queue_source("default"))
    assert entry.letter.reason == "rejected: not for us"


def test_dead_letters_keep_the_error_and_replay_runs_them_again(app):
    broken = [True]

    @app.task(max_retries=0, store_result=True)
    def charge(order):
        if broken[0]:
            raise ValueError(f"card declined for {order}")
        return "charged"

    handle = charge.send(7)
    run_until_idle(app)
    with pytest.raises(TaskFailed, match="card declined for 7"):
        handle.result(timeout=1)
    source = app.queue_source("default")
    [entry] = dead_letters.list_dead_letters(app.connection, source)
    assert entry.letter.error_type == "ValueError" and "raise ValueError" in entry.letter.traceback
    broken[0] = False
    assert dead_letters.replay(app.connection, source).replayed == 1
    run_until_idle(app)
    assert handle.result(timeout=1) == "charged"
    assert dead_letters.count(app.connection, source) == 0


def test_delayed_messages_wait_for_their_time(app):
    runs = []

    @app.task
    def remind(n):
        runs.append(n)

    remind.send_with(args=(1,), delay=3600)
    remind.send(2)
    run_until_idle(app)
    assert runs == [2] and queue_state(app, "default").delayed == 1
    run_until_idle(app, advance_time=True)
    assert runs == [2, 1]


def test_an_idempotency_key_queues_once(app):
    runs = []

    @app.task
    def pay(order):
        runs.append(order)

    first = pay.send_with(args=(42,), key="order-42")
    again = pay.send_with(args=(42,), key="order-42")
    assert again.is_duplicate and again.id == first.id and not first.is_duplicate
    run_until_idle(app)
    assert runs == [42]


def test_every_subscriber_group_gets_every_event(app):
    seen = []

    @app.subscriber("orders.created", group="billing", start="beginning")
    def bill(message):
        seen.append(("billing", message.payload["id"]))

    @app.subscriber("orders.created", group="shipping", start="beginning")
    def ship(message):
        seen.append(("shipping", message.payload["id"]))

    app.publish_many("orders.created", [{"id": 1}, {"id": 2}])
    run_until_idle(app)
    assert sorted(seen) == [("billing", 1), ("billing", 2), ("shipping", 1), ("shipping", 2)]
    [topic] = topic_states(app, ["orders.created"])
    assert {g.group: g.lag for g in topic.groups} == {"billing": 0, "shipping": 0}


def test_manual_ack_and_nack(app):
    @app.task(ack_mode="manual", bind=True, max_retries=0)
    def handle(message, keep):
        if keep:
            message.ack()
        else:
            message.nack(requeue=False, reason="refused by hand")

    handle.send(True)
    handle.send(False)
    summary = run_until_idle(app)
    assert (summary.done, summary.dead) == (1, 1)
    [entry] = dead_letters.list_dead_letters(app.connection, app.queue_source("default"))
    assert entry.letter.reason == "refused by hand"


def test_a_dead_consumers_entries_are_claimed_and_run(app):
    runs = []

    @app.task
    def job(n):
        runs.append(n)

    job.send(1)
    source = app.queue_source("default")
    client = app.connection.redis
    client.xgroup_create(source.stream, source.group, id="0", mkstream=True)
    client.xreadgroup(source.group, "dead-worker", {source.stream: ">"}, count=1)

    def idle_ms():
        [entry] = client.xpending_range(source.stream, source.group, "-", "+", 1)
        return entry["time_since_delivered"] >= 300

    wait_until(idle_ms, timeout=5, message="the dead worker's entry to be idle 300 ms")
    summary = run_until_idle(app, settings=WorkerSettings(block=0.05, visibility_timeout=0.3))
    assert runs == [1] and summary.done == 1
    assert queue_state(app, "default").is_empty


def test_waiting_for_a_result_that_never_comes_times_out_on_time(app):
    import time

    from streamwork import ResultTimeout

    @app.task(store_result=True, queue="unserved")
    def never():
        return 1

    handle = never.send()
    started = time.monotonic()
    with pytest.raises(ResultTimeout):
        handle.result(timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2


def test_a_result_written_while_the_caller_waits_wakes_it(app):
    import threading

    @app.task(store_result=True)
    def square(n):
        return n * n

    handle = square.send(9)
    runner = threading.Timer(0.2, lambda: run_until_idle(app))
    runner.start()
    try:
        assert handle.result(timeout=10) == 81  # blocked in BLMOVE when the result came
    finally:
        runner.join(10)


def test_a_timed_out_handlers_dead_letter_names_its_limit(app):
    import asyncio

    @app.task(max_retries=0, timeout=0.05)
    async def slow():
        await asyncio.sleep(5)

    @app.task(max_retries=0)
    async def calls_out():
        raise TimeoutError("the payment API did not answer")  # its own: kept as it is

    slow.send(), calls_out.send()
    run_until_idle(app)
    letters = dead_letters.list_dead_letters(app.connection, app.queue_source("default"))
    said = sorted(f"{e.letter.reason} — {e.letter.error_type}: {e.letter.error}" for e in letters)
    assert said == [
        "failed 1 attempt (max_retries=0) — HandlerTimeout: the handler ran past its timeout=0.05s",
        "failed 1 attempt (max_retries=0) — TimeoutError: the payment API did not answer",
    ]
