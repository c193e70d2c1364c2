"""Batch handlers (`batch_size`, `batch_wait`) behave the same on Redis and on memory://:
they receive lists, their messages are settled one by one, and one bad message never takes
its batch down with it."""

import asyncio

import pytest

from streamwork import ConfigurationError, chain
from streamwork.testing import run_until_idle


def test_messages_arrive_in_batches_of_batch_size(app):
    batches = []

    @app.task(batch_size=5, batch_wait=30)
    def store(messages):
        batches.append([m.args[0] for m in messages])

    handles = [store.send(n) for n in range(12)]
    summary = run_until_idle(app)  # a drained burst run does not wait the 30 s to fill
    assert batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert summary.done == 12
    assert {h.status().state for h in handles} == {"done"}
    assert app.connection.redis.xlen(app.keys("default").stream) == 0


def test_a_batch_that_raises_is_split_and_only_the_bad_message_fails(app):
    calls = []

    @app.task(batch_size=10, max_retries=0)
    def store(messages):
        calls.append([m.args[0] for m in messages])
        if any(m.args[0] == "bad" for m in messages):
            raise ValueError("unreadable sensor value")

    readings = [1, 2, 3, "bad", 5, 6]
    handles = [store.send(value) for value in readings]
    summary = run_until_idle(app)
    assert calls[0] == readings  # the whole batch, then each message alone
    assert sorted(map(str, calls[1:])) == sorted(str([value]) for value in readings)
    assert (summary.done, summary.dead) == (5, 1)
    states = {h.id: h.status().state for h in handles}
    assert states[handles[3].id] == "failed"
    assert [s for i, s in states.items() if i != handles[3].id] == ["done"] * 5
    assert app.connection.redis.xlen(app.keys("default").dead_letters) == 1


def test_a_batch_of_one_that_raises_is_retried_like_any_message(app):
    attempts = []

    @app.task(batch_size=10, max_retries=2)
    def store(messages):
        (message,) = messages
        attempts.append(message.attempt)
        if message.attempt < 3:
            raise ConnectionError("database away")

    handle = store.send("only")
    run_until_idle(app, advance_time=True)
    assert attempts == [1, 2, 3]
    assert handle.status().state == "done"


def test_the_handler_settles_messages_of_its_batch_one_by_one(app):
    calls = []

    @app.task(batch_size=10, max_retries=0)
    def store(messages):
        calls.append(len(messages))
        for message in messages:
            if message.args[0] < 0:
                message.nack(requeue=False, reason=f"negative reading {message.args[0]}")
            elif message.args[0] == 0:
                message.ack()  # settled early: the rest of the batch decides nothing for it

    handles = [store.send(value) for value in (4, -1, 0, 7)]
    summary = run_until_idle(app)
    assert calls == [4]  # not split: the handler returned
    assert summary.done == 3 and summary.dead == 1
    assert handles[1].status().state == "dead"
    (letter,) = app.connection.redis.xrange(app.keys("default").dead_letters)
    assert b"negative reading -1" in letter[1][b"m"]


def test_a_batch_that_raises_after_settling_some_splits_only_the_others(app):
    calls = []

    @app.task(batch_size=10, max_retries=0)
    def store(messages):
        calls.append([m.args[0] for m in messages])
        if len(messages) > 1:
            messages[0].ack()
            raise RuntimeError("half-way")

    for value in ("a", "b", "c"):
        store.send(value)
    summary = run_until_idle(app)
    assert calls == [["a", "b", "c"], ["b"], ["c"]]
    assert summary.done == 3 and summary.dead == 0


def test_manual_ack_mode_batches(app):
    @app.task(batch_size=10, ack_mode="manual")
    def store(messages):
        for message in messages:
            if message.args[0] % 2 == 0:
                message.ack()

    for n in range(4):
        store.send(n)
    summary = run_until_idle(app)
    assert summary.done == 2
    pending = app.connection.redis.xpending(app.keys("default").stream, "workers")
    assert pending["pending"] == 2  # not acked: delivered again after the visibility timeout


def test_auto_ack_mode_batches_are_acknowledged_before_they_run(app):
    pending_seen = []

    @app.task(batch_size=10, ack_mode="auto")
    def store(messages):
        summary = app.connection.redis.xpending(app.keys("default").stream, "workers")
        pending_seen.append((len(messages), summary["pending"]))

    for n in range(3):
        store.send(n)
    run_until_idle(app)
    assert pending_seen == [(3, 0)]


def test_async_batch_handlers_and_subscriber_batches(app):
    stored = []

    @app.subscriber("readings", group="store", batch_size=3, start="beginning")
    async def store(messages):
        await asyncio.sleep(0)
        stored.append([m.payload["t"] for m in messages])

    for t in range(7):
        app.publish("readings", {"t": t})
    run_until_idle(app)
    assert stored == [[0, 1, 2], [3, 4, 5], [6]]


def test_batch_tasks_take_any_arguments_and_refuse_what_does_not_fit(app):
    @app.task(batch_size=3)
    def store(messages):
        pass

    store.send(1, 2, key="x")  # the handler takes the Messages: any arguments travel
    with pytest.raises(ConfigurationError, match="cannot be a step of a workflow"):
        chain(store.s(1), store.s(2))
    for options, said in [
        ({"batch_size": 0}, "batch_size must be a whole number >= 1"),
        ({"batch_wait": 1.0}, "batch_wait needs a batch_size"),
        ({"batch_size": 5, "batch_wait": -1}, "batch_wait must be >= 0"),
        ({"batch_size": 5, "store_result": True}, "takes no store_result"),
        ({"batch_size": 5, "rate_limit": "1/s"}, "takes no rate_limit"),
        ({"batch_size": 5, "concurrency_limit": 2}, "takes no concurrency_limit"),
        ({"batch_size": 5, "bind": True}, "takes no bind=True"),
    ]:
        with pytest.raises(ConfigurationError, match=said):
            app.task(name=f"t{len(said)}", **options)(lambda messages: None)
    with pytest.raises(ConfigurationError, match="exactly one argument"):
        app.task(name="two", batch_size=5)(lambda a, b: None)


def test_a_cancelled_message_never_reaches_its_batch(app):
    batches = []

    @app.task(batch_size=10)
    def store(messages):
        batches.append([m.args[0] for m in messages])

    handles = [store.send(n) for n in range(3)]
    handles[1].cancel()
    run_until_idle(app)
    assert batches == [[0, 2]]
    assert handles[1].status().state == "cancelled"
