"""Peers on the same Redis, measured when installed: enqueue rate (one at a time), drain
rate of no-op tasks by one worker process, and idle latency (send → handler start).

Each peer runs with its default settings but one worker process; streamwork's figure from
the same run is divided by the peer's, so a ratio above 1 means streamwork is ahead
(for latency: the peer's p50 divided by ours).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = {"celery": "celery", "rq": "rq", "dramatiq": "dramatiq", "arq": "arq"}
DRAIN = 1_000
SINGLES = 1_000
SAMPLES = 100
LATENCY_BUDGET = 5.0
"""Seconds of latency sampling per peer and run (arq polls every 0.5 s: 10 samples)."""


def installed(peer: str) -> bool:
    return importlib.util.find_spec(PEERS[peer]) is not None


class Peer:
    """How to enqueue to, drain and serve one peer."""

    def __init__(self, name: str, bench: Any) -> None:
        import peer_apps

        self.name = name
        self.apps = peer_apps
        self.stop = bench.stop

    # enqueue one at a time
    def enqueue(self, count: int, fn: str = "noop", arg: Any = None) -> None:
        apps = self.apps
        if self.name == "rq":
            from rq import Queue

            queue = Queue(f"{apps.PREFIX}-rq", connection=apps._redis)
            target = apps.noop if fn == "noop" else apps.latency_probe
            for n in range(count):
                queue.enqueue(target, n if arg is None else arg)
        elif self.name == "dramatiq":
            actor = apps.dramatiq_noop if fn == "noop" else apps.dramatiq_probe
            for n in range(count):
                actor.send(n if arg is None else arg)
        elif self.name == "celery":
            task = apps.celery_noop if fn == "noop" else apps.celery_probe
            for n in range(count):
                task.delay(n if arg is None else arg)
        elif self.name == "arq":
            asyncio.run(self._arq_enqueue(count, fn, arg))

    async def _arq_enqueue(self, count: int, fn: str, arg: Any) -> None:
        from arq import create_pool

        pool = await create_pool(self.apps.arq_settings())
        name = "arq_noop" if fn == "noop" else "arq_probe"
        for n in range(count):
            await pool.enqueue_job(name, n if arg is None else arg, _queue_name=self.apps.ARQ_QUEUE)
        await pool.aclose()

    def drain_seconds(self, count: int) -> float:
        """Seconds one worker process takes to run `count` queued no-op tasks."""
        self.enqueue(count)
        apps = self.apps
        if self.name == "rq":
            from rq import Queue, SimpleWorker

            queue = Queue(f"{apps.PREFIX}-rq", connection=apps._redis)
            started = time.perf_counter()
            # Its per-job INFO log lines would be timed too: warnings only, as for streamwork.
            SimpleWorker([queue], connection=apps._redis).work(burst=True, logging_level="WARNING")
            return time.perf_counter() - started
        if self.name == "dramatiq":
            import dramatiq

            worker = dramatiq.Worker(apps.dramatiq_broker, worker_threads=8)
            started = time.perf_counter()
            worker.start()
            apps.dramatiq_broker.join("bench")
            elapsed = time.perf_counter() - started
            worker.stop()
            return elapsed
        if self.name == "arq":
            return asyncio.run(self._arq_drain())
        # celery: a solo worker process, timed until its queue is empty
        process = self.serve()
        queue = f"{apps.PREFIX}:celery"
        started = time.perf_counter()
        while apps._redis.llen(queue) > 0:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        self.stop(process)
        return elapsed

    async def _arq_drain(self) -> float:
        from arq.worker import Worker

        apps = self.apps
        # arq's Worker takes the event loop when it is built: build it inside the loop.
        worker = Worker(
            functions=[apps.arq_noop, apps.arq_probe], redis_settings=apps.arq_settings(),
            queue_name=apps.ARQ_QUEUE, burst=True, handle_signals=False, max_jobs=100,
        )  # fmt: skip
        started = time.perf_counter()
        await worker.main()
        elapsed = time.perf_counter() - started
        await worker.close()
        return elapsed

    def serve(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(HERE / "peer_apps.py"), "serve", self.name],
            cwd=HERE, env={**os.environ, "PYTHONPATH": str(HERE)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def latency_ms(self, samples: int) -> list[float]:
        apps = self.apps
        process = self.serve()
        apps._redis.delete(apps.LATENCY_KEY)
        try:
            self.enqueue(1, "probe", time.time_ns())  # wait for the worker to be up
            if apps._redis.blpop([apps.LATENCY_KEY], timeout=60) is None:
                raise TimeoutError(f"{self.name} worker did not start")
            values: list[float] = []
            deadline = time.monotonic() + LATENCY_BUDGET
            while len(values) < samples and (len(values) < 10 or time.monotonic() < deadline):
                self.enqueue(1, "probe", time.time_ns())
                reply = apps._redis.blpop([apps.LATENCY_KEY], timeout=30)
                if reply is None:
                    raise TimeoutError(f"{self.name} did not run the probe")
                values.append(int(reply[1]) / 1e6)
            return values
        finally:
            self.stop(process)


REQUIRED = ("celery", "rq", "dramatiq")
"""The peers of the `bench` extra: one missing or failing is an error of the benchmark
(arq needs another redis-py than Celery, so it is measured only where it is installed)."""


def run_all(bench: Any, runs: int) -> list[str]:
    """Measure every installed peer; returns what went wrong (empty when all ran)."""
    errors = []
    for name in PEERS:
        if not installed(name):
            if name in REQUIRED:
                errors.append(f"peer {name}: not installed (pip install -e '.[bench]')")
            else:
                print(f"peer {name}: not installed, skipped", file=sys.stderr)
            continue
        peer = Peer(name, bench)
        for run in range(runs):
            print(f"run {run + 1}/{runs}: peer {name}", file=sys.stderr, flush=True)
            try:
                started = time.perf_counter()
                peer.enqueue(SINGLES)
                enqueue_rate = SINGLES / (time.perf_counter() - started)
                bench.clean()
                drain_rate = DRAIN / peer.drain_seconds(DRAIN)
                bench.clean()
                latency = statistics.median(peer.latency_ms(SAMPLES))
                bench.clean()
            except Exception as exc:  # the others still run; the benchmark fails at the end
                errors.append(f"peer {name} failed: {type(exc).__name__}: {exc}")
                print(errors[-1], file=sys.stderr)
                bench.clean()
                break
            bench.record(f"{name}: enqueue one at a time", "task/s", enqueue_rate)
            bench.record(f"{name}: drain, one worker process", "task/s", drain_rate)
            bench.record(
                f"{name}: idle latency send → start p50", "ms", latency, higher_is_better=False
            )
    for name in PEERS:
        if f"{name}: enqueue one at a time" not in bench.results:
            continue
        for ours, theirs, target in (
            ("task.send, one at a time", f"{name}: enqueue one at a time", 5.0),
            ("task.send_many", f"{name}: enqueue one at a time", 5.0),
            ("drain, one process, async handlers", f"{name}: drain, one worker process", 5.0),
        ):
            bench.compare(f"{ours} vs {theirs}", ours, theirs, target)
        bench.compare(
            f"streamwork vs {name}: latency (theirs / ours)",
            f"{name}: idle latency send → start p50",
            "idle latency send → handler start p50",
            1.0,
        )
    return errors
