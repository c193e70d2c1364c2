"""Short sync handlers run several to a pool thread (Runner.run_chunk): each message keeps
its own outcome (done, retried, dead-lettered, cancelled), and only handlers known to be
short are chunked."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from streamwork import App, Backoff, protocol, tracing
from streamwork.execution import CHUNK_SECONDS, MAX_CHUNK, Delivery, Run, Runner


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
        assert runner.chunk_size(run_of("short")) == min(MAX_CHUNK, int(CHUNK_SECONDS / 0.0001))
        monkeypatch.setattr(tracing, "active", lambda: True)
        assert runner.chunk_size(run_of("short")) == 1  # its span must be current in its thread
        monkeypatch.setattr(tracing, "active", lambda: False)
        for _ in range(30):
            runner.observe_time("short", 0.05)  # it became slow: one message per thread
        assert runner.chunk_size(run_of("short")) == 1
        runner.observe_time("coroutine", 0.0001)
        runner.observe_time("limited", 0.0001)
        assert runner.chunk_size(run_of("coroutine")) == 1
        assert runner.chunk_size(run_of("limited")) == 1


def test_a_chunk_measures_each_handler():
    app = App("redis://127.0.0.1:1/0")

    @app.task
    def nap(seconds):
        time.sleep(seconds)

    results = chunk(app, "nap", [(0.0,), (0.03,), (0.0,)])
    assert [outcome.run_ms for _, outcome in results][1] >= 30
    assert results[0][1].run_ms < 30 and results[2][1].run_ms < 30
