"""streamwork benchmarks: every figure as a ratio to a baseline measured in the same run.

    python benchmarks/run.py                      # own redis-server on a free port, 3 runs
    python benchmarks/run.py --redis-url URL      # an existing Redis (only our keys touched)
    python benchmarks/run.py --runs 1 --tasks 20000 --json results.json

It starts a private `redis-server` (no persistence) unless given --redis-url; everything it
writes lives under a fresh namespace and is deleted at the end, so it never flushes anything
it did not create. Baselines use redis-py + hiredis alone: single XADD round trips,
pipelined XADD, and a drain loop of XREADGROUP COUNT n + XACK + XDEL by one consumer.
Peers (Celery, RQ, Dramatiq, arq) are measured when installed: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
RAW_DRAIN = "raw drain: XREADGROUP 100 + XACK + XDEL"
RAW_REDIS = "µs per message, raw drain: Redis"
RAW_CEILING = "fleet ceiling, raw drain: one Redis drains at most"
RAW_BESIDE_SEND = "raw XADD, one at a time, alternating with task.send"
"""The drain baseline's name: the drains' ratios are to it."""
sys.path.insert(0, str(HERE))


@dataclass
class Result:
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    baseline: str | None = None
    """The result this one is divided by (same run), for the ratio column."""
    target: tuple[str, float] | None = None
    """(">=" or "<=", threshold), or ("±", tolerance) around 1, on the ratio, or on the
    value when there is no baseline."""
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.values)


class Bench:
    """Runs scenarios against one Redis, under a namespace of its own."""

    def __init__(self, url: str, tasks: int, singles: int) -> None:
        self.url = url
        self.tasks = tasks
        self.singles = singles
        self.namespace = f"swbench-{os.urandom(3).hex()}"
        os.environ["STREAMWORK_BENCH_NAMESPACE"] = self.namespace
        os.environ["STREAMWORK_REDIS_URL"] = url
        self.redis = redis.Redis.from_url(url)
        import bench_app

        self.bench = bench_app
        self.app = bench_app.app
        self.results: dict[str, Result] = {}
        self.children: list[subprocess.Popen[bytes]] = []
        self.cluster: Any = None
        """A 3-master Redis Cluster on loopback, started by the first cluster scenario."""

    # -- bookkeeping -----------------------------------------------------------------------

    def record(self, name: str, unit: str, value: float, **meta: Any) -> None:
        result = self.results.setdefault(name, Result(name, unit, **meta))
        result.values.append(value)

    def compare(self, name: str, numerator: str, denominator: str, target: float) -> None:
        """A ratio row: the median of one result over another's (same run)."""
        if numerator in self.results and denominator in self.results:
            ratio = self.results[numerator].median / self.results[denominator].median
            self.results[name] = Result(name, "x", [ratio], target=(">=", target))

    def redis_cpu(self) -> float:
        """Seconds of CPU redis-server has used (user + system), from INFO."""
        info = self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def cpu_per_message(
        self, label: str, python: float | None, redis_cpu: float, count: int,
        redis_target: float | None = None,
    ) -> None:  # fmt: skip
        """Where a drain's time went: this process's CPU and redis-server's, per message;
        with `redis_target`, the Redis figure is held to that many times the raw drain's.
        A drain with a Redis target also records the fleet ceiling it implies: the messages
        per second one Redis (one shard) can drain at that cost, whatever the workers."""
        if not count:
            return
        if python is not None:
            self.record(f"µs per message, {label}: Python", "µs", python / count * 1e6,
                        higher_is_better=False)  # fmt: skip
        meta: dict[str, Any] = {}
        if redis_target is not None:
            meta = {"baseline": RAW_REDIS, "target": ("<=", redis_target)}
        per_message = redis_cpu / count * 1e6
        self.record(f"µs per message, {label}: Redis", "µs", per_message,
                    higher_is_better=False, **meta)  # fmt: skip
        if redis_target is not None and per_message > 0:
            self.record(f"fleet ceiling, {label}: one Redis drains at most", "msg/s",
                        1e6 / per_message, baseline=RAW_CEILING)  # fmt: skip

    def raw_key(self, name: str) -> str:
        return f"{self.namespace}:raw:{{{name}}}"

    def clean(self) -> None:
        """Delete every key this benchmark created (SCAN of its own namespace only)."""
        for key in self.redis.scan_iter(match=f"{self.namespace}:*", count=1000):
            self.redis.delete(key)

    def worker(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamwork", "worker", "bench_app:app", *args,
             "--log-level", "warning"],
            cwd=HERE,
            env={**os.environ, "PYTHONPATH": str(HERE), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.children.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 120.0, interval: float = 0.002
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError("benchmark condition not reached")

    def consumers(self, stream: str) -> int:
        """Consumers registered on `stream` (Redis registers one at its first delivery)."""
        try:
            return sum(g["consumers"] for g in self.redis.xinfo_groups(stream))
        except redis.ResponseError:
            return 0

    def groups(self, stream: str) -> int:
        """Consumer groups on `stream`: a worker creates its group as it starts serving."""
        try:
            return len(self.redis.xinfo_groups(stream))
        except redis.ResponseError:
            return 0

    def drained(self, queue: str) -> bool:
        from streamwork.ops.stats import queue_state

        return queue_state(self.app, queue).is_empty

    # -- baselines: redis-py + hiredis alone -------------------------------------------------

    def payload(self) -> bytes:
        """A message body of the same size as streamwork's for noop(n)."""
        from streamwork._base import protocol

        return protocol.encode(
            protocol.Envelope(
                id=protocol.new_id(), task="noop_sync", args=(12345,), enqueued_ms=protocol.now_ms()
            )
        )

    def raw_single_xadd(self) -> None:
        key, body = self.raw_key("single"), self.payload()
        started = time.perf_counter()
        for _ in range(self.singles):
            self.redis.xadd(key, {b"m": body})
        self.record(
            "raw XADD, one at a time", "msg/s", self.singles / (time.perf_counter() - started)
        )
        self.redis.delete(key)

    def raw_pipelined_xadd(self) -> None:
        key, body = self.raw_key("pipelined"), self.payload()
        started = time.perf_counter()
        for start in range(0, self.tasks, 1000):
            pipe = self.redis.pipeline(transaction=False)
            for _ in range(min(1000, self.tasks - start)):
                pipe.xadd(key, {b"m": body})
            pipe.execute()
        self.record(
            "raw XADD, pipelined x1000", "msg/s", self.tasks / (time.perf_counter() - started)
        )
        self.redis.delete(key)

    def raw_drain(self) -> None:
        key, body = self.raw_key("drain"), self.payload()
        for start in range(0, self.tasks, 1000):
            pipe = self.redis.pipeline(transaction=False)
            for _ in range(min(1000, self.tasks - start)):
                pipe.xadd(key, {b"m": body})
            pipe.execute()
        self.redis.xgroup_create(key, "g", id="0")

        def ack(entries: list[tuple[bytes, Any]]) -> None:
            ids = [entry_id for entry_id, _ in entries]
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(key, "g", *ids)
            pipe.xdel(key, *ids)
            pipe.execute()

        self._raw_loop("raw drain", RAW_DRAIN, key, "g", ack)
        self.record(RAW_CEILING, "msg/s", 1e6 / self.results[RAW_REDIS].values[-1])
        self.redis.delete(key)

    def raw_status_drain(self) -> None:
        """The floor of a drain with status on: the same loop, but each batch goes through
        streamwork's own settle step as a plain message's does (no start step: the entries
        are recorded; the outcome, the status's compact record, XACK and XDEL, atomic) with
        nothing else around it — no handler, no asyncio, no overlap. What Redis spends
        here, a worker cannot avoid."""
        from streamwork._base.keys import queue_source
        from streamwork._base.protocol import decode, entry_body
        from streamwork._redis.scripts import Scripts
        from streamwork._worker.runs import Outcome

        source = queue_source(self.namespace, "floor")
        task = self.bench.floor
        task.send_many(range(self.tasks))
        with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: an earlier run's group
            self.redis.xgroup_create(source.stream, source.group, id="0")
        scripts = Scripts(self.redis)

        def settle(entries: list[tuple[bytes, Any]]) -> None:
            ids = [decode(entry_body(fields)).id for _, fields in entries]
            now = int(time.time() * 1000)
            outcomes = [
                Outcome("done", entry_id, status_key=source.status(i), state="done",
                        task=task.name, attempt=1, run_ms=0, record=True)
                for (entry_id, _), i in zip(entries, ids, strict=True)
            ]  # fmt: skip
            scripts.settle(source, "c", outcomes, is_pending=True, result_ttl_ms=0, now_ms=now)

        self._raw_loop(
            "raw drain, settle step",
            "raw drain + streamwork's settle step (status on)",
            source.stream,
            source.group,
            settle,
            baseline=RAW_DRAIN,
        )
        self.app.purge("floor")

    def _raw_loop(
        self, label: str, name: str, key: str, group: str,
        done: Callable[[list[tuple[bytes, Any]]], None], baseline: str | None = None,
    ) -> None:  # fmt: skip
        """Read `key` as consumer "c" of `group`, 100 entries at a time, until it is empty;
        `done` settles each batch. Records the rate and the CPU per message as `name`."""
        count = 0
        cpu, redis_cpu = time.process_time(), self.redis_cpu()
        started = time.perf_counter()
        while True:
            reply = self.redis.xreadgroup(group, "c", {key: ">"}, count=100)
            if not reply:
                break
            entries = reply[0][1]
            done(entries)
            count += len(entries)
        self.record(name, "msg/s", count / (time.perf_counter() - started), baseline=baseline)
        self.cpu_per_message(label, time.process_time() - cpu, self.redis_cpu() - redis_cpu, count)

    # -- streamwork ------------------------------------------------------------------------

    def sw_send(self) -> None:
        # In alternating blocks with raw XADDs, each pair under the same conditions: a
        # single send is one round trip, and this machine's round trip alone varied 1.5x
        # from one scenario's window to the next.
        key, body, task = self.raw_key("beside-send"), self.payload(), self.bench.noop_sync
        raw = sent = 0.0
        blocks = 10
        for _block in range(blocks):
            started = time.perf_counter()
            for _ in range(self.singles // blocks):
                self.redis.xadd(key, {b"m": body})
            raw += time.perf_counter() - started
            started = time.perf_counter()
            for n in range(self.singles // blocks):
                task.send(n)
            sent += time.perf_counter() - started
        count = blocks * (self.singles // blocks)
        self.record(RAW_BESIDE_SEND, "msg/s", count / raw)
        self.record(
            "task.send, one at a time",
            "task/s",
            count / sent,
            baseline=RAW_BESIDE_SEND,
            target=(">=", 0.80),
        )
        self.redis.delete(key)
        self.app.purge("sync")

    def sw_send_many(self) -> None:
        self._send_many(self.bench.noop_sync, "sync", "")
        self._send_many(self.bench.noop_untracked, "untracked", ", track_status=False")

    def _send_many(self, task: Any, queue: str, label: str) -> None:
        # From a keyspace without the earlier runs' statuses: otherwise the key table's
        # resizes (a doubling allocates the new table while the old one lives) fall in some
        # runs' windows and not others (397-909 B per message seen in one 3-run median).
        self.clean()
        before = self.redis.info("memory")["used_memory"]
        started = time.perf_counter()
        task.send_many(range(self.tasks))
        self.record(
            f"task.send_many{label}",
            "task/s",
            self.tasks / (time.perf_counter() - started),
            baseline="raw XADD, pipelined x1000",
            target=(">=", 0.70),
        )
        used = self.redis.info("memory")["used_memory"] - before
        self.record(
            f"Redis memory per queued task{label}",
            "bytes",
            used / self.tasks,
            target=("<=", 200 if label else 150),
            higher_is_better=False,
        )
        self.app.purge(queue)

    def sw_drain(
        self, queue: str, task: Any, label: str, target: float | None, app: Any = None,
        suffix: str = "", send: Callable[[], Any] | None = None,
        redis_target: float | None = None,
    ) -> None:  # fmt: skip
        from streamwork import Worker, WorkerSettings

        if send is None:
            task.send_many(range(self.tasks))
        else:
            send()
        worker = Worker(app or self.app, [queue], WorkerSettings(concurrency=100, block=0.1))
        cpu, redis_cpu = time.process_time(), self.redis_cpu()
        started = time.perf_counter()
        asyncio.run(worker.run(burst=True))
        if target is None:  # a feature's cost: against the plain async drain
            meta: dict[str, Any] = {"baseline": "drain, one process, async handlers"}
        else:
            meta = {"baseline": RAW_DRAIN,
                    "target": (">=", target)}  # fmt: skip
        self.record(
            f"drain, one process, {label} handlers{suffix}",
            "task/s",
            worker.processed / (time.perf_counter() - started),
            **meta,
        )
        self.cpu_per_message(
            f"drain, {label}{suffix}",
            time.process_time() - cpu,
            self.redis_cpu() - redis_cpu,
            worker.processed,
            redis_target,
        )

    def sw_drain_sync(self) -> None:
        self.sw_drain("sync", self.bench.noop_sync, "sync", 0.35)

    def sw_drain_async(self) -> None:
        self.sw_drain("async", self.bench.noop_async, "async", 0.50, redis_target=2.0)
        untracked = self.bench.untracked_app
        self.sw_drain(
            "untracked", self.bench.noop_untracked, "async, track_status=False", 0.50, untracked
        )

    def sw_features(self) -> None:
        """The drain of a no-op async task with one feature of the second wave on (events,
        a rate limit, a concurrency limit, a priority band, ten schedules ticking, partition
        keys), each set so that it never holds a message back: its bookkeeping's cost."""
        bench = self.bench
        for queue, task, label, app in (
            ("evented", bench.noop_evented, "events on", bench.events_app),
            ("rated", bench.noop_rated, "a rate limit that never binds", None),
            ("slotted", bench.noop_slotted, "a concurrency limit that never binds", None),
            ("banded", bench.noop_banded, "a priority band", None),
            ("scheduled", bench.noop_scheduled, "10 schedules ticking every second", None),
        ):
            self.sw_drain(queue, task, "async", None, app, suffix=f", {label}")
            self.app.purge(queue)

        def keyed() -> None:  # one at a time: there is no many-send with partition keys
            for n in range(self.tasks):
                bench.noop_keyed.send_with(args=(n,), partition_key=f"key-{n % 1000}")

        label = "a partition key per message (1,000 keys in turn)"
        self.sw_drain("keyed", None, "async", None, suffix=f", {label}", send=keyed)
        self.app.purge("keyed")

    def sw_workflow(self) -> None:
        """A group and a chord of `tasks` / 3 no-op children: sending them, and draining them
        (recording each child in its workflow before its XACK), against plain sends and the
        plain async drain of this run."""
        from streamwork import Worker, WorkerSettings, chord, group

        size = max(1000, self.tasks // 3)
        noop, count = self.bench.noop_async, self.bench.count
        started = time.perf_counter()
        handle = group(noop.s(n) for n in range(size)).send()
        self.record(
            f"group of {size}: send", "task/s", size / (time.perf_counter() - started),
            baseline="raw XADD, one at a time",
        )  # fmt: skip
        for what, baseline in (("group", handle), ("chord", None)):
            if baseline is None:
                handle = chord([noop.s(n) for n in range(size)], count.s()).send()
            worker = Worker(self.app, ["async"], WorkerSettings(concurrency=100, block=0.1))
            started = time.perf_counter()
            asyncio.run(worker.run(burst=True))
            elapsed = time.perf_counter() - started
            assert handle.status().state == "done", handle.status().state
            self.record(
                f"{what} of {size}: drain to its result", "task/s", size / elapsed,
                baseline="drain, one process, async handlers",
            )  # fmt: skip
        assert handle.result(timeout=10) == size

    def sw_fairness(self) -> None:
        """One customer's backlog of `tasks` and another's 10, on a fair task: how many runs
        until the small customer's 10 are done, and the drain against the plain one."""
        from streamwork import Worker, WorkerSettings

        task, order = self.bench.fair_noop, self.bench.FAIR_ORDER
        order.clear()
        task.send_many([{"n": n, "customer": "big"} for n in range(self.tasks)])
        task.send_many([{"n": n, "customer": "small"} for n in range(10)])
        worker = Worker(self.app, ["fair"], WorkerSettings(concurrency=100, block=0.1))
        started = time.perf_counter()
        asyncio.run(worker.run(burst=True))
        elapsed = time.perf_counter() - started
        last = max(i for i, customer in enumerate(order) if customer == "small") + 1
        self.record(
            f"fair_by: runs until the small customer's 10 are done (big: {self.tasks})",
            "runs", last, target=("<=", 110), higher_is_better=False,
        )  # fmt: skip
        self.record(
            "drain, one process, a fair task (2 keys)", "task/s", len(order) / elapsed,
            baseline="drain, one process, async handlers",
        )  # fmt: skip

    def sw_rate(self) -> None:
        """A queue with rate_limit="200/s" drained by `streamwork worker -p 4`: the rate the
        four processes hold together, against the declared one (30 s at full size)."""
        from streamwork._base.handler import Rate

        declared = Rate.parse(self.bench.RATE)
        seconds = max(2.0, min(30.0, self.tasks / 3000))
        count = int(declared.per_second * seconds)
        burst = int(declared.tolerance_ms / declared.interval_ms) + 1
        self.bench.noop_limited.send_many(range(count))
        stream = self.app.keys("limited").stream
        worker = self.worker("-q", "limited", "--burst", "-p", "4", "-c", "100")
        self.wait_for(lambda: self.consumers(stream) >= 1)
        started = time.perf_counter()
        self.wait_for(lambda: self.drained("limited"), timeout=600)
        achieved = (count - burst) / (time.perf_counter() - started)
        worker.wait(60)
        name = f"rate_limit={self.bench.RATE!r}"
        self.record(f"{name}: declared", "task/s", declared.per_second)
        self.record(
            f"{name}: held by 4 processes over {seconds:.0f} s", "task/s", achieved,
            baseline=f"{name}: declared", target=("±", 0.05),
        )  # fmt: skip

    def sw_drain_cli_defaults(self) -> None:
        """`streamwork worker -q async --burst` with every other option its default (a
        process per CPU, concurrency 10): what Redis spends per message when nobody tuned
        the batch sizes (reads and settles batch up to the concurrency)."""
        self.bench.noop_async.send_many(range(self.tasks))
        redis_cpu = self.redis_cpu()
        worker = self.worker("-q", "async", "--burst")
        worker.wait(600)
        used = self.redis_cpu() - redis_cpu
        if not self.drained("async"):
            raise RuntimeError("streamwork worker --burst exited before the queue was empty")
        self.cpu_per_message("streamwork worker, CLI defaults", None, used, self.tasks, 3.0)

    def sw_drain_processes(self) -> None:
        """`--processes 1` and `2`, for the record: on 2 cores with redis-server on one of
        them, the second process measures the machine, not streamwork (no target; the Redis
        CPU per message is the fleet's figure)."""
        stream = self.app.keys("async").stream
        for processes in (1, 2):
            self.bench.noop_async.send_many(range(self.tasks))
            worker = self.worker("-q", "async", "--burst", "-p", str(processes), "-c", "100")
            # From the first consumer's first read (process start-up excluded) to empty.
            self.wait_for(lambda: self.consumers(stream) >= 1)
            started = time.perf_counter()
            # Looked at every 20 ms: each look is several Redis commands, and looking every
            # 2 ms took a share of the Redis CPU the workers were measured on.
            self.wait_for(lambda: self.drained("async"), timeout=600, interval=0.02)
            elapsed = time.perf_counter() - started
            worker.wait(60)
            name = f"streamwork worker --processes {processes}, async"
            meta: dict[str, Any] = {}
            if processes == 2:
                meta = {"baseline": "streamwork worker --processes 1, async"}
            self.record(name, "task/s", self.tasks / elapsed, **meta)

    def sw_partitions(self) -> None:
        """One queue on a 3-master cluster: in one partition (one node's Redis does all of
        its work) and in 6 partitions (spread over the three nodes), drained by
        `streamwork worker -p 2` from the first read to empty."""
        from streamwork import App
        from streamwork.ops import stats
        from streamwork.testing import RedisClusterServers

        if self.cluster is None:
            self.cluster = RedisClusterServers(3).start()
        url = self.cluster.url
        producer = App(url, namespace=self.namespace)
        for queue, name, partitions in (
            ("one_partition", "noop_one_partition", 1),
            ("partitioned", "noop_partitioned", 6),
        ):
            task = producer.task(queue=queue, name=name, partitions=partitions)(lambda n: None)
            task.send_many(range(self.tasks))
            before = _node_cpu(producer)
            worker = self.worker(
                "-q", queue, "--burst", "-p", "2", "-c", "100", STREAMWORK_REDIS_URL=url
            )
            self.wait_for(lambda q=queue: stats.queue_state(producer, q).pending > 0)
            started = time.perf_counter()
            self.wait_for(
                lambda q=queue: stats.queue_state(producer, q).is_empty, timeout=600, interval=0.02
            )
            elapsed = time.perf_counter() - started
            worker.wait(60)
            after = _node_cpu(producer)
            busiest = max(after[node] - before[node] for node in after)
            parts = f"{partitions} partition{'s' * (partitions > 1)}"
            meta: dict[str, Any] = {}
            if partitions > 1:
                meta = {"baseline": "3-master cluster, -p 2: 1 partition",
                        "target": (">=", 1.0)}  # fmt: skip
            self.record(f"3-master cluster, -p 2: {parts}", "task/s", self.tasks / elapsed, **meta)
            self.record(f"µs per message, cluster, {parts}: busiest Redis", "µs",
                        busiest / self.tasks * 1e6, higher_is_better=False)  # fmt: skip
        producer.close()

    def sw_latency(self, samples: int = 1000) -> None:
        worker = self.worker("-q", "latency", "-p", "1")
        self.bench.timed.send(time.time_ns()).result(timeout=60)  # waits for the worker
        starts, completions = [], []
        for _ in range(samples):
            sent = time.time_ns()
            starts.append(self.bench.timed.send(sent).result(timeout=10) / 1e6)
            completions.append((time.time_ns() - sent) / 1e6)
        self.stop(worker)
        for what, values in (("handler start", starts), ("completion", completions)):
            values.sort()
            for label, value, target in (
                ("p50", values[len(values) // 2], 0.3 if what == "handler start" else None),
                ("p99", values[int(len(values) * 0.99)], 1.0 if what == "handler start" else None),
                ("max", values[-1], None),
            ):
                self.record(
                    f"idle latency send → {what} {label}",
                    "ms",
                    value,
                    target=("<=", target) if target else None,
                    higher_is_better=False,
                )

    def sw_fanout(self) -> None:
        events = max(1000, self.tasks // 4)
        stream = self.app.topic_keys("fanout").stream
        worker = self.worker("-t", "fanout", "-p", "1", "-c", "100")
        self.wait_for(lambda: self.groups(stream) >= 3)
        from streamwork.ops.stats import topic_states

        def caught_up() -> bool:
            [state] = topic_states(self.app, ["fanout"])
            return all(g.lag == 0 and g.pending == 0 for g in state.groups)

        started = time.perf_counter()
        self.app.publish_many("fanout", range(events))
        self.wait_for(caught_up, timeout=600)
        self.record(
            "topic fan-out to 3 groups, deliveries",
            "msg/s",
            3 * events / (time.perf_counter() - started),
        )
        self.stop(worker)
        self.redis.delete(stream)

    def sw_recovery(self, visibility: float = 2.0) -> None:
        marker = HERE / f".recovery-{self.namespace}"
        marker.unlink(missing_ok=True)
        options = ("-q", "recovery", "-p", "1", "--visibility-timeout", str(visibility))
        first = self.worker(*options)
        second = self.worker(*options)
        self.bench.stuck_once.send(str(marker))
        self.wait_for(lambda: marker.exists() and marker.read_text().strip())
        child = int(marker.read_text().split()[1])
        time.sleep(1.0)  # both workers are serving by now
        killed = time.time()
        os.kill(child, signal.SIGKILL)
        first.kill()
        first.wait()
        self.wait_for(lambda: len(marker.read_text().splitlines()) >= 2, timeout=60)
        recovered = float(marker.read_text().splitlines()[1].split()[0])
        self.record(
            "recovery after SIGKILL / visibility timeout",
            "x",
            (recovered - killed) / visibility,
            target=("<=", 1.6),
            higher_is_better=False,
        )
        self.stop(second)
        marker.unlink(missing_ok=True)

    def sw_memory(self) -> None:
        worker = self.worker("-q", "sync", "-p", "1", "-c", "100")
        stream = self.app.keys("sync").stream
        self.wait_for(lambda: self.groups(stream) >= 1)
        time.sleep(1.0)  # let the idle process settle before reading its memory
        child = _children(worker.pid)[0]
        idle = _rss_mb(child)
        self.bench.noop_sync.send_many(range(self.tasks))
        self.wait_for(lambda: self.drained("sync"), timeout=600)
        after = _rss_mb(child)
        self.stop(worker)
        self.record(
            "idle worker process RSS", "MB", idle, target=("<=", 60), higher_is_better=False
        )
        self.record(
            f"worker RSS growth over {self.tasks} tasks",
            "MB",
            after - idle,
            target=("<=", 5),
            higher_is_better=False,
        )


def _node_cpu(app: Any) -> dict[str, float]:
    """Each cluster node's redis-server CPU seconds (user + system)."""
    import redis.cluster

    client = app.connection.redis
    found = {}
    for node in client.get_nodes():
        info = client.info("cpu", target_nodes=node)
        found[node.name] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    assert isinstance(client, redis.cluster.RedisCluster)
    return found


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        pids = [int(p) for p in f.read().split()]
    return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


SCENARIOS = {
    "baselines": ["raw_single_xadd", "raw_pipelined_xadd", "raw_drain"],
    "send": ["sw_send", "sw_send_many"],
    "drain": [
        "raw_status_drain",
        "sw_drain_sync",
        "sw_drain_async",
        "sw_drain_cli_defaults",
        "sw_drain_processes",
    ],
    "workflow": ["sw_workflow"],
    "features": ["sw_drain_async", "sw_features"],
    "limits": ["sw_rate", "sw_fairness"],
    "latency": ["sw_latency"],
    "fanout": ["sw_fanout"],
    "recovery": ["sw_recovery"],
    "memory": ["sw_memory"],
    "partitions": ["sw_partitions"],
}


def table(results: dict[str, Result]) -> list[dict[str, Any]]:
    rows = []
    for result in results.values():
        ratio = None
        if result.baseline and result.baseline in results:
            ratio = result.median / results[result.baseline].median
        verdict = ""
        if result.target:
            op, threshold = result.target
            measured = ratio if ratio is not None else result.median
            if op == "±":  # within threshold of 1
                is_met = abs(measured - 1) <= threshold
            else:
                is_met = measured >= threshold if op == ">=" else measured <= threshold
            verdict = "ok" if is_met else "MISS"
        rows.append({
            "scenario": result.name, "unit": result.unit, "median": result.median,
            "min": min(result.values), "max": max(result.values), "runs": len(result.values),
            "baseline": result.baseline, "ratio": ratio,
            "target": f"{result.target[0]} {result.target[1]:g}" if result.target else None,
            "verdict": verdict,
        })  # fmt: skip
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'scenario':<52} {'median':>11} {'min':>11} {'max':>11} {'unit':<6} "
        f"{'ratio':>7} {'target':>8} {'':>4}"
    )
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else ""
        print(
            f"{row['scenario']:<52} {row['median']:>11,.1f} {row['min']:>11,.1f} "
            f"{row['max']:>11,.1f} {row['unit']:<6} {ratio:>7} {row['target'] or '':>8} "
            f"{row['verdict']:>4}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks per drain (100000)")
    parser.add_argument(
        "--singles", type=int, default=5_000, help="sends in the one-at-a-time scenarios (5000)"
    )
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="scenario groups")
    parser.add_argument("--no-peers", action="store_true", help="skip Celery, RQ, Dramatiq, arq")
    parser.add_argument(
        "--json",
        default=str(HERE / "results" / "latest.json"),
        help="where to write the results (default benchmarks/results/latest.json)",
    )
    args = parser.parse_args()

    server = None
    url = args.redis_url
    if url is None:
        from streamwork.testing import RedisServer

        server = RedisServer().start()
        url = server.url
    bench = Bench(url, args.tasks, args.singles)
    groups = ["baselines", *(args.only or [g for g in SCENARIOS if g != "baselines"])]
    # a scenario in two groups (the features' baseline is the async drain) runs once
    names = list(dict.fromkeys(name for group in groups for name in SCENARIOS[group]))
    started = time.monotonic()
    errors: list[str] = []
    try:
        for run in range(args.runs):
            for name in names:
                print(f"run {run + 1}/{args.runs}: {name}", file=sys.stderr, flush=True)
                getattr(bench, name)()
        if not args.no_peers:
            import peers

            errors = peers.run_all(bench, args.runs)
    finally:
        for child in bench.children:
            if child.poll() is None:
                child.kill()
                child.wait()
        bench.clean()
        if server is not None:
            server.cleanup()
        if bench.cluster is not None:
            bench.cluster.cleanup()
    rows = table(bench.results)
    print_table(rows)
    machine = {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "redis": redis.Redis.from_url(url).info()["redis_version"]
        if server is None else server_version(),
        "seconds": round(time.monotonic() - started, 1),
    }  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    print(f"\n{machine}\nwrote {args.json}")
    if errors:  # a peer that did not run is an error of the benchmark, not a skip
        sys.exit("benchmark error:\n" + "\n".join(errors))


def server_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return out.split("v=")[1].split()[0] if "v=" in out else out.strip()


if __name__ == "__main__":
    main()
