"""Topics against a real Redis: fan-out to every group, sharing inside a group, failures
that stay in their group, where new groups start, and retention that never drops unread."""

import threading
from collections import Counter

import pytest

from streamwork import App, ConfigurationError, Reject
from streamwork._base import protocol
from streamwork._base.settings import Backoff
from streamwork.ops import dead_letters
from streamwork.ops.stats import topic_states
from streamwork.testing import WorkerThread, drain, wait_until

FAST = Backoff(base=0.01, cap=0.05)


def groups_ready(app, topic, count):
    """True once `count` consumer groups read `topic` (workers create them at start)."""
    stream = app.topic_keys(topic).stream
    return (
        app.connection.redis.exists(stream)
        and len(app.connection.redis.xinfo_groups(stream)) == count
    )


class Seen:
    """Thread-safe record of (group, consumer, payload) deliveries."""

    def __init__(self):
        self.rows = []
        self.lock = threading.Lock()

    def add(self, *row):
        with self.lock:
            self.rows.append(row)

    def payloads(self, group):
        return sorted(r[2] for r in self.rows if r[0] == group)


def test_every_group_gets_every_event_once_and_each_group_shares_its_events(app):
    seen = Seen()
    for group in ("billing", "shipping", "notify"):

        @app.subscriber("orders.created", group=group)
        def handle(message, group=group):
            seen.add(message.group, threading.current_thread().name, message.payload["order_id"])

    with WorkerThread(app, concurrency=5) as first, WorkerThread(app, concurrency=5) as second:
        wait_until(lambda: groups_ready(app, "orders.created", 3))
        ids = app.publish_many("orders.created", [{"order_id": n} for n in range(300)])
        assert len(set(ids)) == 300
        wait_until(lambda: len(seen.rows) == 900, timeout=30)
        state = topic_states(app, ["orders.created"])[0]
        wait_until(
            lambda: all(g.pending == 0 for g in topic_states(app, ["orders.created"])[0].groups)
        )
    for group in ("billing", "shipping", "notify"):
        assert seen.payloads(group) == list(range(300)), group
    assert state.length == 300  # events are kept for the retention period
    # both workers took part in each group (shared, not duplicated)
    consumers = {first.worker.consumer, second.worker.consumer}
    assert len(consumers) == 2
    assert first.worker.processed > 0 and second.worker.processed > 0
    assert first.worker.processed + second.worker.processed == 900


def test_message_of_a_topic_event(app):
    got = []

    @app.subscriber("users.signed_up", group="welcome")
    async def welcome(message):
        got.append(message)

    with WorkerThread(app):
        wait_until(lambda: groups_ready(app, "users.signed_up", 1))
        event_id = app.publish("users.signed_up", {"user": 7}, headers={"source": "web"})
        wait_until(lambda: got)
    [message] = got
    assert (message.id, message.topic, message.group) == (event_id, "users.signed_up", "welcome")
    assert (message.payload, message.headers, message.attempt) == (
        {"user": 7},
        {"source": "web"},
        1,
    )


async def test_publish_async(app, client):
    event_id = await app.publish_async("t", [1, 2])
    await app.aclose()
    [(_, fields)] = client.xrange(app.topic_keys("t").stream)
    assert protocol.decode(fields[b"m"]).id == event_id
    assert client.smembers("sw:topics") == {b"t"}


def test_a_failing_group_retries_and_dead_letters_without_touching_the_others(app):
    seen = Seen()

    @app.subscriber("orders.created", group="billing", max_retries=2, backoff=FAST)
    def billing(message):
        seen.add("billing", message.attempt, message.payload)
        raise RuntimeError("card service down")

    @app.subscriber("orders.created", group="shipping")
    def shipping(message):
        seen.add("shipping", message.attempt, message.payload)

    billing_source = app.topic_source("orders.created", "billing")
    with WorkerThread(app):
        wait_until(lambda: groups_ready(app, "orders.created", 2))
        app.publish_many("orders.created", [1, 2])
        wait_until(lambda: dead_letters.count(app.connection, billing_source) == 2, timeout=20)
    assert sorted(r[1:] for r in seen.rows if r[0] == "billing") == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (3, 1),
        (3, 2),
    ]
    assert sorted(r[1:] for r in seen.rows if r[0] == "shipping") == [(1, 1), (1, 2)]
    assert dead_letters.count(app.connection, app.topic_source("orders.created", "shipping")) == 0
    [letter, _] = dead_letters.list_dead_letters(app.connection, billing_source)
    assert letter.letter.reason == "failed 3 attempts (max_retries=2)"
    assert letter.letter.queue == "orders.created/billing"


