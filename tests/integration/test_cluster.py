"""The same App, worker and tools on a real Redis Cluster of three masters on loopback.

Every command streamwork sends must be one the cluster accepts: a CROSSSLOT refusal would
fail these tests (as an exception in a send, a settle, a stats read or a worker loop)."""

import logging
import threading
from collections import Counter

import redis
from redis.crc import key_slot

from streamwork import App, Backoff
from streamwork.ops import dead_letters
from streamwork.ops.stats import queue_states, topic_states
from streamwork.testing import WorkerThread, drain, wait_until

FAST = Backoff(base=0.01, cap=0.05)


def nodes_of(cluster, queues):
    """Which master serves each queue's stream."""
    client = redis.cluster.RedisCluster.from_url(cluster.url)
    try:
        return {queue: client.get_node_from_key(f"sw:{{{queue}}}:stream").name for queue in queues}
    finally:
        client.close()


def test_the_app_detects_the_cluster(cluster):
    import redis.cluster

    assert isinstance(App(cluster.url).connection.redis, redis.cluster.RedisCluster)
    forced = App(cluster.url.replace("redis://", "redis+cluster://"))
    assert isinstance(forced.connection.redis, redis.cluster.RedisCluster)


def test_tasks_on_queues_on_every_node_run_exactly_once(cluster, cluster_app):
    queues = [f"q{n}" for n in range(12)]
    assert len(set(nodes_of(cluster, queues).values())) == 3, "queues should span every node"
    assert len({key_slot(f"sw:{{{q}}}:stream".encode()) for q in queues}) == 12
    runs = Counter()
    lock = threading.Lock()
    tasks = []
    for queue in queues:

        @cluster_app.task(queue=queue, name=f"job_{queue}")
        async def job(n, queue=queue):
            with lock:
                runs[(queue, n)] += 1

        tasks.append(job)
    for task in tasks:
        task.send_many(range(50))
        task.send(50)
    with WorkerThread(cluster_app, concurrency=50):
        wait_until(lambda: len(runs) == 12 * 51, timeout=60)
        wait_until(lambda: all(s.is_empty for s in queue_states(cluster_app, queues)), timeout=30)
    assert set(runs.values()) == {1}
    states = queue_states(cluster_app, queues)  # reads fan out over every node
    assert [s.done for s in states] == [51] * 12


def test_topic_with_two_groups_on_a_cluster(cluster_app):
    seen = Counter()
    lock = threading.Lock()
    for group in ("billing", "shipping"):

        @cluster_app.subscriber("orders.created", group=group, start="beginning")
        def handle(message, group=group):
            with lock:
                seen[(group, message.payload)] += 1

    cluster_app.publish_many("orders.created", range(100))
    drain(cluster_app)
    assert seen == Counter({(g, n): 1 for g in ("billing", "shipping") for n in range(100)})
    [state] = topic_states(cluster_app, ["orders.created"])
    assert {g.group: g.lag for g in state.groups} == {"billing": 0, "shipping": 0}


def test_delays_retries_dead_letters_replay_and_purge_on_a_cluster(cluster_app):
    attempts = Counter()

    @cluster_app.task(queue="payments", max_retries=2, backoff=FAST)
    def charge(order_id):
        attempts[order_id] += 1
        if order_id == 0:
            raise RuntimeError("card declined")

    charge.send_with(args=(0,))
    charge.send_with(args=(1,), delay=0.3)
    charge.send_with(args=(2,), key="order-2")
    assert charge.send_with(args=(2,), key="order-2").is_duplicate
    source = cluster_app.queue_source("payments")
    with WorkerThread(cluster_app):
        wait_until(lambda: dead_letters.count(cluster_app.connection, source) == 1, timeout=30)
        wait_until(lambda: attempts[1] == 1 and attempts[2] == 1, timeout=30)
    assert attempts == Counter({0: 3, 1: 1, 2: 1})
    assert dead_letters.replay(cluster_app.connection, source).replayed == 1
    charge.send_many(range(10, 20))
    charge.send_with(args=(99,), delay=60)
    assert cluster_app.purge("payments") == (11, 1)


