"""The Runner's decisions, without Redis: done, retry (with backoff or the delay asked for),
dead letter (rejected, not retryable, out of retries, too many deliveries, bad input), and
timeouts. Each test builds a delivery as XREADGROUP would hand it and looks at the Outcome."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import msgpack
import pytest

from streamwork import App, Backoff, ConfigurationError, HandlerTimeout, Reject, Retry
from streamwork._base import protocol
from streamwork._worker.execution import Runner
from streamwork._worker.runs import Delivery, Outcome, Run


@pytest.fixture
def app():
    return App("redis://127.0.0.1:1/0", max_retries=2, backoff=Backoff(base=1, cap=1))


def delivery(app, task="job", args=(), attempt=1, count=1, body=None, queue="default"):
    if body is None:
        envelope = protocol.Envelope(
            id="m1", task=task, args=args, attempt=attempt, enqueued_ms=protocol.now_ms()
        )
        body = protocol.encode(envelope)
    return Delivery(app.queue_source(queue), b"1-0", {b"m": body}, count)


def decide(app, item):
    """The Outcome the Runner writes for `item`, and what a handler submitted by itself."""
    submitted = []
    with ThreadPoolExecutor(2) as threads:
        runner = Runner(app.tasks, app.subscribers, "consumer-1", threads)
        prepared = runner.prepare(item)
        if isinstance(prepared, Outcome):
            return prepared, submitted

        async def go():
            outcome = await runner.run(prepared, lambda *args: submitted.append(args))
            await asyncio.sleep(0)  # let a manual decision's call_soon_threadsafe run
            return outcome

        assert isinstance(prepared, Run)
        return asyncio.run(go()), submitted


def letter(outcome):
    assert outcome.kind == "dead", outcome
    return protocol.decode_dead_letter(outcome.data)


def test_a_handler_that_returns_is_done(app):
    app.task(name="job")(lambda: None)
    outcome, _ = decide(app, delivery(app))
    assert outcome.kind == "done" and outcome.result_key is None and outcome.run_ms >= 0


def test_a_stored_result_goes_with_the_outcome(app):
    app.task(name="job", store_result=True)(lambda x: x * 2)
    outcome, _ = decide(app, delivery(app, args=(21,)))
    assert outcome.result_key == "sw:{default}:result:m1"
    assert msgpack.unpackb(outcome.result) == {"ok": True, "value": 42}


def test_a_failure_with_retries_left_is_retried_with_backoff(app):
    def job():
        raise ValueError("flaky")

    app.task(name="job")(job)
    before = protocol.now_ms()
    outcome, _ = decide(app, delivery(app))
    assert outcome.kind == "retry"
    retry = protocol.decode(outcome.data)
    assert (retry.id, retry.attempt) == ("m1", 2)
    assert before + 500 <= outcome.due_ms <= protocol.now_ms() + 1000  # base 1 s, equal jitter


def test_retry_asks_for_its_own_delay(app):
    def job():
        raise Retry(delay=30)

    app.task(name="job")(job)
    outcome, _ = decide(app, delivery(app))
    assert outcome.kind == "retry"
    assert abs(outcome.due_ms - (protocol.now_ms() + 30_000)) < 1000


def test_retry_with_exc_records_the_error_as_if_raised(app):
    """Celery's self.retry(exc=exc): the status and, past the retries, the dead letter carry
    the cause's type, text and traceback, not "Retry: retry requested"."""

    def job():
        try:
            {}["missing"]
        except KeyError as exc:
            raise Retry(delay=5, exc=exc) from None

    app.task(name="job", retry_on=(ConnectionError,))(job)  # asked for: retried all the same
    outcome, _ = decide(app, delivery(app))
    assert outcome.kind == "retry" and outcome.error == "KeyError: 'missing'"
    assert abs(outcome.due_ms - (protocol.now_ms() + 5_000)) < 1000
    dead = letter(decide(app, delivery(app, attempt=3))[0])
    assert (dead.error_type, dead.error) == ("KeyError", "'missing'")
    assert '{}["missing"]' in dead.traceback and "Retry" not in dead.traceback


