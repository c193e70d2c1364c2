"""A worker against a real Redis: running tasks, concurrency, delays, results, stopping."""

import asyncio
import logging
import threading
import time

import pytest

from streamwork import App, ConfigurationError, ResultTimeout, TaskFailed
from streamwork._base import protocol
from streamwork._redis import commands
from streamwork.ops.stats import queue_state
from streamwork.testing import WorkerThread, drain, wait_until


def test_sync_and_async_tasks_run_and_the_queues_end_empty(app, client):
    seen = []

    @app.task
    def add(a, b):
        seen.append(("add", a + b))

    @app.task(queue="images")
    async def resize(image_id: int):
        await asyncio.sleep(0)
        seen.append(("resize", image_id))

    add.send(1, 2)
    add.send_many([(i, i) for i in range(20)])
    resize.send(7)
    assert drain(app) == 22
    assert sorted(seen) == sorted([("add", 3), *[("add", 2 * i) for i in range(20)], ("resize", 7)])
    for queue in ("default", "images"):
        state = queue_state(app, queue)
        assert state.is_empty and state.dead_letters == 0, state
        # acknowledged entries are deleted: the stream holds backlog + in-flight only
        assert client.xlen(app.keys(queue).stream) == 0


def test_worker_serves_only_the_queues_it_is_given(app):
    @app.task(queue="a")
    def on_a(): ...

    @app.task(queue="b")
    def on_b(): ...

    on_a.send()
    on_b.send()
    assert drain(app, ["a"]) == 1
    assert queue_state(app, "b").ready == 1


def test_unknown_queue_is_refused_when_the_worker_is_built(app):
    @app.task(queue="a")
    def on_a(): ...

    with pytest.raises(ConfigurationError, match="unknown queue 'nope': this app's tasks use a"):
        drain(app, ["nope"])


@pytest.mark.parametrize("is_async", [False, True])
def test_concurrency_bounds_how_many_run_at_once(app, is_async):
    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def enter():
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])

    def leave():
        with lock:
            state["now"] -= 1

    if is_async:

        @app.task
        async def job():
            enter()
            await asyncio.sleep(0.05)
            leave()
    else:

        @app.task
        def job():
            enter()
            time.sleep(0.05)
            leave()

    job.send_many([()] * 12)
    assert drain(app, concurrency=3) == 12
    assert state["most"] == 3


def test_sync_handlers_run_on_threads_not_on_the_event_loop(app):
    threads = set()

    @app.task
    def job():
        threads.add(threading.current_thread().name)

    job.send_many([()] * 5)
    drain(app)
    assert threads and all(name.startswith("streamwork") for name in threads)


def test_delayed_task_runs_only_when_due(app):
    started = {}

    @app.task
    def job(tag):
        started[tag] = protocol.now_ms()

    sent_at = protocol.now_ms()
    job.send_with(args=("late",), delay=0.5)
    job.send("now")
    with WorkerThread(app):
        wait_until(lambda: len(started) == 2, timeout=10)
    assert started["late"] - sent_at >= 500
    assert started["now"] < started["late"]
    assert queue_state(app, "default").is_empty


def test_result_is_returned_to_the_producer(app):
    @app.task(store_result=True)
    def multiply(a, b):
        return {"product": a * b}

    handle = multiply.send(6, 7)
    drain(app)
    assert handle.result(timeout=1) == {"product": 42}
    assert handle.result(timeout=1) == {"product": 42}  # reading keeps it


def test_result_waits_for_a_running_worker(app):
    @app.task(store_result=True)
    async def double(n):
        return n * 2

    with WorkerThread(app):
        handles = double.send_many(range(5))
        assert [h.result(timeout=10) for h in handles] == [0, 2, 4, 6, 8]


async def test_result_async(app):
    @app.task(store_result=True)
    def echo(x):
        return x

    handle = await echo.send_async("hi")
    await asyncio.to_thread(drain, app)
    assert await handle.result_async(timeout=1) == "hi"
    await app.aclose()


def test_result_of_a_dead_lettered_task_is_task_failed(app):
    @app.task(store_result=True, max_retries=0)
    def broken():
        raise ValueError("no stock")

    handle = broken.send()
    drain(app)
    with pytest.raises(TaskFailed, match="ValueError: no stock"):
        handle.result(timeout=1)


def test_result_timeout_says_what_to_check(app):
    @app.task(store_result=True)
    def never(): ...

    with pytest.raises(ResultTimeout, match="is a worker running for queue 'default'"):
        never.send().result(timeout=0.1)


def test_result_without_store_result_is_a_configuration_error(app):
    @app.task
    def job(): ...

    with pytest.raises(ConfigurationError, match="store_result=True"):
        job.send().result(timeout=0.1)