def test_resharding_a_busy_queue_loses_and_duplicates_nothing(cluster, cluster_app):
    runs = Counter()
    lock = threading.Lock()

    @cluster_app.task(queue="busy", max_retries=0)
    def job(n):
        with lock:
            runs[n] += 1

    job.send_many(range(10_000))
    stream = cluster_app.keys("busy").stream
    before = cluster.node_of(stream)
    target = next(server for server in cluster.servers if server is not before)
    with WorkerThread(cluster_app, concurrency=50):
        wait_until(lambda: len(runs) > 1000, timeout=30)
        # while the worker drains; the slot holds a status hash per message, so move keys
        # in batches, as `redis-cli --cluster reshard --cluster-pipeline` does
        cluster.migrate_slot(stream, target, batch=100)
        job.send_many(range(10_000, 12_000))  # producers follow the slot too
        wait_until(lambda: len(runs) == 12_000, timeout=120)
        wait_until(lambda: queue_states(cluster_app, ["busy"])[0].is_empty, timeout=60)
    assert cluster.node_of(stream) is target
    assert set(runs.values()) == {1}
    assert queue_states(cluster_app, ["busy"])[0].dead_letters == 0


def test_schedules_tick_once_on_every_node(cluster, cluster_app):
    from streamwork._base.keys import ScheduleKeys

    queues = ["ticks-0", "ticks-1", "ticks-2", "ticks-3", "ticks-4", "ticks-5"]
    assert len(set(nodes_of(cluster, queues).values())) >= 2
    runs = Counter()
    lock = threading.Lock()
    for queue in queues:

        @cluster_app.periodic(every=1, queue=queue, name=f"beat_{queue}", bind=True)
        def beat(message):
            with lock:
                runs[(message.headers["schedule"], message.headers["scheduled_for"])] += 1

    def ticks_per_schedule():
        with lock:
            return Counter(schedule for schedule, _ in runs)

    with WorkerThread(cluster_app), WorkerThread(cluster_app):
        wait_until(
            lambda: len(ticks_per_schedule()) == 6 and min(ticks_per_schedule().values()) >= 2,
            timeout=20,
            message="two ticks of every schedule",
        )
    assert set(runs.values()) == {1}  # no tick ran twice (nothing crashed: runs = enqueues)
    for queue in queues:
        keys = ScheduleKeys("sw", queue, f"beat_{queue}")
        slots = {
            key_slot(k.encode()) for k in (keys.schedule, keys.due, keys.stream, keys.claim(1))
        }
        assert len(slots) == 1
    stored = {s.id: s for s in cluster_app.schedules()}
    assert set(stored) == {f"beat_{q}" for q in queues}
    cluster_app.pause_schedule("beat_ticks-0")
    assert cluster_app.get_schedule("beat_ticks-0").paused
    message_id = cluster_app.trigger_schedule("beat_ticks-1")
    assert message_id and cluster_app.get_schedule("beat_ticks-1").last_message_id == message_id
    cluster_app.unschedule("beat_ticks-2")
    assert len(cluster_app.schedules()) == 5


def test_status_and_cancel_on_a_cluster(cluster, cluster_app):
    import asyncio

    started = threading.Event()

    @cluster_app.task(queue="video", bind=True)
    async def transcode(message, n):
        message.progress(0.1, note="probing")
        if n == 0:
            started.set()
            await asyncio.sleep(30)

    running, queued, delayed = (
        transcode.send(0),
        transcode.send(1),
        transcode.send_with(args=(2,), delay=600),
    )
    keys = cluster_app.keys("video")
    assert len({key_slot(k.encode()) for k in (keys.stream, keys.status(running.id))}) == 1
    assert queued.cancel() == "cancelled" and delayed.cancel() == "cancelled"
    with WorkerThread(cluster_app):
        assert started.wait(10)
        wait_until(lambda: running.status().progress == 0.1)
        assert running.cancel("enough") == "cancelling"
        wait_until(lambda: running.status().state == "cancelled", timeout=5)
    assert [h.status().state for h in (running, queued, delayed)] == ["cancelled"] * 3
    assert queue_states(cluster_app, ["video"])[0].is_empty


def test_a_done_plain_message_s_compact_record_on_a_cluster(cluster_app):
    """The settle's compact record (one SET in the settle's slot) reads and cancels there."""

    @cluster_app.task(queue="mail")
    def job(n):
        pass

    handle = job.send(1)
    with WorkerThread(cluster_app):
        wait_until(lambda: handle.status().is_final, timeout=20)
    key = cluster_app.keys("mail").status(handle.id)
    assert cluster_app.connection.redis.type(key) == b"string"
    status = handle.status()
    assert (status.state, status.attempts, status.task) == ("done", 1, job.name)
    assert handle.cancel() == "finished"


