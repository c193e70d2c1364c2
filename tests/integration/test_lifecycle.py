"""Task lifecycle against a real redis-server: status through every state, cancellation
of queued, delayed, running (async and sync) and finished messages, cancel racing a
worker's pick-up, throttled progress, and status that survives restarts."""

import asyncio
import logging
import threading
import time

import pytest
import redis

from streamwork import App, ConnectionFailed, Reject, TaskCancelled
from streamwork._base import protocol
from streamwork._redis.scripts import Scripts
from streamwork.ops.stats import queue_state
from streamwork.testing import RedisServer, WorkerThread, drain, wait_until


@pytest.fixture(autouse=True)
def real_clock():
    yield
    protocol.reset_clock()


def state(handle):
    return handle.status().state


def test_status_through_every_state(app):
    release = threading.Event()
    attempts = []

    @app.task(bind=True)
    def work(message, n):
        message.progress(0.5, note="half way")
        release.wait(10)
        return n

    @app.task(max_retries=1, backoff=None)
    def flaky():
        attempts.append(1)
        raise ConnectionError("upstream down")

    @app.task(retry_on=())
    def broken():
        raise ValueError("bad input")

    @app.task
    def refuses():
        raise Reject("not ours")

    handle = work.send(7)
    delayed = work.send_with(args=(8,), delay=3600)
    assert (state(handle), state(delayed)) == ("queued", "delayed")
    assert handle.status().attempts == 0 and handle.status().task == "work"
    assert state(app.handle("work", protocol.new_id())) == "unknown"

    with WorkerThread(app) as worker:
        wait_until(lambda: handle.status().progress == 0.5, message="running with progress")
        running = handle.status()
        assert (running.state, running.note, running.attempts) == ("running", "half way", 1)
        assert running.worker == worker.worker.consumer
        release.set()
        wait_until(lambda: state(handle) == "done")
        retried = flaky.send()
        wait_until(lambda: state(retried) == "retrying")
        assert retried.status().error == "ConnectionError: upstream down"
        failed, rejected = broken.send(), refuses.send()
        wait_until(lambda: (state(failed), state(rejected)) == ("failed", "dead"))
    assert failed.status().error == "ValueError: bad input"
    assert rejected.status().error == "rejected: not ours"
    done = handle.status()
    assert done.is_final and done.progress == 0.5 and done.updated_at is not None
    assert 0 < app.connection.redis.pttl(app.keys("default").status(handle.id)) <= 86_400_000


def test_cancel_a_queued_message_it_never_runs_and_is_not_a_failure(app):
    ran = []

    @app.task
    def job(n):
        ran.append(n)

    keep, drop = job.send(1), job.send(2)
    assert drop.cancel("customer left") == "cancelled"
    assert drain(app) == 1 and ran == [1]
    status = drop.status()
    assert (status.state, status.error) == ("cancelled", "customer left")
    assert state(keep) == "done"
    queue = queue_state(app, "default")
    assert queue.is_empty and queue.dead_letters == 0  # acknowledged, not dead-lettered
    assert drop.cancel() == "cancelled"  # a second cancel answers alike, changes nothing
    assert app.connection.redis.hget(app.keys("default").stats, "cancelled") == b"1"


def test_cancel_a_delayed_message_removes_it_at_once(app):
    @app.task(max_retries=3)
    def job():
        raise ConnectionError("later")

    later = job.send_with(delay=600)
    assert app.connection.redis.zcard(app.keys("default").delayed) == 1
    assert later.cancel() == "cancelled"
    assert app.connection.redis.zcard(app.keys("default").delayed) == 0
    assert state(later) == "cancelled"
    retrying = job.send()
    drain(app)
    assert state(retrying) == "retrying"  # waiting out its backoff in the delayed set
    assert retrying.cancel() == "cancelled"
    assert app.connection.redis.zcard(app.keys("default").delayed) == 0


def test_cancel_a_running_async_handler_stops_it_within_a_second(app):
    started, finished = threading.Event(), []

    @app.task
    async def encode():
        started.set()
        await asyncio.sleep(30)
        finished.append(True)

    handle = encode.send()
    with WorkerThread(app):
        assert started.wait(10)
        asked = time.monotonic()
        assert handle.cancel("user aborted") == "cancelling"
        assert handle.status().cancel_requested
        wait_until(lambda: state(handle) == "cancelled", timeout=5)
        assert time.monotonic() - asked < 1.5
    assert not finished
    assert queue_state(app, "default").is_empty  # acknowledged: never retried


