"""Flow control on a real Redis Cluster (every step in its queue's slot) and the start
step's accounting on a real redis-server: a held message's status, a slot held by a
running entry and freed by its acknowledgement."""

import asyncio
import threading
import time
from collections import Counter

import redis
from redis.crc import key_slot

from streamwork._base import protocol
from streamwork.ops.stats import queue_state, queue_states
from streamwork.testing import WorkerThread, wait_until


def test_limits_on_queues_across_the_cluster(cluster_app):
    queues = ["north", "south", "east"]
    assert len({key_slot(f"sw:{{{q}}}:stream".encode()) for q in queues}) == 3
    running, peak, done = Counter(), Counter(), Counter()
    lock = threading.Lock()
    tasks = []
    for queue in queues:

        @cluster_app.task(queue=queue, name=f"job_{queue}", concurrency_limit=2, rate_limit="50/s")
        async def job(n, queue=queue):
            with lock:
                running[queue] += 1
                peak[queue] = max(peak[queue], running[queue])
            await asyncio.sleep(0.01)
            with lock:
                running[queue] -= 1
                done[queue] += 1

        tasks.append(job)
    for task in tasks:
        task.send_many(range(20))
    with WorkerThread(cluster_app, concurrency=20):
        wait_until(lambda: sum(done.values()) == 60, timeout=60)
        wait_until(lambda: all(s.is_empty for s in queue_states(cluster_app, queues)), timeout=30)
    assert set(peak.values()) == {2} and set(done.values()) == {20}


def test_a_slot_is_held_while_its_entry_runs_and_freed_by_its_ack(app):
    release = threading.Event()

    @app.task(concurrency_limit=1)
    def exclusive(n):
        release.wait(10)

    first, second = exclusive.send(1), exclusive.send(2)
    source = app.queue_source("default")
    slots, held = source.limit("slots", "exclusive"), source.limit("held", "exclusive")
    client = app.connection.redis
    with WorkerThread(app):
        wait_until(lambda: first.status().state == "running")
        wait_until(lambda: client.llen(held) == 1, message="the second waits for the slot")
        assert second.status().state == "queued"
        assert queue_state(app, "default").held == 1
        assert not queue_state(app, "default").is_empty
        (member,) = client.smembers(slots)
        assert member.startswith(source.stream.encode() + b"|")
        release.set()
        wait_until(lambda: second.status().state == "done")
    assert client.llen(held) == 0 and queue_state(app, "default").is_empty
    state = queue_state(app, "default")
    assert state.held_back >= 1 and state.done == 2


def test_the_rate_is_kept_on_redis_time(app):
    @app.task(rate_limit="1/h")
    def hourly():
        pass

    hourly.send(), hourly.send()
    with WorkerThread(app):
        wait_until(lambda: queue_state(app, "default").delayed == 1)
    rate_key = app.queue_source("default").limit("rate", "hourly")
    redis_now_ms = int(app.connection.redis.time()[0]) * 1000
    # the next start is reserved an hour after the first, on Redis's clock
    assert float(app.connection.redis.get(rate_key)) >= redis_now_ms + 3_590_000
    (body, due), *_ = app.connection.redis.zrange(
        app.keys("default").delayed, 0, 0, withscores=True
    )
    assert protocol.decode(body).headers["rate_slot"] == int(due)


def test_priority_bands_on_the_cluster(cluster_app):
    from streamwork import WorkerSettings
    from streamwork.testing import run_until_idle

    order = []

    @cluster_app.task(queue="mixed", priority="low")
    def chore(n):
        order.append(("low", n))

    @cluster_app.task(queue="mixed", priority="high")
    def urgent(n):
        order.append(("high", n))

    chore.send_many(range(5))
    urgent.send_many(range(5))
    keys = cluster_app.keys("mixed")
    assert key_slot(keys.band_stream("high").encode()) == key_slot(keys.stream.encode())
    run_until_idle(cluster_app, settings=WorkerSettings(concurrency=1, batch_size=1))
    assert order == [("high", n) for n in range(5)] + [("low", n) for n in range(5)]


def test_fair_keys_on_the_cluster(cluster_app):
    from streamwork import WorkerSettings
    from streamwork.testing import run_until_idle

    order = []

    @cluster_app.task(queue="tenants", fair_by="tenant", per_key_concurrency=1)
    def work(tenant, n):
        order.append(tenant)

    work.send_many([{"tenant": "a", "n": n} for n in range(50)])
    work.send_many([{"tenant": "b", "n": n} for n in range(5)])
    run_until_idle(cluster_app, settings=WorkerSettings(concurrency=2, batch_size=2))
    assert len(order) == 55
    assert max(i for i, tenant in enumerate(order) if tenant == "b") < 15
    assert queue_state(cluster_app, "tenants").is_empty


def test_a_rate_limit_holds_through_a_storm_of_killed_connections(app, redis_url):
    """Two workers share "5/s" while every connection is killed each 0.1 s: held-back
    messages pile up while the workers back off; when they come back late, each is charged
    again, so no one-second window sees more than the rate plus 20% (6) of starts."""
    starts, lock = [], threading.Lock()

    @app.task(rate_limit="5/s")
    def job(n):
        with lock:
            starts.append(time.time() * 1000)

    job.send_many(range(25))
    killer = redis.Redis.from_url(redis_url)

    def storm():
        end = time.monotonic() + 3
        while time.monotonic() < end:
            killer.client_kill_filter(_type="normal", skipme=True)
            time.sleep(0.1)  # the storm's own pace, not a wait for a condition

    with WorkerThread(app) as first, WorkerThread(app) as second:
        workers = (first, second)
        wait_until(  # both serving (their start-up checks done) before the storm
            lambda: all(w.worker.session and w.worker.session.scanner.beats for w in workers),
            message="both workers serving",
        )
        storming = threading.Thread(target=storm)
        storming.start()
        storming.join()
        wait_until(lambda: len(starts) == 25, timeout=30, message="25 starts")
    killer.close()
    starts.sort()
    busiest = max(sum(1 for s in starts if at <= s < at + 1000) for at in starts)
    assert busiest <= 6, f"{busiest} starts in one second under a 5/s limit"


def test_a_running_worker_takes_a_rate_set_at_run_time_within_a_second(app):
    """`streamwork limits set` reaches a worker already running, without a restart."""
    from streamwork.ops import limits
    from tests.parity.timing import assert_never_early

    starts = []

    @app.task(rate_limit="1000/s")
    def job(n):
        starts.append(protocol.now_ms())

    with WorkerThread(app) as thread:
        wait_until(lambda: thread.worker.session and thread.worker.session.scanner.beats)
        limits.set_rate(app, "job", "2/s")
        asked = time.monotonic()
        overrides = thread.worker.session.overrides
        wait_until(lambda: overrides.rates.get("job") is not None, timeout=5)
        assert time.monotonic() - asked < 2.5
        since = protocol.now_ms()
        for n in range(4):
            job.send(n)
        wait_until(lambda: len(starts) == 4, timeout=15)
    assert_never_early(starts, since, per_second=2)


def test_rate_limits_set_at_run_time_on_a_cluster(cluster_app):
    from streamwork.ops import limits
    from streamwork.testing import run_until_idle

    ran = []

    @cluster_app.task(queue="north", rate_limit="1/m")
    def job(n):
        ran.append(n)

    limits.set_rate(cluster_app, "job", "none")
    for n in range(3):
        job.send(n)
    assert run_until_idle(cluster_app).ran == 3