def test_messages_sent_by_entry_are_found_from_their_ids_on_every_node(cluster, cluster_app):
    """A plain send is its entry alone on whichever node holds its queue; its id finds it
    (status, app.handle, cancel) with no status key, in one slot."""
    queues = [f"by-entry{n}" for n in range(6)]
    assert len(set(nodes_of(cluster, queues).values())) >= 2
    tasks = {
        q: cluster_app.task(queue=q, name=f"job_{q.replace('-', '_')}")(lambda: None)
        for q in queues
    }
    handles = {q: task.send() for q, task in tasks.items()}
    many = tasks[queues[0]].send_many([(), (), ()])
    redis_client = cluster_app.connection.redis
    for queue, handle in handles.items():
        assert redis_client.exists(cluster_app.keys(queue).status(handle.id)) == 0
        assert handle.status().state == "queued"
        found = cluster_app.handle(handle.id)
        assert (found.id, found.status().task) == (handle.id, tasks[queue].name)
    assert many[1].cancel() == "cancelled" and many[1].status().state == "cancelled"
    assert drain(cluster_app) == len(queues) + 2
    assert {handle.status().state for handle in handles.values()} == {"done"}
    assert [h.status().state for h in many] == ["done", "cancelled", "done"]


def test_events_of_queues_on_every_node(cluster, cluster_app):
    import asyncio

    app = App(cluster.url, events=True)
    queues = [f"ev{n}" for n in range(6)]
    assert len(set(nodes_of(cluster, queues).values())) >= 2
    handles = []
    for queue in queues:
        task = app.task(queue=queue, name=f"job_{queue}")(lambda: None)
        handles.append(task.send())
    drain(app)
    events = app.read_events(count=100)
    assert {(e.queue, e.event) for e in events} == {
        (q, kind) for q in queues for kind in ("sent", "started", "done")
    }

    async def first(n):
        seen = []
        async for event in app.events(since="0"):
            seen.append(event)
            if len(seen) == n:
                break
        await app.aclose()
        return seen

    followed = asyncio.run(first(18))
    assert sorted((e.queue, e.id) for e in followed) == sorted((e.queue, e.id) for e in events)
    app.close()


def test_a_partitioned_queue_uses_every_node_and_keeps_each_keys_order(cluster, cluster_app):
    partitions = [f"orders~{n}" for n in range(6)]
    assert len(set(nodes_of(cluster, partitions).values())) == 3, "partitions span every node"
    seen = []
    lock = threading.Lock()

    @cluster_app.task(queue="orders", partitions=6, max_retries=1, backoff=FAST)
    async def step(key, n):
        if key == "flaky" and n == 2 and ("flaky", -2) not in seen:
            with lock:
                seen.append(("flaky", -2))
            raise RuntimeError("fails once")
        with lock:
            seen.append((key, n))

    keys = [f"customer-{k}" for k in range(8)] + ["flaky"]
    for n in range(20):
        for key in keys:
            step.send_with(args=(key, n), partition_key=key)
    step.send_many([("any", 1000 + n) for n in range(100)])  # unkeyed: spread, unordered
    cancelled = step.send_with(args=("flaky", 99), partition_key="flaky", delay=60)
    assert cancelled.cancel() == "cancelled"
    with WorkerThread(cluster_app, concurrency=50):
        wait_until(lambda: len(seen) == len(keys) * 20 + 1 + 100, timeout=60)
        wait_until(lambda: queue_states(cluster_app, ["orders"])[0].is_empty, timeout=30)
    for key in keys:
        assert [n for k, n in seen if k == key and n >= 0] == list(range(20)), key
    state = queue_states(cluster_app, ["orders"])[0]
    assert state.done == len(keys) * 20 + 100 and state.retried == 1
    assert len(state.partitions) == 6 and sum(p.done for p in state.partitions) == state.done


