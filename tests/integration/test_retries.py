"""Failures: retries with backoff, Retry and Reject, and dead letters with the traceback."""

import pytest

from streamwork import Backoff, Reject, Retry
from streamwork._base import protocol
from streamwork.ops.stats import queue_state
from streamwork.testing import WorkerThread, wait_until

FAST = Backoff(base=0.01, cap=0.05)


def dead_letters(client, app, queue="default"):
    return [
        protocol.decode_dead_letter(fields[b"m"])
        for _, fields in client.xrange(app.keys(queue).dead_letters)
    ]


def test_failed_task_is_retried_with_a_higher_attempt_and_the_same_id(app):
    attempts = []

    @app.task(bind=True, backoff=FAST)
    def flaky(message, n):
        attempts.append((message.id, message.attempt))
        if message.attempt < 3:
            raise ConnectionError("payment gateway down")

    handle = flaky.send(1)
    with WorkerThread(app):
        wait_until(lambda: len(attempts) == 3 and queue_state(app, "default").is_empty)
    assert attempts == [(handle.id, 1), (handle.id, 2), (handle.id, 3)]
    assert queue_state(app, "default").dead_letters == 0


def test_always_failing_task_is_dead_lettered_after_max_retries_plus_one(app, client):
    attempts = []

    @app.task(max_retries=2, backoff=FAST)
    def broken(order_id):
        attempts.append(order_id)
        raise ValueError(f"order {order_id} is malformed")

    handle = broken.send(42)
    with WorkerThread(app):
        wait_until(lambda: queue_state(app, "default").dead_letters == 1)
    assert attempts == [42, 42, 42]
    [letter] = dead_letters(client, app)
    assert letter.reason == "failed 3 attempts (max_retries=2)"
    assert (letter.error_type, letter.error) == ("ValueError", "order 42 is malformed")
    assert 'raise ValueError(f"order {order_id} is malformed")' in letter.traceback
    assert letter.attempts == 3 and letter.task_id == handle.id
    assert letter.first_failure_ms <= letter.last_failure_ms
    assert letter.worker
    assert protocol.decode(letter.message).attempt == 3
    assert queue_state(app, "default").is_empty


def test_exceptions_outside_retry_on_are_dead_lettered_at_once(app, client):
    attempts = []

    @app.task(retry_on=(ConnectionError,), backoff=FAST)
    def picky():
        attempts.append(1)
        raise KeyError("bug")

    picky.send()
    with WorkerThread(app):
        wait_until(lambda: queue_state(app, "default").dead_letters == 1)
    assert attempts == [1]
    assert dead_letters(client, app)[0].reason == "not retryable"


def test_reject_goes_straight_to_the_dead_letters(app, client):
    attempts = []

    @app.task(max_retries=5)
    def checks(amount):
        attempts.append(amount)
        raise Reject(f"amount {amount} over the limit")

    checks.send(10_000)
    with WorkerThread(app):
        wait_until(lambda: queue_state(app, "default").dead_letters == 1)
    assert attempts == [10_000]
    assert dead_letters(client, app)[0].reason == "rejected: amount 10000 over the limit"


def test_retry_with_delay_waits_that_long(app):
    starts = []

    @app.task(bind=True)
    def later(message):
        starts.append(protocol.now_ms())
        if message.attempt == 1:
            raise Retry(delay=0.4)

    later.send()
    with WorkerThread(app):
        wait_until(lambda: len(starts) == 2)
    assert starts[1] - starts[0] >= 400


def test_retry_counts_against_max_retries(app, client):
    @app.task(max_retries=1)
    def forever():
        raise Retry(delay=0)

    forever.send()
    with WorkerThread(app):
        wait_until(lambda: queue_state(app, "default").dead_letters == 1)
    assert dead_letters(client, app)[0].reason == "failed 2 attempts (max_retries=1)"


@pytest.mark.parametrize("is_async", [False, True])
def test_timeout_counts_as_a_failed_attempt(app, client, is_async):
    import asyncio
    import time

    if is_async:

        @app.task(timeout=0.2, max_retries=0)
        async def stuck():
            await asyncio.sleep(30)
    else:

        @app.task(timeout=0.2, max_retries=0)
        def stuck():
            time.sleep(0.5)

    stuck.send()
    with WorkerThread(app) as runner:
        wait_until(lambda: queue_state(app, "default").dead_letters == 1)
    assert dead_letters(client, app)[0].error_type == "HandlerTimeout"
    assert runner.worker.session.runner.timed_out_threads == (0 if is_async else 1)