def test_replaying_a_groups_dead_letter_reaches_that_group_only(app):
    seen = Seen()
    fail = {"on": True}

    @app.subscriber("orders.created", group="billing", max_retries=0)
    def billing(message):
        seen.add("billing", 0, message.payload)
        if fail["on"]:
            raise Reject("no card on file")

    @app.subscriber("orders.created", group="shipping")
    def shipping(message):
        seen.add("shipping", 0, message.payload)

    drain(app)  # creates the groups
    app.publish("orders.created", 42)
    drain(app)
    source = app.topic_source("orders.created", "billing")
    assert dead_letters.count(app.connection, source) == 1
    fail["on"] = False
    assert dead_letters.replay(app.connection, source).replayed == 1
    drain(app)
    assert seen.payloads("billing") == [42, 42]
    assert seen.payloads("shipping") == [42]


@pytest.mark.parametrize(("start", "expected"), [("new", [3]), ("beginning", [1, 2, 3])])
def test_a_group_created_later_starts_where_it_chose(redis_url, start, expected):
    publisher = App(redis_url)
    publisher.publish_many("news", [1, 2])
    app = App(redis_url)
    got = []

    @app.subscriber("news", group="late", start=start)
    def late(message):
        got.append(message.payload)

    with WorkerThread(app) as runner:
        wait_until(lambda: runner.worker.session is not None and runner.worker.in_flight == 0)
        wait_until(
            lambda: (
                app.connection.redis.exists(app.topic_keys("news").stream)
                and app.connection.redis.xinfo_groups(app.topic_keys("news").stream)
            )
        )
        publisher.publish("news", 3)
        wait_until(lambda: 3 in got)
    assert got == expected


def test_subscriber_must_take_one_message_argument(app):
    with pytest.raises(ConfigurationError, match="exactly one argument: the Message"):
        app.subscriber("t", group="g")(lambda a, b: None)
    app.subscriber("t", group="g")(lambda m: None)
    with pytest.raises(ConfigurationError, match="already has a subscriber group 'g'"):
        app.subscriber("t", group="g")(lambda m: None)


def test_worker_can_serve_only_some_topics_and_refuses_unknown_ones(app):
    from streamwork import Worker

    app.subscriber("a", group="g")(lambda m: None)
    app.subscriber("b", group="g")(lambda m: None)
    app.task(name="job")(lambda: None)
    only_a = Worker(app, topics=["a"])
    assert (only_a.queues, only_a.groups) == ([], ["a/g"])
    everything = Worker(app)
    assert (everything.queues, everything.groups) == (["default"], ["a/g", "b/g"])
    with pytest.raises(
        ConfigurationError, match="unknown topic 'c': this app's subscribers read a, b"
    ):
        Worker(app, topics=["c"])


def stream_ids(client, app, topic):
    return [entry_id for entry_id, _ in client.xrange(app.topic_keys(topic).stream)]


def test_retention_trims_what_every_group_is_done_with(app, client):
    app.topic("metrics", max_len=10)
    got = Counter()

    @app.subscriber("metrics", group="a")
    def a(message):
        got["a"] += 1

    @app.subscriber("metrics", group="b")
    def b(message):
        got["b"] += 1

    with WorkerThread(app, visibility_timeout=0.2) as runner:  # scans every 0.1 s
        wait_until(lambda: groups_ready(app, "metrics", 2))
        app.publish_many("metrics", range(50))
        wait_until(lambda: got == {"a": 50, "b": 50}, timeout=20)
        wait_until(lambda: client.xlen(app.topic_keys("metrics").stream) == 10, timeout=20)
    assert runner.worker.processed == 100


def test_retention_never_drops_events_a_group_has_not_read(app, client, caplog):
    import logging

    from prometheus_client import REGISTRY

    app.topic("audit", max_len=5)
    release = threading.Event()

    @app.subscriber("audit", group="fast")
    def fast(message): ...

    @app.subscriber("audit", group="stuck")
    def stuck(message):
        release.wait(30)

    with WorkerThread(
        app, ["default"] if False else None, topics=["audit"], visibility_timeout=0.2, concurrency=2
    ) as runner:
        wait_until(lambda: client.exists(app.topic_keys("audit").stream))
        app.publish_many("audit", range(20))
        with caplog.at_level(logging.WARNING):
            wait_until(lambda: "past retention are kept" in caplog.text, timeout=20)
        # "stuck" holds two events pending and has 18 unread: nothing of them is dropped
        assert client.xlen(app.topic_keys("audit").stream) == 20
        held = REGISTRY.get_sample_value("streamwork_topic_held_entries", {"topic": "audit"})
        assert held == 15
        release.set()
        wait_until(lambda: client.xlen(app.topic_keys("audit").stream) == 5, timeout=20)
    assert runner.worker.processed == 40