@pytest.mark.parametrize("ack_mode", ["late", "auto"])
def test_stop_lets_running_tasks_finish_and_acknowledges_them(app, client, ack_mode):
    release = threading.Event()
    started = threading.Event()
    finished = []

    @app.task(ack_mode=ack_mode)
    def slow():
        started.set()
        release.wait(10)
        finished.append(True)

    slow.send()
    runner = WorkerThread(app).start()
    assert started.wait(10)
    runner.worker.stop()
    wait_until(lambda: runner.worker.is_stopping, timeout=5)
    assert not finished
    release.set()
    runner.stop()
    assert finished == [True]
    assert queue_state(app, "default").is_empty
    # a cleanly stopped consumer leaves its group
    assert client.xinfo_consumers(app.keys("default").stream, "workers") == []


def test_messages_sent_before_any_worker_existed_are_run(app):
    seen = []

    @app.task
    def job(n):
        seen.append(n)

    job.send_many(range(3))
    drain(app)
    assert sorted(seen) == [0, 1, 2]


def test_many_tasks_each_run_exactly_once_across_two_workers(app):
    counts = {}
    lock = threading.Lock()

    @app.task
    async def job(n):
        with lock:
            counts[n] = counts.get(n, 0) + 1

    job.send_many(range(2000))
    with WorkerThread(app, concurrency=20), WorkerThread(app, concurrency=20):
        wait_until(lambda: len(counts) == 2000, timeout=30)
        wait_until(lambda: queue_state(app, "default").is_empty, timeout=10)
    assert set(counts.values()) == {1}


def test_reads_and_acknowledgements_are_batched(app, client):
    @app.task
    async def noop(n): ...

    noop.send_many(range(1000))
    client.config_resetstat()
    drain(app, concurrency=50)
    stats = client.info("commandstats")
    reads = stats["cmdstat_xreadgroup"]["calls"]
    scripts = stats["cmdstat_evalsha"]["calls"] + stats.get("cmdstat_eval", {}).get("calls", 0)
    assert queue_state(app, "default").is_empty
    # One XREADGROUP per batch of up to 25 (half the concurrency: the next read overlaps
    # the handlers of this one), one settle script call per batch of outcomes.
    assert reads <= 1000 / 25 + 10, reads
    assert scripts <= 1000 / 10, scripts
    # one XACK (and one XDEL) per settle call, for all its entries, inside the script
    assert stats["cmdstat_xack"]["calls"] <= scripts
    assert stats["cmdstat_xdel"]["calls"] <= scripts


def test_burst_worker_reports_what_it_leaves_pending(app, client, caplog):
    @app.task
    def job(n):
        pass

    job.send(1)
    source = app.queue_source("default")
    client.xgroup_create(source.stream, source.group, id="0", mkstream=True)
    client.xreadgroup(source.group, "ghost", {source.stream: ">"}, count=1)  # then "dies"
    job.send(2)
    caplog.set_level(logging.INFO)
    assert drain(app) == 1  # the ghost's entry is not idle past the 30 s timeout yet
    [last] = [r.getMessage() for r in caplog.records if "stopped after" in r.getMessage()]
    assert "left 1 entry pending with other consumers (longest idle" in last
    assert "30s visibility timeout" in last
    caplog.clear()
    wait_until(
        lambda: (
            client.xpending_range(source.stream, source.group, "-", "+", 1)[0][
                "time_since_delivered"
            ]
            >= 100
        ),
        message="the ghost's entry to be idle past 0.1 s",
    )
    drain(app, visibility_timeout=0.1)  # now it may be claimed: it runs, nothing is left
    [last] = [r.getMessage() for r in caplog.records if "stopped after" in r.getMessage()]
    assert last.endswith("stopped after 1 message(s); nothing left pending")


def test_the_grace_period_counts_from_the_stop_request(app):
    """A stop asked while the fetch loop waits in a blocking read (here up to 3 s) still cuts
    a long run off `grace` seconds after the request, not after the read returns."""
    steps = []

    @app.task
    async def encode(video):
        for step in range(100):  # 2 s in all
            await asyncio.sleep(0.02)
            steps.append(step)

    handle = encode.send("movie.mp4")
    worker = WorkerThread(app, block=3.0, grace=0.2).start()
    wait_until(lambda: len(steps) >= 5, message="the run to be under way")
    worker.stop()
    assert 5 <= len(steps) < 100  # cut off at the grace period, not run to the end
    assert handle.status().state == "running"  # its entry stays pending for another worker


def test_a_workers_set_lives_as_long_as_its_longest_heartbeat(client, redis_url):
    """Two workers with different visibility timeouts: the set expires with the later
    heartbeat, never the earlier one's."""

    async def beats():
        app = App(redis_url)
        async_client = app.connection.async_redis()
        now = protocol.now_ms()
        await commands.beat(async_client, ["sw:{q}:workers"], "long", now, now + 300_000)
        await commands.beat(async_client, ["sw:{q}:workers"], "short", now, now + 30_000)
        await app.connection.aclose()

    asyncio.run(beats())
    assert 290_000 < client.pttl("sw:{q}:workers") <= 300_000
    assert client.zcard("sw:{q}:workers") == 2
