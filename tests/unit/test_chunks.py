"""Short sync handlers run several to a pool thread, short async ones several in one
asyncio task (Runner.run_chunk): each message keeps its own outcome (done, retried,
dead-lettered, cancelled, also while it runs), and only handlers known to be short are
chunked."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from streamwork import App, Backoff
from streamwork._base import protocol, tracing
from streamwork._worker.execution import CHUNK_SECONDS, MAX_CHUNK, MAX_SYNC_CHUNK, Runner
from streamwork._worker.runs import Delivery, Run


def deliveries(app, task, args_list):
    source = app.queue_source("default")
    found = []
    for n, args in enumerate(args_list):
        envelope = protocol.Envelope(
            id=f"m{n}", task=task, args=args, enqueued_ms=protocol.now_ms()
        )
        found.append(Delivery(source, f"{n + 1}-0".encode(), {b"m": protocol.encode(envelope)}))
    return found


def chunk(app, task, args_list, before=None):
    """The (run, outcome) pairs of one chunk, and the threads its handlers ran on."""
    with ThreadPoolExecutor(4) as threads:
        runner = Runner(app.tasks, app.subscribers, "consumer-1", threads)
        runs = [runner.prepare(d) for d in deliveries(app, task, args_list)]
        assert all(isinstance(run, Run) for run in runs)
        if before is not None:
            before(runs)
        return asyncio.run(runner.run_chunk(runs, lambda *a: None))


def test_each_message_of_a_chunk_keeps_its_own_outcome():
    app = App("redis://127.0.0.1:1/0", max_retries=1, backoff=Backoff(1, 1))
    threads_seen = []

    @app.task(retry_on=(ValueError,))
    def job(n):
        threads_seen.append(threading.get_ident())
        if n == 2:
            raise ValueError("two is bad")
        if n == 4:
            raise TypeError("not retryable here")

    results = chunk(app, "job", [(n,) for n in range(6)])
    kinds = [outcome.kind for _, outcome in results]
    assert kinds == ["done", "done", "retry", "done", "dead", "done"]
    assert len(set(threads_seen)) == 1  # one hand-off for the six
    assert "two is bad" in results[2][1].error


def test_a_message_cancelled_before_its_turn_never_runs():
    app = App("redis://127.0.0.1:1/0")
    ran = []

    @app.task
    def job(n):
        ran.append(n)

    results = chunk(
        app, "job", [(0,), (1,), (2,)], before=lambda runs: runs[1].request_cancel("no")
    )
    assert [outcome.kind for _, outcome in results] == ["done", "cancelled", "done"]
    assert ran == [0, 2]


def test_bad_arguments_in_a_chunk_are_dead_lettered_alone():
    app = App("redis://127.0.0.1:1/0")

    @app.task
    def job(n):
        pass

    results = chunk(app, "job", [(1,), (1, 2), (3,)])
    assert [outcome.kind for _, outcome in results] == ["done", "dead", "done"]


def test_only_handlers_known_to_be_short_are_chunked(monkeypatch):
    monkeypatch.setattr(tracing, "active", lambda: False)  # traced runs are never chunked
    app = App("redis://127.0.0.1:1/0")

    @app.task
    def short(n): ...

    @app.task
    async def coroutine(n): ...

    @app.task(timeout=5)
    def limited(n): ...

    with ThreadPoolExecutor(1) as threads:
        runner = Runner(app.tasks, app.subscribers, "consumer-1", threads)

        def run_of(task):
            return runner.prepare(deliveries(app, task, [(1,)])[0])

        assert runner.chunk_size(run_of("short")) == 1  # not measured yet
        runner.observe_time("short", 0.0001)
        assert runner.chunk_size(run_of("short")) == min(
            MAX_SYNC_CHUNK, int(CHUNK_SECONDS / 0.0001)
        )
        for _ in range(30):  # the average falls under 2 ms / 128 per run
            runner.observe_time("short", 0.0)
        assert runner.chunk_size(run_of("short")) == MAX_SYNC_CHUNK > MAX_CHUNK
        monkeypatch.setattr(tracing, "active", lambda: True)
        assert runner.chunk_size(run_of("short")) == 1  # its span must be current in its thread
        monkeypatch.setattr(tracing, "active", lambda: False)
        for _ in range(30):
            runner.observe_time("short", 0.05)  # it became slow: one message per thread
        assert runner.chunk_size(run_of("short")) == 1
        runner.observe_time("coroutine", 0.0001)  # an async handler that awaits something
        runner.observe_time("limited", 0.0001)
        assert runner.chunk_size(run_of("coroutine")) == 1
        assert runner.chunk_size(run_of("limited")) == 1
        for _ in range(30):
            runner.observe_time("coroutine", 0.00001)  # it never waits: runs in chunks
        assert runner.chunk_size(run_of("coroutine")) == MAX_CHUNK


def test_async_runs_of_a_chunk_share_a_task_and_keep_their_outcomes():
    app = App("redis://127.0.0.1:1/0", max_retries=1, backoff=Backoff(1, 1))
    tasks_seen = []

    @app.task(retry_on=(ValueError,))
    async def job(n):
        tasks_seen.append(asyncio.current_task())
        if n == 1:
            raise ValueError("one is bad")
        if n == 3:
            raise TypeError("not retryable here")
        return n

    results = chunk(app, "job", [(n,) for n in range(5)], before=lambda runs: None)
    assert [outcome.kind for _, outcome in results] == ["done", "retry", "done", "dead", "done"]
    assert len(set(map(id, tasks_seen))) == 1


def test_cancelling_a_running_async_run_of_a_chunk_cancels_it_alone():
    app = App("redis://127.0.0.1:1/0")
    ran, runs_of = [], {}

    @app.task
    async def job(n):
        ran.append(n)
        if n == 1:
            runs_of["all"][1].request_cancel("stop it")  # as a cancel request would
            await asyncio.sleep(10)
        await asyncio.sleep(0)  # the runs after it still await normally
        ran.append(-n)

    results = chunk(
        app,
        "job",
        [(0,), (1,), (2,), (3,)],
        before=lambda runs: (runs_of.update(all=runs), runs[3].request_cancel("before")),
    )
    kinds = [outcome.kind for _, outcome in results]
    assert kinds == ["done", "cancelled", "done", "cancelled"]
    assert results[1][1].error == "stop it"
    assert ran == [0, 0, 1, 2, -2]


def test_a_chunk_measures_each_handler():
    app = App("redis://127.0.0.1:1/0")

    @app.task
    def nap(seconds):
        time.sleep(seconds)

    results = chunk(app, "nap", [(0.0,), (0.03,), (0.0,)])
    assert [outcome.run_ms for _, outcome in results][1] >= 30
    assert results[0][1].run_ms < 30 and results[2][1].run_ms < 30


def test_a_sync_handler_is_timed_in_its_thread_not_by_the_wait_for_one():
    app = App("redis://127.0.0.1:1/0")

    @app.task
    def quick(n):
        return n

    with ThreadPoolExecutor(1) as threads:
        runner = Runner(app.tasks, app.subscribers, "consumer-1", threads)
        [run] = [runner.prepare(d) for d in deliveries(app, "quick", [(1,)])]

        async def behind_a_busy_thread():
            busy = asyncio.get_running_loop().run_in_executor(threads, time.sleep, 0.05)
            outcome = await runner.run(run, lambda *a: None)
            await busy
            return outcome

        assert asyncio.run(behind_a_busy_thread()).kind == "done"
        assert runner._run_times["quick"] < 0.01  # it waited 50 ms for the thread, ran µs
