"""Rate limits, concurrency limits and RateLimited behave the same on Redis and on
memory://: enforced before a message runs, never an attempt, never a dead letter."""

import asyncio

import pytest

from streamwork import App, ConfigurationError, RateLimited
from streamwork._base import protocol
from streamwork.testing import run_until_idle

from .timing import assert_never_early, assert_sends_keep_the_rate


def test_a_rate_limit_spreads_starts_over_time_and_dead_letters_nothing(app):
    starts = []

    @app.task(rate_limit="10/s", max_retries=0)
    def limited(n):
        starts.append(protocol.now_ms())

    since = protocol.now_ms()
    for n in range(30):
        limited.send(n)
    run_until_idle(app, advance_time=True)
    assert len(starts) == 30
    assert_never_early(starts, since, per_second=10, burst=2)  # the default: 20% of 10/s
    state = app.connection.redis.hgetall(app.keys("default").stats)
    assert int(state[b"held"]) >= 28 and b"dead" not in state
    assert app.connection.redis.xlen(app.keys("default").dead_letters) == 0


def test_rate_burst_allows_that_many_at_once(app):
    starts = []

    @app.task(rate_limit="1/m", rate_burst=5)
    def burst(n):
        starts.append(protocol.now_ms())

    for n in range(7):
        burst.send(n)
    run_until_idle(app)  # no time passes: only the burst runs
    assert len(starts) == 5
    run_until_idle(app, advance_time=True)
    assert len(starts) == 7 and starts[6] - starts[0] >= 2 * 60_000 - 1000


def test_a_concurrency_limit_is_never_exceeded(app):
    running, peak, done = [0], [0], []

    @app.task(concurrency_limit=2)
    async def one_of_two(n):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.01)
        running[0] -= 1
        done.append(n)

    for n in range(20):
        one_of_two.send(n)
    run_until_idle(app)
    assert sorted(done) == list(range(20)) and peak[0] == 2
    client = app.connection.redis
    assert client.llen(app.queue_source("default").limit("held", "one_of_two")) == 0


def test_rate_limited_hands_the_message_back_without_an_attempt(app):
    attempts = []

    @app.task(max_retries=0, bind=True)
    def calls_an_api(message):
        attempts.append(message.attempt)
        if len(attempts) < 3:
            raise RateLimited(retry_after=30)
        return "ok"

    handle = calls_an_api.send()
    run_until_idle(app)
    assert attempts == [1] and handle.status().state == "delayed"
    run_until_idle(app, advance_time=True)
    assert attempts == [1, 1, 1]
    assert handle.status().state == "done" and handle.status().attempts == 1
    assert app.connection.redis.xlen(app.keys("default").dead_letters) == 0


def test_a_message_held_by_its_rate_can_be_cancelled(app):
    ran = []

    @app.task(rate_limit="1/h")
    def hourly(n):
        ran.append(n)

    first, second = hourly.send(1), hourly.send(2)
    run_until_idle(app)
    assert ran == [1] and second.status().state == "delayed"
    assert second.cancel() == "cancelled"
    run_until_idle(app, advance_time=True)
    assert ran == [1] and first.status().state == "done"


def test_limits_work_without_message_status(app):
    plain = App(app.url, track_status=False)
    starts = []

    @plain.task(rate_limit="5/s", concurrency_limit=1)
    async def both(n):
        starts.append(protocol.now_ms())

    assert_sends_keep_the_rate(plain, both, starts, 10, per_second=5)


def test_a_subscriber_can_be_rate_limited(app):
    got = []

    @app.subscriber("readings", group="store", rate_limit="2/s")
    def store(message):
        got.append(protocol.now_ms())

    run_until_idle(app)  # creates the group
    since = protocol.now_ms()
    for n in range(6):
        app.publish("readings", n)
    run_until_idle(app, advance_time=True)
    assert len(got) == 6
    assert_never_early(got, since, per_second=2)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            {"rate_limit": "fast"},
            "rate_limit must look like '100/s', '10/m' or '1000/h', got 'fast'",
        ),
        ({"rate_limit": "0/s"}, "rate_limit must look like"),
        ({"rate_burst": 3}, "rate_burst needs a rate_limit"),
        ({"rate_limit": "1/s", "rate_burst": 0}, "rate_burst must be a whole number >= 1"),
        ({"concurrency_limit": 0}, "concurrency_limit must be a whole number >= 1, got 0"),
    ],
)
def test_bad_limits_are_refused_when_declared(app, options, error):
    with pytest.raises(ConfigurationError, match=error.replace("(", r"\(")):

        @app.task(**options)
        def job():
            pass
