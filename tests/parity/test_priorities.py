"""Priority bands behave the same on Redis and on memory://: higher bands first, a
starving lower band served, retries and delayed messages keep their band."""

import pytest

from streamwork import ConfigurationError, WorkerSettings
from streamwork._base import protocol
from streamwork.ops.stats import queue_state
from streamwork.testing import run_until_idle, wait_until

ONE_AT_A_TIME = WorkerSettings(concurrency=1, batch_size=1)


@pytest.fixture
def jobs(app):
    order = []

    @app.task(priority="default")
    def job(n):
        order.append(n)

    @app.task(priority="low")
    def chore(n):
        order.append(n)

    return job, chore, order


def test_higher_bands_run_first(app, jobs):
    job, chore, order = jobs
    for n in range(4):
        chore.send(f"low{n}")
    for n in range(4):
        job.send(f"default{n}")
        job.send_with(args=(f"high{n}",), priority="high")
    state = queue_state(app, "default")
    assert state.bands == {"high": 4, "default": 4, "low": 4} and state.ready == 12
    run_until_idle(app, settings=ONE_AT_A_TIME)
    assert order == [f"{band}{n}" for band in ("high", "default", "low") for n in range(4)]


def test_a_starving_band_is_served_before_higher_ones(app, jobs):
    job, chore, order = jobs
    for n in range(3):
        chore.send(f"low{n}")
    stream = app.keys("default").band_stream("low")
    client = app.connection.redis
    client.xgroup_create(stream, "workers", id="0")
    first_ms = int(client.xrange(stream, count=1)[0][0].decode().split("-")[0])

    def redis_ms():
        seconds, micros = client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    wait_until(lambda: redis_ms() - first_ms > 300, message="the low band waited 0.3 s")
    for n in range(3):
        job.send_with(args=(f"high{n}",), priority="high")
    run_until_idle(app, settings=WorkerSettings(concurrency=1, batch_size=1, max_starvation=0.2))
    assert order == ["low0", "low1", "low2", "high0", "high1", "high2"]


def test_retries_and_delayed_messages_keep_their_band(app):
    calls = []

    @app.task(priority="high", max_retries=1, backoff=None)
    def urgent(n):
        calls.append(n)
        if len(calls) == 1:
            raise ConnectionError("again")

    urgent.send(1)
    later = urgent.send_with(args=(2,), delay=30)
    keys = app.keys("default")
    assert app.connection.redis.zcard(keys.band_delayed("high")) == 1
    assert later.status().state == "delayed"
    run_until_idle(app, advance_time=True)
    assert sorted(calls) == [1, 1, 2]
    assert app.connection.redis.xlen(keys.dead_letters) == 0
    cancelled = urgent.send_with(args=(3,), delay=30)
    assert cancelled.cancel() == "cancelled"  # found in its band's delayed set
    assert app.connection.redis.zcard(keys.band_delayed("high")) == 0
    assert queue_state(app, "default").is_empty


def test_priority_is_checked(app):
    @app.task
    def plain(n):
        pass

    with pytest.raises(ConfigurationError, match="queue 'default' has no priority bands"):
        plain.send_with(args=(1,), priority="high")
    assert plain.send_with(args=(1,), priority="default").id  # the one band every queue has
    with pytest.raises(ConfigurationError, match="priority must be 'high', 'default' or 'low'"):
        plain.send_with(args=(1,), priority="urgent")
    with pytest.raises(ConfigurationError, match="priority must be"):

        @app.task(priority=1)
        def numbered():
            pass

    protocol.reset_clock()
