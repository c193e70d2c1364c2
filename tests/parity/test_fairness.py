"""Fair queues behave the same on Redis and on memory://: keys take turns, per-key limits
hold, per-key state goes away with the backlog."""

import asyncio

import pytest

from streamwork import BadArguments, ConfigurationError, WorkerSettings
from streamwork._base import protocol
from streamwork.ops.stats import queue_state
from streamwork.testing import run_until_idle

from .timing import assert_never_early


def test_a_small_key_is_not_starved_by_a_big_one(app):
    order = []

    @app.task(fair_by="customer")
    def bill(n, customer):
        order.append(customer)

    bill.send_many([{"n": n, "customer": "big"} for n in range(2000)])
    for n in range(10):
        bill.send(n, customer="small")
    state = queue_state(app, "default")
    # one went to the queue at once (nothing was in it: that wakes idle workers)
    assert (state.fair_backlog, state.ready) == (2009, 1) and not state.is_empty
    assert state.fair_keys == [
        {"task": "bill", "key": "big", "backlog": 1999, "in_flight": 0},  # counted with a limit
        {"task": "bill", "key": "small", "backlog": 10, "in_flight": 0},
    ]
    run_until_idle(app, settings=WorkerSettings(concurrency=4, batch_size=4))
    assert len(order) == 2010
    last_small = max(i for i, customer in enumerate(order) if customer == "small")
    assert last_small < 25  # the 10 small ones finish within the first ~20 runs
    state = queue_state(app, "default")
    assert state.is_empty and state.fair_backlog == 0
    # per-key state is gone once a key's backlog is: nothing is left of either key
    prefix = app.keys("default").fair("bill")
    assert [k for k in app.connection.redis.keys(prefix + "*")] == []


def test_per_key_concurrency_is_never_exceeded(app):
    running, peak = {}, {}

    @app.task(fair_by=lambda doc: doc["tenant"], per_key_concurrency=2)
    async def index(doc):
        tenant = doc["tenant"]
        running[tenant] = running.get(tenant, 0) + 1
        peak[tenant] = max(peak.get(tenant, 0), running[tenant])
        await asyncio.sleep(0.01)
        running[tenant] -= 1

    index.send_many([({"tenant": t, "n": n},) for t in ("a", "b") for n in range(10)])
    run_until_idle(app, settings=WorkerSettings(concurrency=10))
    assert peak == {"a": 2, "b": 2}


def test_a_per_key_rate_limit(app):
    starts = {}

    @app.task(fair_by="device", per_key_rate_limit="2/s")
    def read(device):
        starts.setdefault(device, []).append(protocol.now_ms())

    since = protocol.now_ms()
    for device in ("x", "y"):
        for _ in range(4):
            read.send(device)
    run_until_idle(app, advance_time=True)
    for device in ("x", "y"):  # 4 at 2/s each, whatever the other key does
        assert len(starts[device]) == 4
        assert_never_early(starts[device], since, per_second=2)


def test_fair_sends_that_are_delayed_or_keyed_go_to_the_queue_directly(app):
    ran = []

    @app.task(fair_by="customer")
    def bill(customer):
        ran.append(customer)

    bill.send_with(kwargs={"customer": "a"}, delay=10)
    bill.send_with(kwargs={"customer": "b"}, key="once")
    assert queue_state(app, "default").fair_backlog == 0
    run_until_idle(app, advance_time=True)
    assert sorted(ran) == ["a", "b"]


def test_fair_options_are_checked(app):
    with pytest.raises(ConfigurationError, match="has no argument 'customer'"):

        @app.task(fair_by="customer")
        def no_such(n):
            pass

    with pytest.raises(ConfigurationError, match="per_key_concurrency needs fair_by"):

        @app.task(per_key_concurrency=2)
        def unfair(n):
            pass

    @app.task(fair_by="customer")
    def bill(customer):
        pass

    with pytest.raises(BadArguments, match="the fair_by key must be 1-200 characters"):
        bill.send("")
    with pytest.raises(BadArguments):
        bill.send()
