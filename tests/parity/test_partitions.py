"""Partitioned queues and partition keys behave the same on Redis and on memory://: a
queue spread over N streams, shown as one; the messages of one partition key run one at a
time in send order, through retries, dead letters, cancellation and purges."""

import asyncio

import pytest

from streamwork import App, ConfigurationError, Retry
from streamwork._base import protocol
from streamwork._redis import registry
from streamwork.ops import stats
from streamwork.ops.dead_letters import replay
from streamwork.testing import run_until_idle


def by_key(seen, key):
    return [n for k, n in seen if k == key]


def test_a_partitioned_queue_spreads_sends_and_shows_as_one(app):
    seen = []

    @app.task(queue="orders", partitions=3, store_result=True)
    def place(n):
        seen.append(n)
        return n * 2

    handles = [place.send(n) for n in range(9)]
    handles += place.send_many(range(9, 12))
    assert [h.partition for h in handles[:9]] == [0, 1, 2] * 3
    assert {h.partition for h in handles[9:]} == {0}  # one batch of a many-send: one partition
    for number in range(3):
        assert app.connection.redis.xlen(app.keys(f"orders~{number}").stream) >= 3
    waiting = stats.queue_state(app, "orders")
    assert waiting.ready == 12 and [p.ready for p in waiting.partitions] == [6, 3, 3]
    run_until_idle(app)
    assert sorted(seen) == list(range(12))
    assert handles[4].result(timeout=5) == 8
    assert app.handle("place", handles[4].id).status().state == "done"
    state = stats.queue_state(app, "orders")
    assert state.done == 12 and [p.queue for p in state.partitions] == [
        "orders~0",
        "orders~1",
        "orders~2",
    ]
    assert registry.known_queues(app) == ["orders"]


def test_messages_of_one_key_run_one_at_a_time_in_send_order(app):
    seen, running, overlaps = [], set(), []

    @app.task(queue="orders", partitions=4)
    async def step(key, n):
        if key in running:
            overlaps.append((key, n))
        running.add(key)
        await asyncio.sleep(0.002 * (n % 3))  # later ones could overtake earlier ones
        running.discard(key)
        seen.append((key, n))

    for n in range(15):
        for key in ("alice", "bob", "carol", "dave", "erin"):
            step.send_with(args=(key, n), partition_key=key)
    run_until_idle(app)
    assert overlaps == []
    for key in ("alice", "bob", "carol", "dave", "erin"):
        assert by_key(seen, key) == list(range(15))
    client = app.connection.redis
    for number in range(4):  # every key's order is gone once its messages finished
        assert client.smembers(app.keys(f"orders~{number}").order_prefix + "ordered") == set()


def test_a_partition_key_orders_a_plain_queue_too(app):
    seen = []

    @app.task
    async def step(key, n):
        await asyncio.sleep(0.001 * ((7 - n) % 4))
        seen.append((key, n))

    for n in range(8):
        step.send_with(args=("k", n), partition_key="k")
    run_until_idle(app)
    assert by_key(seen, "k") == list(range(8))


def test_a_retry_keeps_its_place_and_other_keys_go_on(app):
    seen, failures = [], []

    @app.task(queue="orders", partitions=2, backoff=lambda attempt: 5.0)
    def step(key, n):
        if key == "slow" and n == 0 and len(failures) < 2:
            failures.append(n)
            raise Retry(delay=5)
        seen.append((key, n))

    for n in range(4):
        step.send_with(args=("slow", n), partition_key="slow")
        step.send_with(args=("fast", n), partition_key="fast")
    run_until_idle(app)  # no time passes: the retry is not due, "slow" waits behind it
    assert by_key(seen, "fast") == [0, 1, 2, 3] and by_key(seen, "slow") == []
    run_until_idle(app, advance_time=True)
    assert by_key(seen, "slow") == [0, 1, 2, 3] and len(failures) == 2


def test_a_dead_letter_lets_the_next_run_and_runs_unordered_when_replayed(app):
    seen = []

    @app.task(queue="orders", partitions=2, max_retries=0)
    def step(key, n):
        if n == 1 and not seen.count(("k", 0)) > 1:
            raise ValueError("bad order line")
        seen.append((key, n))

    handles = [step.send_with(args=("k", n), partition_key="k") for n in range(3)]
    run_until_idle(app)
    assert by_key(seen, "k") == [0, 2]
    assert handles[1].status().state == "failed"
    source = app.queue_source(f"orders~{handles[1].partition}")
    seen.append(("k", 0))  # the handler succeeds from now on
    assert replay(app.connection, source).replayed == 1
    run_until_idle(app)
    assert by_key(seen, "k") == [0, 2, 0, 1]


def test_cancelling_a_waiting_or_retrying_message_lets_the_key_go_on(app):
    seen = []

    @app.task(queue="orders", partitions=2)
    def step(key, n):
        if n == 0 and len(seen) == 0:
            seen.append(("first try", 0))
            raise Retry(delay=60)
        seen.append((key, n))

    handles = [step.send_with(args=("k", n), partition_key="k") for n in range(3)]
    run_until_idle(app)  # 0 waits to retry; 1 and 2 wait for their turn behind it
    assert by_key(seen, "k") == []
    assert handles[1].cancel() == "cancelled"  # waiting for its turn: never runs
    assert handles[0].status().state == "retrying"
    assert handles[0].cancel() == "cancelled"  # retrying: leaves the delayed set
    run_until_idle(app)
    assert by_key(seen, "k") == [2]
    assert [h.status().state for h in handles] == ["cancelled", "cancelled", "done"]