def test_cancel_a_running_sync_handler_is_cooperative_and_never_retried(app):
    started, saw = threading.Event(), []

    @app.task(bind=True, max_retries=5)
    def crunch(message):
        started.set()
        deadline = time.monotonic() + 20
        while not message.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        saw.append(message.cancelled)
        raise RuntimeError("stopped half way")  # even a raise is not a failed attempt

    handle = crunch.send()
    with WorkerThread(app):
        assert started.wait(10)
        assert handle.cancel() == "cancelling"
        wait_until(lambda: state(handle) == "cancelled", timeout=5)
    assert saw == [True]
    queue = queue_state(app, "default")
    assert queue.is_empty and queue.delayed == 0 and queue.dead_letters == 0


def test_cancel_racing_the_pick_up_never_both_runs_and_claims_it_did_not(app):
    """Each message is cancelled right after its send: some are still queued, some are
    being picked up, some run. The handler takes 20 ms (its work, not a wait), so that
    the 20 slots fill and a backlog forms: with a no-op handler an idle worker picked
    every message up before its cancel arrived (seen in CI), and the queued side of the
    race went unexercised."""
    ran = set()
    lock = threading.Lock()

    @app.task
    def job(n):
        with lock:
            ran.add(n)
        time.sleep(0.02)

    with WorkerThread(app, concurrency=20):
        handles = []
        for n in range(300):
            handle = job.send(n)
            handles.append((n, handle, handle.cancel()))
        wait_until(lambda: queue_state(app, "default").is_empty, timeout=20)
    outcomes = {"cancelled": 0, "cancelling": 0, "finished": 0}
    for n, handle, what in handles:
        outcomes[what] += 1
        final = state(handle)
        if what == "cancelled":  # it was queued: it must never have run
            assert n not in ran and final == "cancelled"
        elif what == "cancelling":  # it was running: it ran, and was cancelled or done
            assert n in ran and final in ("cancelled", "done")
        else:
            assert n in ran and final == "done"
    assert outcomes["cancelled"] > 0, outcomes  # the race was exercised


def test_progress_is_throttled_and_the_last_value_wins(app, monkeypatch):
    writes = []
    real = Scripts.progress

    def counted(self, *args):
        writes.append(args[1:3])
        return real(self, *args)

    monkeypatch.setattr(Scripts, "progress", counted)

    @app.task(bind=True)
    def busy(message):
        deadline = time.monotonic() + 1.0
        n = 0
        while time.monotonic() < deadline:
            n += 1
            message.progress(min(1.0, n / 1_000_000), note=f"row {n}")
        message.progress(1.0, note="last")  # written before the outcome, not dropped

    handle = busy.send()
    drain(app)
    assert 2 <= len(writes) <= 10, len(writes)  # ~4 per second, not one per call
    assert writes[-1] == (1.0, "last")
    status = handle.status()
    assert (status.progress, status.note) == (1.0, "last")


def test_progress_arguments_are_checked(app):
    errors = []

    @app.task(bind=True)
    def bad(message):
        for value in (1.5, -0.1, "half", True):
            try:
                message.progress(value)
            except Exception as exc:
                errors.append(str(exc))

    bad.send()
    drain(app)
    assert errors == [
        "progress must be from 0 to 1, got 1.5",
        "progress must be from 0 to 1, got -0.1",
        "progress must be a number from 0 to 1, got 'half'",
        "progress must be a number from 0 to 1, got True",
    ]


def test_status_expires_status_ttl_after_its_last_change(redis_url):
    app = App(redis_url, status_ttl=1)

    @app.task
    def job():
        pass

    handle = job.send()
    drain(app)
    assert state(handle) == "done"
    wait_until(lambda: state(handle) == "unknown", timeout=5, message="the status to expire")


def test_status_and_cancellation_survive_worker_and_redis_restarts():
    with RedisServer(["--appendonly", "yes", "--appendfsync", "always"]) as server:
        app = App(server.url)

        @app.task
        def job(n):
            pass

        done, dropped, waiting = job.send(1), job.send(2), job.send(3)
        dropped.cancel("no")
        server.restart()
        app.connection.close()
        assert [state(h) for h in (done, dropped, waiting)] == ["queued", "cancelled", "queued"]
        assert drain(app) == 2  # a fresh worker still never runs the cancelled one
        server.restart()
        assert [state(h) for h in (done, dropped, waiting)] == ["done", "cancelled", "done"]
        app.close()


