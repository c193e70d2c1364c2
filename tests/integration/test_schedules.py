"""Schedules against a real redis-server: each tick enqueued once whatever races for it,
catch-up after downtime, overlap, reconciliation at worker start, runtime control.

Time moves by the test clock (`protocol.advance_clock`), which the ticker adds to Redis's
TIME: ticks fall due without sleeping."""

import asyncio
import dataclasses
import threading

import pytest
import redis

from streamwork import App
from streamwork._base import protocol
from streamwork._base.keys import ScheduleKeys
from streamwork._redis.scripts import Scripts
from streamwork._schedules.definitions import tick_body
from streamwork._schedules.schedules import UnknownSchedule
from streamwork._schedules.ticker import Ticker
from streamwork.testing import WorkerThread, run_until_idle, wait_until


@pytest.fixture(autouse=True)
def real_clock():
    yield
    protocol.reset_clock()


def tick(app, queues=None, passes=1):
    """`passes` passes of one ticker, the clock moved 1 s between them; returns the ticker
    (its `enqueued` count)."""

    async def run():
        connection = app.connection
        ticker = Ticker(
            connection.async_redis(),
            connection.async_scripts(),
            app.namespace,
            app.max_message_bytes,
            queues,
        )
        try:
            for n in range(passes):
                if n:
                    protocol.advance_clock(1000)
                await ticker.tick()
        finally:
            await connection.aclose()
        return ticker

    return asyncio.run(run())


def queued(app, queue="default"):
    """The messages in a queue's stream, decoded, oldest first."""
    entries = app.connection.redis.xrange(app.keys(queue).stream)
    return [protocol.decode(protocol.entry_body(fields)) for _, fields in entries]


def ticks_of(app, queue="default"):
    return [m.headers["scheduled_for"] for m in queued(app, queue)]


@pytest.fixture
def job(app):
    @app.task
    def job(n=0):
        pass

    return job


def test_eight_threads_racing_for_one_tick_enqueue_one_message(app, job, redis_url):
    app.add_schedule("race", job, every=1)
    keys = ScheduleKeys("sw", "default", "race")
    due = int(app.connection.redis.zscore(keys.due, "race"))
    rev = app.connection.redis.hget(keys.schedule, "rev").decode()
    definition = app._schedules()._load("race")[1]
    barrier = threading.Barrier(8)
    replies = []

    def race():
        client = redis.Redis.from_url(redis_url)
        scripts = Scripts(client)
        message_id = protocol.new_id()
        body = tick_body(definition, message_id, due, due)
        barrier.wait()
        replies.append(
            scripts.schedule_tick(
                keys, due, rev, due + 1000, True, 10_000, 0, [(due, message_id, body)]
            )
        )
        client.close()

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(replies) == [[0, 0, 0]] * 7 + [[1, 0, 1]]
    assert ticks_of(app) == [due]
    assert int(app.connection.redis.zscore(keys.due, "race")) == due + 1000


def test_a_tick_already_enqueued_is_not_enqueued_again_when_its_due_time_comes_back(app, job):
    """The claim key (SET NX) holds even if the due set is set back to an enqueued tick."""
    app.add_schedule("once", job, every=1)
    keys = ScheduleKeys("sw", "default", "once")
    due = int(app.connection.redis.zscore(keys.due, "once"))
    protocol.advance_clock(due - protocol.now_ms() + 10)
    assert tick(app).enqueued == 1
    app.connection.redis.zadd(keys.due, {"once": due})  # e.g. a stale writer
    assert tick(app).enqueued == 0
    assert ticks_of(app) == [due]


def test_ticks_carry_their_schedule_and_due_time_and_arguments(app):
    seen = []

    @app.task(bind=True)
    def report(message, customer, *, full=False):
        seen.append((message.headers, customer, full))

    app.add_schedule("report-42", report, every=60, args=(42,), kwargs={"full": True})
    due = app.get_schedule("report-42").next_run
    protocol.advance_clock(int(due.timestamp() * 1000) - protocol.now_ms() + 5)
    run_until_idle(app)
    due_ms = int(due.timestamp() * 1000)
    assert seen == [({"schedule": "report-42", "scheduled_for": due_ms}, 42, True)]
    stored = app.get_schedule("report-42")
    assert stored.last_run == due and stored.enqueued == 1 and stored.last_message_id


