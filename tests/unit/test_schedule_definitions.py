"""Schedule definitions: validation at declaration, tick computation (croniter, time zones,
DST), catch-up planning. Pure: no Redis."""

from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from streamwork import App
from streamwork._schedules.definitions import CATCH_UP_LIMIT, Definition
from streamwork.errors import ConfigurationError

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def app():
    app = App("memory://unit-schedules")

    @app.task
    def report(customer, *, full=False):
        pass

    return app


def ms(moment):
    return int(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of cron= or every="),
        ({"cron": "* * * * *", "every": 5}, "exactly one of cron= or every="),
        ({"cron": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
        ({"cron": "0 0 31 2 *"}, "cron '0 0 31 2 *' has no tick within 10 years"),
        ({"cron": "0 0 0 30 2 *"}, "cron '0 0 0 30 2 *' has no tick within 10 years"),
        ({"cron": "* * * *"}, "cron must have 5 fields"),
        ({"cron": "* * * * * * *"}, "cron must have 5 fields"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"every": 0.5}, "every must be at least 1 second"),
        ({"every": -1}, "every must be > 0"),
        ({"every": "often"}, "every must be seconds or a timedelta"),
        ({"every": 60, "catch_up": "some"}, "catch_up must be one of latest, none, all"),
        ({"every": 60, "args": ()}, "report(): missing a required argument: 'customer'"),
        ({"every": 60, "args": (1, 2)}, "report(): too many positional arguments"),
        ({"every": 60, "args": ({1: "x"},)}, "map key 1 of type int"),
        ({"every": 60, "args": (1,), "start": datetime(2030, 1, 1)}, "timezone-aware"),
        (
            {
                "every": 60,
                "args": (1,),
                "start": datetime(2030, 1, 2, tzinfo=timezone.utc),
                "end": datetime(2030, 1, 1, tzinfo=timezone.utc),
            },
            "end must be after start",
        ),
    ],
)
def test_bad_definitions_are_refused_at_declaration(app, kwargs, message):
    kwargs.setdefault("args", (1,))
    with pytest.raises(ConfigurationError, match="schedule 'nightly'") as raised:
        app.schedule("nightly", "report", **kwargs)
    assert message in str(raised.value)
    assert "nightly" not in app.declared_schedules


def test_a_cron_that_never_ticks_is_refused_by_every_way_of_declaring(app):
    with pytest.raises(ConfigurationError, match="has no tick within 10 years"):
        app.add_schedule("feb31", "report", cron="0 0 31 2 *", args=(1,))

    def never():
        pass

    with pytest.raises(ConfigurationError, match="schedule 'never': cron '0 0 30 2 \\*'"):
        app.periodic(cron="0 0 30 2 *")(never)
    assert app.schedules() == [] and app.declared_schedules == {}
    assert "never" not in app.tasks


def test_a_leap_day_cron_is_accepted(app):
    definition = app.schedule("leap", "report", cron="0 0 29 2 *", args=(1,))
    after = ms(datetime(2096, 3, 1, tzinfo=timezone.utc))  # 2100 is no leap year: 8 years
    assert definition.next_after(after) == ms(datetime(2104, 2, 29, tzinfo=timezone.utc))


def test_a_six_field_cron_that_ticks_days_apart_warns_of_the_convention(app, caplog):
    app.schedule("fine", "report", cron="*/2 * * * * *", args=(1,))
    assert not [r for r in caplog.records if "seconds first" in r.message]
    app.schedule("seconds-last", "report", cron="0 0 12 * * 1", args=(1,))
    warned = [r.message for r in caplog.records if "seconds first" in r.message]
    assert (
        len(warned) == 1 and "schedule seconds-last: the 6-field cron '0 0 12 * * 1'" in (warned[0])
    ), warned
    assert "7 days" in warned[0] and "puts seconds last" in warned[0]