def test_retention_with_drop_unread_drops_and_counts(app, client):
    from prometheus_client import REGISTRY

    app.topic("firehose", max_len=5, drop_unread=True)
    before = (
        REGISTRY.get_sample_value("streamwork_topic_dropped_entries_total", {"topic": "firehose"})
        or 0
    )
    seen = []
    app.subscriber("firehose", group="never")(seen.append)
    stream = app.topic_keys("firehose").stream
    client.xgroup_create(stream, "never", id="$", mkstream=True)
    app.publish_many("firehose", range(20))
    from streamwork._redis.scripts import Scripts

    assert Scripts(client).trim_topic(stream, 5, None, True) == [0, 0, 15]
    assert client.xlen(stream) == 5
    with WorkerThread(app, topics=["firehose"], visibility_timeout=0.2):
        wait_until(lambda: app.connection.redis.xinfo_groups(stream)[0]["consumers"] == 1)
        # one at a time, each read before the next: never more than one unread, and a
        # trim to 5 keeps the newest (a burst could be trimmed before a loaded worker read it)
        wait_until(lambda: len(seen) == 5, timeout=20)  # the five the first trim kept
        for n in range(20):
            app.publish("firehose", n)
            wait_until(lambda n=n: len(seen) == 6 + n, timeout=20)
        wait_until(lambda: client.xlen(stream) == 5, timeout=20)
    after = (
        REGISTRY.get_sample_value("streamwork_topic_dropped_entries_total", {"topic": "firehose"})
        or 0
    )
    assert after == before  # the worker read them all before they were trimmed: none unread


def test_topic_states_report_lag_pending_and_consumers(app, client):
    app.subscriber("t", group="g1")(lambda m: None)
    stream = app.topic_keys("t").stream
    client.xgroup_create(stream, "g1", id="$", mkstream=True)
    client.xgroup_create(stream, "g2", id="$")
    app.publish_many("t", range(5))
    client.xreadgroup("g1", "c1", {stream: ">"}, count=2)
    # c1's heartbeat, as a worker's lease loop writes it: it serves g1 for 30 s more
    client.zadd(app.topic_source("t", "g1").workers, {"c1": protocol.now_ms() + 30_000})
    [state] = topic_states(app, ["t"])
    groups = {g.group: g for g in state.groups}
    assert state.length == 5 and state.added == 5
    assert (groups["g1"].lag, groups["g1"].pending, groups["g1"].consumers) == (3, 2, 1)
    assert (groups["g2"].lag, groups["g2"].pending, groups["g2"].consumers) == (5, 0, 0)


def test_delayed_publish_reaches_every_group_when_due(app):
    seen = Seen()
    for group in ("a", "b"):
        app.subscriber("reminders", group=group)(
            lambda message, group=group: seen.add(group, protocol.now_ms(), message.payload)
        )
    with WorkerThread(app):
        wait_until(lambda: groups_ready(app, "reminders", 2))
        sent_at = protocol.now_ms()
        app.publish("reminders", "later", delay=0.4)
        app.publish("reminders", "now")
        wait_until(lambda: len(seen.rows) == 4)
    for group in ("a", "b"):
        rows = {r[2]: r[1] for r in seen.rows if r[0] == group}
        assert rows["later"] - sent_at >= 400 and rows["now"] < rows["later"]


def test_manual_ack_subscriber(app):
    decisions = []

    @app.subscriber("jobs.done", group="audit", ack_mode="manual", max_retries=0)
    def audit(message):
        decisions.append(message.payload)
        if message.payload == "keep":
            message.ack()
        else:
            message.nack(requeue=False, reason="not auditable")

    drain(app)
    app.publish_many("jobs.done", ["keep", "drop"])
    drain(app)
    assert sorted(decisions) == ["drop", "keep"]
    [state] = topic_states(app, ["jobs.done"])
    assert (state.groups[0].pending, state.groups[0].dead_letters) == (0, 1)