def test_an_app_that_does_not_track_status_writes_none_and_says_so(redis_url):
    from streamwork.errors import ConfigurationError

    app = App(redis_url, track_status=False)
    ran = []

    @app.task(bind=True)
    def job(message, n):
        ran.append(n)
        with pytest.raises(Exception, match="progress is recorded for task messages"):
            message.progress(0.5)

    handle = job.send(1)
    job.send_many([(2,), (3,)])
    job.send_with(args=(4,), delay=0.01)
    assert not job.send_with(args=(5,), key="once").is_duplicate
    assert job.send_with(args=(5,), key="once").is_duplicate  # keys hold without status
    wait_until(lambda: drain(app) == 0 and len(ran) == 5, message="all five ran")
    assert sorted(ran) == [1, 2, 3, 4, 5]
    assert app.connection.redis.keys("sw:{default}:status:*") == []
    with pytest.raises(ConfigurationError, match=r"track_status=False"):
        handle.status()
    with pytest.raises(ConfigurationError, match=r"track_status=False"):
        handle.cancel()


def test_a_start_step_that_meets_redis_away_is_retried_not_abandoned(app, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="streamwork")
    real = Scripts.start
    failures = []

    def flaky(self, *args):
        if len(failures) < 2:
            failures.append(1)
            raise redis.exceptions.ConnectionError("Redis went away")
        return real(self, *args)

    monkeypatch.setattr(Scripts, "start", flaky)
    ran = []

    @app.task(concurrency_limit=10)  # a plain message has no start step: a limit needs one
    def job():
        ran.append(1)

    handle = job.send()
    with WorkerThread(app, visibility_timeout=30):
        wait_until(lambda: handle.status().state == "done", timeout=10)  # not after 30 s
    assert ran == [1] and len(failures) == 2
    # two failures in a row, 0.15 s apart: a blip, not an outage worth a warning
    assert "lost a Redis connection while marking 1 message(s) of default running: Redis" in (
        caplog.text
    )
    assert not [
        r for r in caplog.records if r.levelname in ("WARNING", "ERROR") and "Redis went" in r.msg
    ]


def lose_replies(monkeypatch, script):
    """Make `Scripts.<script>` run in Redis, then lose its reply, once."""
    real = getattr(Scripts, script)
    lost = []

    def run_then_lose(self, *args, **kwargs):
        reply = real(self, *args, **kwargs)
        if not lost:
            lost.append(reply)
            raise redis.exceptions.ConnectionError("Connection reset by peer")
        return reply

    monkeypatch.setattr(Scripts, script, run_then_lose)
    return lost


def test_a_cancel_repeated_after_a_lost_reply_says_cancelled(app, monkeypatch):
    ran = []

    @app.task
    def job(n):
        ran.append(n)

    handle, done = job.send(1), job.send(2)
    lost = lose_replies(monkeypatch, "cancel")
    with pytest.raises(ConnectionFailed):
        handle.cancel("changed my mind")
    assert lost, "the cancel ran in Redis"
    assert handle.cancel() == "cancelled"  # not "finished": the status knows
    assert drain(app) == 1 and ran == [2]
    assert done.cancel() == "finished"  # one that ran still says so
    status = handle.status()
    assert (status.state, status.error) == ("cancelled", "changed my mind")
    assert app.connection.redis.hget(app.keys("default").stats, "cancelled") == b"1"


def test_a_result_awaited_while_the_message_is_cancelled_raises_task_cancelled(app):
    started = threading.Event()

    @app.task(store_result=True)
    async def encode():
        started.set()
        await asyncio.sleep(30)
        return "never"

    handle = encode.send()
    outcome = []

    def wait_for_result():
        try:
            outcome.append(handle.result(timeout=60))
        except Exception as exc:  # handed to the test thread
            outcome.append(exc)

    waiter = threading.Thread(target=wait_for_result)
    with WorkerThread(app):
        assert started.wait(10)
        waiter.start()
        assert handle.cancel("user aborted") == "cancelling"
        waiter.join(30)  # well before the 60 s timeout: it has nothing to wait for
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], TaskCancelled), outcome
    assert "user aborted" in str(outcome[0])


async def test_result_async_of_a_cancelled_message_raises_task_cancelled(app):
    @app.task(store_result=True)
    def add(x, y):
        return x + y

    handle = await add.send_async(1, 2)
    await handle.cancel_async()
    with pytest.raises(TaskCancelled, match="was cancelled"):
        await handle.result_async(timeout=30)