def test_schedules_list_their_next_three_runs(app):
    app.add_schedule("monday", "report", cron="0 9 * * 1", tz="Europe/Paris", args=(1,))
    app.add_schedule("minutely", "report", every=60, args=(1,))
    found = {s.id: s for s in app.schedules()}
    runs = found["monday"].next_runs
    assert len(runs) == 3 and runs[0] == found["monday"].next_run
    assert [later - earlier for earlier, later in pairwise(runs)] == [timedelta(days=7)] * 2
    assert all(run.astimezone(PARIS).hour == 9 for run in runs)
    minutely = found["minutely"].next_runs
    assert [later - earlier for earlier, later in pairwise(minutely)] == [timedelta(seconds=60)] * 2
    app.pause_schedule("minutely")
    assert app.get_schedule("minutely").next_runs == ()
    assert found["monday"].as_dict()["next_runs"] == [run.isoformat() for run in runs]


def test_unknown_tasks_and_bad_ids_are_refused(app):
    with pytest.raises(ConfigurationError, match="the app has no task 'nope'"):
        app.schedule("x", "nope", every=60)
    other = App("memory://unit-schedules-other")
    stranger = other.task(name="stranger")(lambda: None)
    with pytest.raises(ConfigurationError, match="is not a task of this app"):
        app.schedule("x", stranger, every=60)
    with pytest.raises(ConfigurationError, match="invalid schedule name"):
        app.schedule("bad id", "report", every=60, args=(1,))


def test_declaring_twice_is_refused_and_periodic_names_the_schedule_after_the_task(app):
    app.schedule("daily", "report", cron="0 2 * * *", args=(1,))
    with pytest.raises(ConfigurationError, match="declared twice"):
        app.schedule("daily", "report", cron="0 3 * * *", args=(1,))

    @app.periodic(every=timedelta(minutes=5), queue="maintenance", max_retries=0)
    def cleanup():
        pass

    definition = app.declared_schedules["cleanup"]
    assert (definition.task, definition.queue, definition.every_ms) == (
        "cleanup",
        "maintenance",
        300_000,
    )
    assert app.tasks["cleanup"].options.max_retries == 0


def test_revision_changes_with_the_definition_only(app):
    a = app.schedule("a", "report", cron="0 2 * * *", args=(1,))
    b = app.schedule("b", "report", cron="0 2 * * *", args=(1,))
    c = app.schedule("c", "report", cron="0 3 * * *", args=(1,))
    d = app.schedule("d", "report", cron="0 2 * * *", args=(1,), kwargs={"full": True})
    assert a.rev == b.rev  # the id is not part of it
    assert len({a.rev, c.rev, d.rev}) == 3
    assert Definition.from_fields("d", {k.encode(): _raw(v) for k, v in d.fields().items()}) == d


def _raw(value):
    return value if isinstance(value, bytes) else str(value).encode()


def test_cron_ticks_in_the_schedules_time_zone(app):
    definition = app.schedule("d", "report", cron="0 9 * * 1-5", tz="Europe/Paris", args=(1,))
    # Friday 2026-11-27 10:00 Paris -> Monday 09:00 Paris (08:00 UTC)
    after = ms(datetime(2026, 11, 27, 10, tzinfo=PARIS))
    assert definition.next_after(after) == ms(datetime(2026, 11, 30, 8, tzinfo=timezone.utc))


def test_six_fields_put_seconds_first(app):
    definition = app.schedule("d", "report", cron="*/15 * * * * *", args=(1,))
    after = ms(datetime(2026, 1, 1, 0, 0, 7, tzinfo=timezone.utc))
    assert definition.next_after(after) == after + 8000


@pytest.mark.parametrize(
    ("cron", "day"),
    [
        ("30 2 * * *", datetime(2026, 3, 27, 12, tzinfo=PARIS)),  # 02:30 does not exist on 29 March
        ("30 2 * * *", datetime(2026, 10, 23, 12, tzinfo=PARIS)),  # 02:30 happens twice on 25 Oct
        ("*/20 1-3 * * *", datetime(2026, 3, 29, 0, tzinfo=PARIS)),
        ("*/20 1-3 * * *", datetime(2026, 10, 25, 0, tzinfo=PARIS)),
    ],
)
def test_dst_days_tick_as_croniter_says_and_never_twice_at_one_instant(app, cron, day):
    definition = app.schedule("d", "report", cron=cron, tz="Europe/Paris", args=(1,))
    expected = croniter(cron, day)
    tick = ms(day)
    ours = []
    for _ in range(30):
        tick = definition.next_after(tick)
        ours.append(tick)
    assert ours == [ms(expected.get_next(datetime)) for _ in range(30)]
    assert ours == sorted(set(ours))  # strictly increasing: no instant ticks twice