def test_a_purge_clears_the_keys_orders(app):
    seen = []

    @app.task(queue="orders", partitions=2)
    def step(key, n):
        if n == 0:
            raise Retry(delay=60)
        seen.append((key, n))

    for n in range(3):
        step.send_with(args=("k", n), partition_key="k")
    run_until_idle(app)  # 0 retries later; 1 and 2 wait for their turn
    waiting, delayed = app.purge("orders")
    assert (waiting, delayed) == (2, 1)
    step.send_with(args=("k", 5), partition_key="k")
    run_until_idle(app)
    assert by_key(seen, "k") == [5]


def test_sends_with_one_idempotency_key_meet_in_one_partition(app):
    @app.task(queue="orders", partitions=4)
    def pay(n):
        pass

    first = pay.send_with(args=(1,), key="payment-1")
    again = pay.send_with(args=(1,), key="payment-1")
    assert again.is_duplicate and again.id == first.id


def test_workflow_steps_and_schedule_ticks_reach_a_partitioned_queue(app):
    seen = []

    @app.task(queue="orders", partitions=3, store_result=True)
    def add(a, b):
        seen.append((a, b))
        return a + b

    app.schedule("tick", add, every=60, args=(0, 0))
    flow = (add.s(1, 2) | add.s(10)).send()
    run_until_idle(app, advance_time=61)
    assert flow.result(timeout=5) == 13
    assert (0, 0) in seen


@pytest.mark.parametrize(
    ("declare", "error"),
    [
        ({"partitions": 0}, "partitions must be 1-1024"),
        ({"partitions": "4"}, "partitions must be a whole number"),
        ({"partitions": 2, "rate_limit": "5/s"}, "rate_limit is not available"),
        ({"partitions": 2, "concurrency_limit": 2}, "concurrency_limit is not available"),
        ({"partitions": 2, "priority": "high"}, "priority is not available"),
        ({"partitions": 2, "fair_by": "n"}, "fair_by is not available"),
    ],
)
def test_bad_partition_declarations_are_refused(app, declare, error):
    with pytest.raises(ConfigurationError, match=error):

        @app.task(queue="orders", **declare)
        def step(n):
            pass


def test_a_queue_keeps_one_partition_count(app):
    app.queue("orders", partitions=4)
    with pytest.raises(ConfigurationError, match="has 4 partitions already"):

        @app.task(queue="orders", partitions=2)
        def step(n):
            pass

    with pytest.raises(ConfigurationError, match="rate_limit is not available"):

        @app.task(queue="orders", rate_limit="1/s")
        def other(n):
            pass

    @app.task(queue="payments", rate_limit="1/s")
    def pay(n):
        pass

    with pytest.raises(ConfigurationError, match="'pay': rate_limit is not available"):
        app.queue("payments", partitions=2)
    assert app.partitions("payments") == 1 and app.partitions("orders") == 4


@pytest.mark.parametrize("key", ["", 7, "x" * 201])
def test_bad_partition_keys_are_refused_and_nothing_is_sent(app, key):
    @app.task(queue="orders", partitions=2)
    def step(n):
        pass

    with pytest.raises(ConfigurationError, match="partition_key must be a string"):
        step.send_with(args=(1,), partition_key=key)
    assert stats.queue_state(app, "orders").ready == 0


def test_a_partition_key_needs_an_outcome_per_message(app):
    @app.task(ack_mode="auto")
    def step(n):
        pass

    with pytest.raises(ConfigurationError, match="ack_mode='auto'"):
        step.send_with(args=(1,), partition_key="k")


def test_message_ids_name_their_partition(app):
    @app.task(queue="orders", partitions=3)
    def step(n):
        pass

    handle = step.send(1)
    assert protocol.ID.fullmatch(handle.id) and handle.id.endswith(f"-p{handle.partition}")
    assert step.handle(handle.id).status().state == "queued"


def test_events_of_a_partitioned_queue_come_from_every_partition(app):
    recording = App(app.url, events=True)

    @recording.task(queue="orders", partitions=3)
    def step(n):
        pass

    handles = [step.send(n) for n in range(3)] + step.send_many([(9,)])
    run_until_idle(recording)
    events = recording.read_events("orders")
    done = {(e.queue, e.message_id) for e in events if e.event == "done"}
    assert done == {(f"orders~{h.partition}", h.id) for h in handles}


def test_a_fair_tasks_keyed_sends_go_to_the_queue_in_order(app):
    seen = []

    @app.task(fair_by="customer")
    async def export(customer, n):
        await asyncio.sleep(0.001 * ((5 - n) % 3))
        seen.append((customer, n))

    for n in range(6):
        export.send_with(args=("acme", n), partition_key="acme")
    run_until_idle(app)
    assert by_key(seen, "acme") == list(range(6))
    fair = app.keys("default").fair("export")
    assert app.connection.redis.llen(f"{fair}q:acme") == 0  # never in the fair key's list


def test_metrics_show_the_queue_once_and_each_partition(app):
    from streamwork.ops.metrics import QueueCollector

    @app.task(queue="orders", partitions=3, max_retries=0)
    def fragile(n):
        raise ValueError("no")

    fragile.send(0)
    run_until_idle(app)  # one dead letter, in partition 0
    for n in range(4):
        fragile.send(n)  # waiting: partitions 1, 2, 0, 1
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in QueueCollector(app).collect()
        for sample in family.samples
    }
    assert samples[("streamwork_backlog", (("group", ""), ("queue", "orders")))] == 4
    backlog = [
        samples[("streamwork_partition_backlog", (("partition", str(n)), ("queue", "orders")))]
        for n in range(3)
    ]
    assert backlog == [1, 2, 1]
    dead = [
        samples[("streamwork_partition_dead_letters", (("partition", str(n)), ("queue", "orders")))]
        for n in range(3)
    ]
    assert dead == [1, 0, 0]
    assert not any("orders~" in str(labels) for _, labels in samples)