@pytest.mark.parametrize(
    ("catch_up", "enqueued", "missed"),
    [("latest", [5], 4), ("none", [], 5), ("all", [1, 2, 3, 4, 5], 0)],
)
def test_catch_up_after_five_ticks_with_no_worker(app, job, catch_up, enqueued, missed):
    app.add_schedule("beat", job, every=1, catch_up=catch_up)
    first = int(app.get_schedule("beat").next_run.timestamp() * 1000)
    protocol.advance_clock(first + 4500 - protocol.now_ms())  # ticks 1..5 are due
    tick(app)
    assert [(t - first) // 1000 + 1 for t in ticks_of(app)] == enqueued
    stored = app.get_schedule("beat")
    assert stored.missed == missed
    assert int(stored.next_run.timestamp() * 1000) == first + 5000  # the next future tick


def test_overlap_false_skips_a_tick_while_the_previous_run_is_queued(app, job):
    app.add_schedule("slow", job, every=1, overlap=False)
    first = int(app.get_schedule("slow").next_run.timestamp() * 1000)
    protocol.advance_clock(first - protocol.now_ms() + 5)
    assert tick(app).enqueued == 1
    protocol.advance_clock(1000)
    assert tick(app).enqueued == 0  # the first run is still queued
    assert app.get_schedule("slow").skipped == 1
    assert run_until_idle(app).done == 1
    protocol.advance_clock(1000)
    assert tick(app).enqueued == 1
    assert ticks_of(app) == [first + 2000]


def test_pause_resume_trigger_and_remove(app, job):
    app.add_schedule("beat", job, every=1)
    app.pause_schedule("beat")
    paused = app.get_schedule("beat")
    assert paused.paused and paused.next_run is None
    protocol.advance_clock(5000)
    assert tick(app).enqueued == 0
    app.resume_schedule("beat")
    resumed = app.get_schedule("beat")
    now = protocol.now_ms()
    assert not resumed.paused
    assert now < resumed.next_run.timestamp() * 1000 <= now + 1000  # from now: no catch-up
    message_id = app.trigger_schedule("beat")
    [message] = queued(app)
    assert message.id == message_id and message.headers["schedule"] == "beat"
    assert app.get_schedule("beat").next_run == resumed.next_run  # unchanged by a trigger
    app.unschedule("beat")
    assert app.schedules() == []
    for call in (
        app.unschedule,
        app.pause_schedule,
        app.resume_schedule,
        app.trigger_schedule,
        app.get_schedule,
    ):
        with pytest.raises(UnknownSchedule, match="no schedule 'beat' in namespace 'sw'"):
            call("beat")


def test_a_schedule_past_its_end_stops(app, job):
    from datetime import datetime, timedelta, timezone

    start = datetime.now(timezone.utc) + timedelta(seconds=10)
    app.add_schedule("short", job, every=1, start=start, end=start + timedelta(seconds=2))
    protocol.advance_clock(int(start.timestamp() * 1000) - protocol.now_ms() + 5)
    for _ in range(5):
        tick(app)
        protocol.advance_clock(1000)
    assert len(ticks_of(app)) == 3  # start, +1 s, +2 s
    assert app.get_schedule("short").next_run is None


def test_workers_reconcile_declared_schedules_when_they_start(redis_url):
    def declare(cron, keep):
        app = App(redis_url)

        @app.periodic(cron=cron)
        def nightly():
            pass

        @app.task
        def job():
            pass

        if keep:
            app.schedule("keep", job, every=3600)
        return app

    first = declare("0 3 * * *", keep=True)
    first.add_schedule("adhoc", "job", every=60)
    assert [s.id for s in first.schedules()] == ["adhoc"]  # declaring writes nothing
    other = App(redis_url, namespace="other")
    other_task = other.task(name="theirs")(lambda: None)
    other.schedule("theirs", other_task, every=60)

    with WorkerThread(first):
        wait_until(lambda: len(first.schedules()) == 3, message="declared schedules written")
    stored = {s.id: s for s in first.schedules()}
    assert stored["nightly"].cron == "0 3 * * *" and stored["nightly"].origin == "code"
    assert stored["adhoc"].origin == "runtime"
    first.pause_schedule("nightly")

    with WorkerThread(other):
        wait_until(lambda: [s.id for s in other.schedules()] == ["theirs"])

    second = declare("0 4 * * *", keep=False)  # the cron changed; "keep" is gone from code
    with WorkerThread(second):
        wait_until(
            lambda: [s.id for s in second.schedules()] == ["adhoc", "nightly"],
            message="keep removed",
        )
    nightly = second.get_schedule("nightly")
    assert nightly.cron == "0 4 * * *" and nightly.paused  # updated, its state kept
    assert [s.id for s in other.schedules()] == ["theirs"]  # another namespace: untouched


def test_a_running_worker_does_not_recreate_a_removed_schedule(app):
    @app.periodic(every=3600)
    def hourly():
        pass

    with WorkerThread(app) as worker:
        wait_until(lambda: [s.id for s in app.schedules()] == ["hourly"])
        app.unschedule("hourly")
        protocol.advance_clock(3_700_000)  # its tick would be due now
        ticker = worker.worker.session.ticker
        passes = ticker.passes
        wait_until(lambda: ticker.passes >= passes + 2, message="two ticker passes")
        assert app.schedules() == [] and queued(app) == []


def test_a_schedule_the_ticker_cannot_read_does_not_stop_the_others(app, job, caplog):
    app.add_schedule("good", job, every=1)
    app.add_schedule("bad", job, every=1)
    bad = ScheduleKeys("sw", "default", "bad")
    app.connection.redis.hset(bad.schedule, "catch_up", "sometimes")  # another version's
    protocol.advance_clock(1500)
    tick(app, passes=2)
    assert [m.headers["schedule"] for m in queued(app)] == ["good", "good"]
    errors = [r.message for r in caplog.records if "not a schedule this version" in r.message]
    assert errors == [
        "schedule 'bad': not a schedule this version of streamwork can read; "
        "its ticks are not enqueued"
    ]


def test_overlap_false_also_waits_for_a_run_waiting_out_a_retry(app):
    @app.task(max_retries=5)
    def flaky():
        raise ConnectionError("upstream down")

    app.add_schedule("sync-upstream", flaky, every=60, overlap=False)
    first = int(app.get_schedule("sync-upstream").next_run.timestamp() * 1000)
    protocol.advance_clock(first - protocol.now_ms() + 5)
    assert tick(app).enqueued == 1
    run_until_idle(app)  # it failed: its retry waits in the delayed set, not in the stream
    [retrying] = [app.handle("flaky", app.get_schedule("sync-upstream").last_message_id)]
    assert retrying.status().state == "retrying"
    protocol.advance_clock(60_000)
    assert tick(app).enqueued == 0  # the previous run is not over: skipped
    assert app.get_schedule("sync-upstream").skipped == 1


def test_a_schedule_that_cannot_plan_never_stops_a_worker_or_the_other_schedules(redis_url, caplog):
    """One declared by code this version refuses, one stored by another version: the
    worker starts, the good schedule ticks, each bad one is logged once."""
    app = App(redis_url)

    @app.task
    def job():
        pass

    app.schedule("good", job, every=1)
    good = app.declared_schedules["good"]
    # a declaration this version refuses, as an older streamwork would have let through
    app.declared_schedules["feb31"] = dataclasses.replace(
        good, id="feb31", every_ms=None, cron="0 0 31 2 *"
    )
    app.add_schedule("stored", job, cron="* * * * *")
    stored = ScheduleKeys("sw", "default", "stored")
    app.connection.redis.hset(stored.schedule, "cron", "0 0 30 2 *")  # another version's
    app.connection.redis.zadd(stored.due, {"stored": protocol.now_ms()})  # due now

    with WorkerThread(app) as worker:
        wait_until(lambda: worker.worker.session is not None, message="the worker's start")
        ticker = worker.worker.session.ticker
        wait_until(lambda: ticker.passes >= 3, message="three ticker passes")
        protocol.advance_clock(2500)
        wait_until(lambda: ticker.enqueued >= 2, message="the good schedule's ticks")
        assert ticker.claimed == []  # a worker's ticker keeps no list that grows for ever
        listed = {s.id: s for s in app.schedules()}  # listing them does not raise either
    assert sorted(listed) == ["good", "stored"]  # feb31 was never written
    assert len(listed["stored"].next_runs) == 1 and len(listed["good"].next_runs) == 3
    assert listed["good"].enqueued >= 2 and listed["stored"].enqueued == 0
    errors = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert len([e for e in errors if "schedule 'feb31': cron '0 0 31 2 *'" in e]) == 1, errors
    assert len([e for e in errors if "schedule 'stored': cron '0 0 30 2 *'" in e]) == 1, errors


def test_advance_time_on_a_real_redis_leaves_the_schedules_to_the_real_clock(app):
    """run_until_idle ticks a minute of schedules ahead of the real clock; workers on the
    real clock then tick them from now on, as if the test run had not moved them."""
    ran = []

    @app.periodic(cron="*/2 * * * * *", bind=True)  # every 2 s (seconds first)
    def beat(message):
        ran.append(message.headers["scheduled_for"])

    summary = run_until_idle(app, advance_time=60)
    assert summary.done >= 29  # a minute of ticks, each once
    protocol.reset_clock()  # the process back on the real clock, as a worker's
    real_now = protocol.now_ms()
    assert app.get_schedule("beat").next_run.timestamp() * 1000 <= real_now + 2000
    ran.clear()
    with WorkerThread(app):
        wait_until(lambda: len(ran) >= 2, timeout=8, message="two ticks on the real clock")
    # The first tick may be the one due at the last 2-second boundary before real_now (the
    # rewind happened a moment before it was read); none replays the advanced minute.
    assert all(real_now - 2000 < tick <= real_now + 12_000 for tick in ran), (real_now, ran)
