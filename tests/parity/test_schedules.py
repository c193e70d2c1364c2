"""Schedules behave the same on Redis and on memory:// (see conftest.py): declared schedules
written by the worker, ticks enqueued once each through a day of test time, catch-up,
overlap, pause and trigger."""

from collections import Counter
from datetime import datetime, timedelta, timezone

from streamwork._base import protocol
from streamwork.testing import run_until_idle


def test_a_day_of_a_five_minute_cron_runs_each_tick_once(app):
    ticks = Counter()

    @app.periodic(cron="*/5 * * * *", bind=True)
    def cleanup(message):
        ticks[message.headers["scheduled_for"]] += 1

    summary = run_until_idle(app, advance_time=timedelta(days=1))
    assert len(ticks) == 288 and set(ticks.values()) == {1}
    assert all(due % 300_000 == 0 for due in ticks)  # on the cron's minutes
    assert summary.done == 288 and summary.rounds < 10  # ticks run together, no waiting
    schedule = app.get_schedule("cleanup")
    assert schedule.enqueued == 288 and schedule.missed == 0 and schedule.origin == "code"


def test_overlap_false_runs_each_tick_before_ticking_on(app):
    ticks = []

    @app.periodic(every=60, overlap=False, bind=True)
    def exclusive(message):
        ticks.append(message.headers["scheduled_for"])

    run_until_idle(app, advance_time=timedelta(minutes=10, seconds=1))
    assert len(ticks) == 10 and len(set(ticks)) == 10  # none skipped: each ran before the next
    assert app.get_schedule("exclusive").skipped == 0


def test_catch_up_latest_after_a_quiet_hour(app):
    ticks = []

    @app.task(bind=True)
    def heartbeat(message):
        ticks.append(message.headers["scheduled_for"])

    app.add_schedule("heartbeat", heartbeat, every=60)
    first = app.get_schedule("heartbeat").next_run
    protocol.advance_clock(3_600_000)  # an hour with no worker
    run_until_idle(app)
    assert ticks == [int(first.timestamp() * 1000) + 59 * 60_000]
    assert app.get_schedule("heartbeat").missed == 59


def test_paused_schedules_do_not_tick_and_triggers_run_at_once(app):
    ticks = []

    @app.periodic(every=60, paused=True, bind=True)
    def report(message):
        ticks.append(message.headers["schedule"])

    run_until_idle(app, advance_time=timedelta(hours=1))
    assert ticks == [] and app.get_schedule("report").paused
    app.trigger_schedule("report")
    run_until_idle(app)
    assert ticks == ["report"]
    assert app.get_schedule("report").last_run <= datetime.now(timezone.utc) + timedelta(hours=2)