def test_retry_exc_must_be_an_exception():
    with pytest.raises(TypeError, match="exc must be an exception"):
        Retry(exc="boom")


def test_retry_delay_replaces_the_backoff_when_no_delay_is_asked(app):
    def job():
        raise ValueError("flaky")

    def asks():
        raise Retry()

    def own():
        raise Retry(delay=2)

    app.task(name="job", retry_delay=60)(job)
    app.task(name="asks", retry_delay=60)(asks)
    app.task(name="own", retry_delay=60)(own)
    for task, seconds in (("job", 60), ("asks", 60), ("own", 2)):
        outcome, _ = decide(app, delivery(app, task=task))
        assert outcome.kind == "retry"
        assert abs(outcome.due_ms - (protocol.now_ms() + seconds * 1000)) < 1000, task


def test_retry_delay_is_checked_at_declaration(app):
    with pytest.raises(ConfigurationError, match="retry_delay must be >= 0, got -1"):
        app.task(name="job", retry_delay=-1)(lambda: None)


def test_the_last_attempt_is_dead_lettered_with_the_error(app):
    def job():
        raise ValueError("still broken")

    app.task(name="job")(job)
    dead = letter(decide(app, delivery(app, attempt=3))[0])
    assert dead.reason == "failed 3 attempts (max_retries=2)"
    assert (dead.error_type, dead.error) == ("ValueError", "still broken")
    assert "raise ValueError" in dead.traceback


def test_reject_dead_letters_at_once(app):
    def job():
        raise Reject("card stolen")

    app.task(name="job")(job)
    assert letter(decide(app, delivery(app))[0]).reason == "rejected: card stolen"


def test_an_exception_outside_retry_on_is_not_retried(app):
    def job():
        raise ValueError("bad data")

    app.task(name="job", retry_on=(ConnectionError,))(job)
    assert letter(decide(app, delivery(app))[0]).reason == "not retryable"


def test_too_many_deliveries_dead_letter_without_running(app):
    ran = []
    app.task(name="job", max_deliveries=3)(lambda: ran.append(1))
    dead = letter(decide(app, delivery(app, count=4))[0])
    assert "delivered 4 times without an outcome (max_deliveries=3)" in dead.reason
    assert ran == []


def test_a_run_past_its_timeout_is_not_retried_unless_retry_on_names_it(app):
    """Celery's time_limit: a timed-out run fails for good by default (a sync one may still
    be running in its thread: a retry would run a second copy beside it)."""

    async def job():
        await asyncio.sleep(5)

    app.task(name="job", timeout=0.05)(job)
    dead = letter(decide(app, delivery(app))[0])
    assert dead.error_type == "HandlerTimeout" and dead.reason.startswith("ran past its timeout")
    for retry_on in ((HandlerTimeout,), (TimeoutError,)):
        app.tasks.clear()
        app.task(name="job", timeout=0.05, retry_on=retry_on)(job)
        assert decide(app, delivery(app))[0].kind == "retry"


def test_a_timeout_error_the_handler_raises_is_retried_as_usual(app):
    def job():
        raise TimeoutError("the bank did not answer")

    app.task(name="job", timeout=5)(job)
    assert decide(app, delivery(app))[0].kind == "retry"


def test_bad_input_is_dead_lettered_with_the_reason(app):
    app.task(name="job")(lambda x: None)
    assert "unknown task 'nope'" in letter(decide(app, delivery(app, task="nope"))[0]).reason
    assert "bad arguments" in letter(decide(app, delivery(app, args=(1, 2)))[0]).reason
    undecodable = letter(decide(app, delivery(app, body=b"\xc1"))[0])
    assert undecodable.reason.startswith("undecodable message")


def test_manual_ack_submits_the_handlers_decision(app):
    def job(message):
        message.ack()

    app.task(name="job", ack_mode="manual", bind=True)(job)
    outcome, submitted = decide(app, delivery(app))
    assert outcome is None  # the handler decided: nothing more to write
    [(source, decided, is_pending)] = submitted
    assert source.name == "default"
    assert decided.kind == "done" and is_pending