def test_every_counts_from_start_and_stops_at_end(app):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    definition = app.schedule(
        "d", "report", every=60, args=(1,), start=start, end=start + timedelta(minutes=3)
    )
    assert definition.next_after(ms(start) - 5000) == ms(start)  # the start is the first tick
    assert definition.next_after(ms(start) + 61_000) == ms(start) + 120_000
    assert definition.next_after(ms(start) + 180_000) is None  # past the end
    unanchored = app.schedule("e", "report", every=60, args=(1,))
    assert unanchored.next_after(1_000_000) == 1_060_000


@pytest.mark.parametrize(
    ("catch_up", "late_by", "enqueued", "missed"),
    [
        # every 60 s, due at T; found at T + late_by seconds
        ("latest", 0.4, ["T"], 0),
        ("none", 0.4, ["T"], 0),  # the one tick due now, on time, is not missed
        ("all", 0.4, ["T"], 0),
        ("latest", 300.5, ["T+300"], 5),
        ("none", 300.5, [], 6),
        ("all", 300.5, ["T", "T+60", "T+120", "T+180", "T+240", "T+300"], 0),
        ("none", 30, [], 1),  # one tick, but found too late
    ],
)
def test_catch_up_policies(app, catch_up, late_by, enqueued, missed):
    definition = app.schedule(f"d-{catch_up}", "report", every=60, args=(1,), catch_up=catch_up)
    due = 1_800_000_000_000
    ticks, counted_missed, next_due = definition.plan(due, due + int(late_by * 1000))
    names = ["T" if t == due else f"T+{(t - due) // 1000}" for t in ticks]
    assert (names, counted_missed) == (enqueued, missed)
    assert next_due == due + (int(late_by) // 60 + 1) * 60_000  # the next tick in the future


def test_catch_up_all_is_bounded(app):
    definition = app.schedule("d", "report", every=1, args=(1,), catch_up="all")
    due = 1_800_000_000_000
    ticks, missed, next_due = definition.plan(due, due + 250_000)
    assert len(ticks) == CATCH_UP_LIMIT and missed == 251 - CATCH_UP_LIMIT
    assert ticks[-1] == due + 250_000 and next_due == due + 251_000


def test_far_behind_schedules_jump_to_the_latest_tick(app):
    definition = app.schedule("d", "report", every=1, args=(1,))
    due = 1_800_000_000_000
    ticks, missed, next_due = definition.plan(due, due + 7 * 86_400_000 + 500)
    assert ticks == [due + 7 * 86_400_000] and next_due == ticks[0] + 1000
    assert missed >= 10_000 - 1


def test_a_schedule_whose_message_would_be_too_large_is_refused():
    app = App("memory://unit-schedules-small", max_message_bytes=200)

    @app.task
    def store(blob):
        pass

    with pytest.raises(ConfigurationError, match=r"schedule .big.: its message is .* over max_"):
        app.schedule("big", store, every=60, args=("x" * 500,))


def test_a_misspelt_argument_is_refused(app):
    with pytest.raises(ConfigurationError, match=r"schedule 'x': unknown argument\(s\): crom"):
        app.schedule("x", "report", crom="* * * * *", args=(1,))
    with pytest.raises(ConfigurationError, match="unknown handler option"):
        app.periodic(every=60, max_retry=3)(lambda: None)


def test_period_is_the_time_between_two_ticks(app):
    assert app.schedule("e", "report", every=90, args=(1,)).period_ms(0) == 90_000
    daily = app.schedule("d", "report", cron="0 2 * * *", args=(1,))
    assert daily.period_ms(ms(datetime(2026, 1, 1, tzinfo=timezone.utc))) == 86_400_000
    ended = app.schedule(
        "x", "report", cron="*/5 * * * *", args=(1,), end=datetime(2020, 1, 1, tzinfo=timezone.utc)
    )
    assert ended.period_ms(ms(datetime(2026, 1, 1, tzinfo=timezone.utc))) == 300_000