def test_a_fair_queue_is_fed_again_once_its_slot_has_moved(cluster, cluster_app, caplog):
    """The fair feed names each key's backlog list in Lua: while the slot migrates, Redis
    refuses a script that touches a key already moved ("non local key") rather than let it
    read the list as empty; the worker waits that out, as it does a redirection, and loses
    and doubles nothing."""
    runs = Counter()
    lock = threading.Lock()

    @cluster_app.task(queue="fairly", fair_by="tenant", per_key_concurrency=2, max_retries=0)
    def job(tenant, n):
        with lock:
            runs[(tenant, n)] += 1

    job.send_many([{"tenant": f"t{n % 40}", "n": n} for n in range(3000)])
    stream = cluster_app.keys("fairly").stream
    source = cluster.node_of(stream)
    target = next(server for server in cluster.servers if server is not source)
    slot = key_slot(stream.encode())
    src, dst = redis.Redis(port=source.port), redis.Redis(port=target.port)
    try:  # half the keys' backlogs move first, as a reshard may move them
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.cluster("myid"))
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.cluster("myid"))
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100_000)
        backlogs = [key for key in keys if b":fair:" in key and b":q:" in key]
        assert len(backlogs) == 40
        src.execute_command(
            "MIGRATE", "127.0.0.1", target.port, "", 0, 10000, "KEYS", *backlogs[:20]
        )
    finally:
        src.close()
        dst.close()
    with caplog.at_level(logging.WARNING), WorkerThread(cluster_app, concurrency=20):
        wait_until(
            lambda: "moving a slot or failing over (Script attempted" in caplog.text, timeout=30
        )
        cluster.migrate_slot(stream, target, batch=100)  # the rest, then the slot's new owner
        job.send_many([{"tenant": f"t{n % 40}", "n": n} for n in range(3000, 4000)])
        wait_until(lambda: len(runs) == 4000, timeout=120)
        wait_until(lambda: queue_states(cluster_app, ["fairly"])[0].is_empty, timeout=60)
    assert cluster.node_of(stream) is target
    assert set(runs.values()) == {1}
    state = queue_states(cluster_app, ["fairly"])[0]
    assert state.dead_letters == 0 and state.fair_backlog == 0


def test_live_workers_are_counted_on_a_cluster(cluster_app):
    from parity.test_live_workers import check_idle_served_queues_count_their_worker

    # busy, idle and the topic group hash to different slots: one heartbeat call spans them
    check_idle_served_queues_count_their_worker(cluster_app)


def test_celery_shaped_calls_on_a_cluster(cluster_app):
    """Routing one message to a queue in another slot, expiry, a failed result's traceback,
    progress data and app.handle(id) on a Redis Cluster (each key in its queue's slot)."""
    import pytest
    from redis.crc import key_slot

    from streamwork import TaskFailed
    from streamwork._base import protocol
    from streamwork.testing import run_until_idle

    app = cluster_app
    app.queue("lopri")
    assert key_slot(b"sw:{lopri}:stream") != key_slot(b"sw:{default}:stream")

    @app.task(store_result=True, bind=True)
    def add(message, a, b):
        message.progress(1.0, data={"sum": a + b})
        return a + b

    @app.task(store_result=True, max_retries=0)
    def divide(a, b):
        return a / b

    routed = add.send_with(args=(2, 3), queue="lopri")
    late = add.send_with(args=(1, 1), expires=30)
    failing = divide.send(1, 0)
    try:
        protocol.advance_clock(60_000)  # `late` waited past its deadline
        run_until_idle(app)
    finally:
        protocol.reset_clock()  # the process back on the real clock for the tests after
    found = app.handle(routed.id)
    assert found.queue == "lopri" and found.result(timeout=5) == 5
    assert found.status().data == {"sum": 5}
    assert late.status().state == "expired"
    with pytest.raises(TaskFailed) as failed:
        failing.result(timeout=5)
    assert "return a / b" in failed.value.traceback


def test_the_backlog_autoscalers_read_on_a_cluster(cluster_app):
    """Everything waiting, read across the nodes: partitions on several slots, a fair
    task's lists, a due delayed message, a declared schedule no worker wrote yet, and a
    subscriber group's lag."""
    from streamwork._base import protocol
    from streamwork.ops.backlog import backlog

    app = cluster_app
    app.queue("orders", partitions=3)

    @app.task(queue="orders")
    def place(n):
        pass

    @app.task(queue="bills", fair_by="customer")
    def bill(customer):
        pass

    @app.task(queue="later")
    def later():
        pass

    app.schedule("nightly", later, cron="0 3 * * *")

    @app.subscriber("readings", group="store", start="beginning")
    def store(message):
        pass

    for n in range(9):
        place.send_with(args=(n,), partition_key=str(n))
    for customer in ("a", "a", "b"):
        bill.send(customer)
    later.send_with(delay=10)
    for n in range(4):
        app.publish("readings", {"n": n})
    try:
        protocol.advance_clock(11_000)
        found = backlog(app).as_dict()
    finally:
        protocol.reset_clock()
    waiting = {name: part["total"] for name, part in found["queues"].items()}
    assert waiting == {"orders": 9, "bills": 3, "later": 2, "readings/store": 4}
    assert found["queues"]["later"]["due"] == 1 and found["queues"]["later"]["schedules"] == 1
    assert found["total"] == 18
