"""Prometheus metrics: what worker processes and producers count, and what the supervisor
reads from Redis at scrape time.

Owns metric names and labels (`streamwork_` prefix; labels `queue` — a queue, or the topic
of a subscriber —, `group` — the subscriber group, "" for queues —, and `task`; never ids).
Other modules call the small functions here; nothing else imports prometheus_client.
Worker processes write to prometheus-client's multiprocess files; the supervisor serves
their sum and the queue gauges, and on the same port its health probes (/healthz, /readyz).
"""

from __future__ import annotations

import bisect
import glob
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis.exceptions
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import MetricsHandler

from . import stats
from .errors import StreamworkError
from .schedules import Schedules

if TYPE_CHECKING:
    from .connection import NamespaceView
    from .keys import Source

log = logging.getLogger(__name__)

LOST_OWNERSHIP = Counter(
    "streamwork_lost_ownership",
    "Outcomes dropped because another worker had claimed the entry (a frozen worker).",
    ["queue"],
)
LOST_ENTRIES = Counter(
    "streamwork_lost_entries",
    "Entries found deleted from the stream while pending (trimmed or XDEL'd by someone else).",
    ["queue"],
)

TOPIC_HELD = Gauge(
    "streamwork_topic_held_entries",
    "Events past a topic's retention kept because a subscriber group has not read or "
    "acknowledged them (a slow or stopped group).",
    ["topic"],
    multiprocess_mode="livemax",
)
TOPIC_DROPPED = Counter(
    "streamwork_topic_dropped_entries",
    "Events a topic's retention removed before every group had read them (drop_unread).",
    ["topic"],
)


BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Seconds: from sub-millisecond handlers to ten-minute jobs."""

RUN_LABELS = ["queue", "group", "task"]
STARTED = Counter("streamwork_tasks_started", "Handler runs started.", RUN_LABELS)
SUCCEEDED = Counter("streamwork_tasks_succeeded", "Runs that ended done.", RUN_LABELS)
FAILED = Counter(
    "streamwork_tasks_failed", "Runs whose handler raised, timed out or nacked.", RUN_LABELS
)
RETRIED = Counter("streamwork_tasks_retried", "Retries scheduled after a failure.", RUN_LABELS)
DEAD_LETTERED = Counter(
    "streamwork_tasks_dead_lettered", "Messages moved to the dead letters.", RUN_LABELS
)
RUN_TIME = Histogram(
    "streamwork_task_run_seconds", "How long handlers ran.", RUN_LABELS, buckets=BUCKETS
)
WAIT_TIME = Histogram(
    "streamwork_task_wait_seconds",
    "How long messages waited from ready (sent, or due) to their handler's start.",
    RUN_LABELS,
    buckets=BUCKETS,
)
IN_FLIGHT = Gauge(
    "streamwork_tasks_in_flight",
    "Messages running now.",
    ["queue", "group"],
    multiprocess_mode="livesum",
)
BATCH_SIZE = Histogram(
    "streamwork_batch_size",
    "Messages per call of a batch handler (batch_size): how full its batches run.",
    RUN_LABELS,
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
SENT = Counter("streamwork_sent", "Messages sent or published by this process.", ["queue"])
SEND_TIME = Histogram(
    "streamwork_send_seconds",
    "How long a send or publish took (a batch counts once).",
    ["queue"],
    buckets=BUCKETS,
)

_OUTCOMES = {"done": SUCCEEDED, "retry": RETRIED, "dead": DEAD_LETTERED}


def labels_of(source: Source) -> tuple[str, str]:
    """(queue, group) labels: the queue and "", or the topic and the subscriber group."""
    if source.topic is not None:
        return source.topic, source.group
    return source.queue, ""  # a partition counts as its queue


class _Observations:
    """Observations of one histogram child not yet written: a count per bucket and a sum.

    Written in one step per bucket touched (`flush`), not one multiprocess-file write per
    observation: prometheus-client's histogram child keeps a value per bucket (`_buckets`,
    not cumulative) and `_sum`, which `observe` increments one observation at a time."""

    __slots__ = ("bounds", "child", "counts", "sum")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds: list[float] = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def add(self, amount: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1
        self.sum += amount

    def flush(self) -> None:
        if any(self.counts):
            self.child._sum.inc(self.sum)
            for i, count in enumerate(self.counts):
                if count:
                    self.child._buckets[i].inc(count)
            self.counts = [0] * len(self.bounds)
            self.sum = 0.0


class _RunMetrics:
    """The labelled children for one (source, task), looked up once, and what the runs of
    this process added to them since the last `flush()`: counted in memory per message,
    written to prometheus-client (a multiprocess file write each) once per batch."""

    def __init__(self, source: Source, task: str) -> None:
        queue, group = labels_of(source)
        labels = (queue, group, task)
        self.started = STARTED.labels(*labels)
        self.failed = FAILED.labels(*labels)
        self.wait = _Observations(WAIT_TIME.labels(*labels))
        self.run = _Observations(RUN_TIME.labels(*labels))
        self.in_flight = IN_FLIGHT.labels(queue, group)
        self.outcomes = {kind: metric.labels(*labels) for kind, metric in _OUTCOMES.items()}
        self.n_started = 0
        self.n_failed = 0
        self.n_in_flight = 0
        self.n_outcomes = dict.fromkeys(self.outcomes, 0)

    def flush(self) -> None:
        if self.n_started:
            self.started.inc(self.n_started)
            self.n_started = 0
        if self.n_failed:
            self.failed.inc(self.n_failed)
            self.n_failed = 0
        if self.n_in_flight:
            self.in_flight.inc(self.n_in_flight)
            self.n_in_flight = 0
        self.wait.flush()
        self.run.flush()
        for kind, count in self.n_outcomes.items():
            if count:
                self.outcomes[kind].inc(count)
                self.n_outcomes[kind] = 0


_RUN_METRICS: dict[tuple[str, str, str], _RunMetrics] = {}
"""By (stream, group, task): a later worker in this process makes equal Sources of its own,
and comparing two Sources field by field would cost every lookup."""
_UNWRITTEN: set[_RunMetrics] = set()
_LOCK = threading.Lock()
"""Runs of workers in several threads of one process (tests) share the counts."""


def _run_metrics(source: Source, task: str) -> _RunMetrics:
    key = (source.stream, source.group, task)
    found = _RUN_METRICS.get(key)
    if found is None:
        found = _RUN_METRICS[key] = _RunMetrics(source, task)
    _UNWRITTEN.add(found)
    return found


def run_started(source: Source, task: str, wait_seconds: float | None) -> None:
    """A handler started, after waiting `wait_seconds` in the queue (None: not known)."""
    with _LOCK:
        found = _run_metrics(source, task)
        found.n_started += 1
        if wait_seconds is not None:
            found.wait.add(wait_seconds)
        found.n_in_flight += 1


def run_ended(source: Source, task: str, run_seconds: float, is_failure: bool) -> None:
    with _LOCK:
        found = _run_metrics(source, task)
        found.run.add(run_seconds)
        found.n_in_flight -= 1
        if is_failure:
            found.n_failed += 1


def outcome_written(source: Source, task: str, kind: str) -> None:
    with _LOCK:
        _run_metrics(source, task).n_outcomes[kind] += 1


def flush() -> None:
    """Write what runs counted since the last flush (workers call it after each batch
    dispatched and each batch of outcomes written, and once a second)."""
    with _LOCK:
        for found in _UNWRITTEN:
            found.flush()
        _UNWRITTEN.clear()


def batch_ran(source: Source, task: str, size: int) -> None:
    queue, group = labels_of(source)
    BATCH_SIZE.labels(queue, group, task).observe(size)


def sent(queue: str, count: int, seconds: float) -> None:
    SENT.labels(queue).inc(count)
    SEND_TIME.labels(queue).observe(seconds)


CANCELLED = Counter(
    "streamwork_runs_cancelled",
    "Messages cancelled: before they ran (settled unrun) or while running.",
    RUN_LABELS,
)


def run_cancelled(queue: str, group: str, task: str) -> None:
    CANCELLED.labels(queue, group, task).inc()


def count_lost_ownership(queue: str, n: int = 1) -> None:
    LOST_OWNERSHIP.labels(queue).inc(n)


def count_lost_entries(queue: str, n: int) -> None:
    LOST_ENTRIES.labels(queue).inc(n)


# -- aggregation across worker processes (served by the supervisor) --------------------------

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> str:
    """Set up the directory worker processes write their metrics to, empty; returns it.

    Must run before worker processes start: they inherit the environment variable and
    prometheus-client reads it when first imported in them.
    """
    path = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="streamwork-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    os.environ[MULTIPROC_ENV] = path
    return path


class SupervisorMetrics:
    """The supervisor's /metrics: every worker process's metrics, plus its own."""

    def __init__(self, path: str, app: NamespaceView | None = None) -> None:
        self.path = path
        self.health = Health(app)
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=path)
        if app is not None:
            self.registry.register(QueueCollector(app))
        self.processes = Gauge(
            "streamwork_worker_processes",
            "Worker processes running under this supervisor.",
            registry=self.registry,
        )
        self.restarts = Counter(
            "streamwork_worker_restarts",
            "Worker processes restarted after they died or recycled themselves.",
            ["reason"],
            registry=self.registry,
        )

    def serve(self, port: int, address: str) -> None:
        """Serve /metrics, /healthz and /readyz on `address`:`port` from a daemon thread."""
        serve_http(port, address, self.registry, self.health)

    def process_exited(self, pid: int) -> None:
        """Drop the live gauges of a process that ended, so none go stale."""
        multiprocess.mark_process_dead(pid, self.path)


@dataclass(frozen=True)
class Serving:
    """What the supervisor says of its worker processes, for /readyz."""

    expected: int
    serving: int
    """Processes alive that have started serving (read their queues once)."""
    stopping: bool = False


class Health:
    """The answers of /healthz and /readyz, as (HTTP status, JSON body).

    - /healthz: the supervisor is up (it serves this); 200 whenever it answers.
    - /readyz: Redis answers a PING and every worker process is serving (and the worker is
      not stopping); else 503, saying which. Kubernetes takes a pod out of its Service's
      endpoints while it is not ready, and restarts it when /healthz stops answering.
    """

    def __init__(self, app: NamespaceView | None) -> None:
        self.app = app
        self.started = time.monotonic()
        self.processes: Callable[[], Serving] | None = None
        """Set by the supervisor once it runs."""

    def live(self) -> tuple[int, dict[str, Any]]:
        uptime = round(time.monotonic() - self.started, 3)
        return 200, {"status": "ok", "pid": os.getpid(), "uptime_seconds": uptime}

    def ready(self) -> tuple[int, dict[str, Any]]:
        checks: dict[str, Any] = {}
        is_ready = True
        if self.app is not None:
            try:
                self.app.connection.ping()
                checks["redis"] = "ok"
            except (StreamworkError, redis.exceptions.RedisError) as exc:
                checks["redis"] = str(exc)
                is_ready = False
        if self.processes is None:
            checks["processes"] = {"expected": None, "serving": 0}
            is_ready = False
        else:
            state = self.processes()
            checks["processes"] = {"expected": state.expected, "serving": state.serving}
            if state.stopping:
                checks["stopping"] = True
            if state.stopping or state.serving < state.expected:
                is_ready = False
        body = {"status": "ready" if is_ready else "not ready", **checks}
        return (200 if is_ready else 503), body


def serve_http(port: int, address: str, registry: CollectorRegistry, health: Health) -> Any:
    """Start the supervisor's HTTP server (metrics and probes) in a daemon thread."""

    class Handler(MetricsHandler.factory(registry)):  # type: ignore[misc]
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/healthz":
                self._answer(*health.live())
            elif path == "/readyz":
                self._answer(*health.ready())
            else:
                super().do_GET()

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a probe every few seconds is not news

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    server = Server((address, port), Handler)
    threading.Thread(target=server.serve_forever, name="streamwork-http", daemon=True).start()
    return server


def record_retention(topic: str, held: int, dropped: int) -> None:
    TOPIC_HELD.labels(topic).set(held)
    if dropped:
        TOPIC_DROPPED.labels(topic).inc(dropped)


class QueueCollector:
    """Queue and topic gauges read from Redis at scrape time (served by the supervisor).

    Per queue and per subscriber group: backlog (a queue's ready entries, a group's lag),
    pending, delayed, dead letters, oldest pending age and consumers; per queue and topic,
    entries added (a counter: `rate()` of it is the arrival rate λ). If Redis does not
    answer, the scrape still succeeds with `streamwork_redis_up 0`.
    """

    def __init__(self, app: NamespaceView) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:

        up = GaugeMetricFamily("streamwork_redis_up", "1 when Redis answered this scrape.")
        try:
            queues = stats.queue_states(self.app, stats.known_queues(self.app))
            topics = stats.topic_states(self.app, stats.known_topics(self.app))
        except (StreamworkError, redis.exceptions.RedisError) as exc:
            log.error("metrics: cannot read queues from Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        labels = ["queue", "group"]
        family = {
            name: GaugeMetricFamily(f"streamwork_{name}", text, labels=labels)
            for name, text in (
                ("backlog", "Messages waiting for a worker: a queue's ready entries, a "
                 "subscriber group's lag."),
                ("pending", "Messages delivered and not yet acknowledged (running)."),
                ("delayed", "Delayed messages and scheduled retries."),
                ("dead_letters", "Messages in the dead letters."),
                ("oldest_pending_age_seconds", "Age of the oldest unacknowledged message."),
                (
                    "consumers",
                    "Live consumers (worker processes) serving it: their heartbeat is current.",
                ),
                ("held", "Messages waiting for a concurrency slot (concurrency_limit)."),
            )
        }  # fmt: skip
        added = CounterMetricFamily(
            "streamwork_entries_added",
            "Entries ever added to the stream (sends, retries, replays): rate() is λ.",
            labels=["queue"],
        )
        now_ms = time.time() * 1000

        def add(key: list[str], backlog: int | None, state: Any, delayed: int) -> None:
            values: dict[str, Any] = {
                "backlog": backlog,  # None: Redis cannot tell a group's lag after trims
                "pending": state.pending,
                "delayed": delayed,
                "dead_letters": state.dead_letters,
                "oldest_pending_age_seconds": _age(state.oldest_pending_ms, now_ms),
                "consumers": state.consumers,
                "held": getattr(state, "held", None),  # queues only
            }
            for name, value in values.items():
                if value is not None:
                    family[name].add_metric(key, value)

        bands = GaugeMetricFamily(
            "streamwork_band_backlog",
            "A queue with priority bands: each band's ready messages.",
            labels=["queue", "band"],
        )
        fair = GaugeMetricFamily(
            "streamwork_fair_backlog",
            "Fair tasks: messages waiting in their keys' lists, for the keys with the largest "
            'backlogs (at most 10 label values per queue; key="(other)" sums the rest).',
            labels=["queue", "task", "key"],
        )
        partitions = {
            name: GaugeMetricFamily(
                f"streamwork_partition_{name}", text, labels=["queue", "partition"]
            )
            for name, text in (
                ("backlog", "A partitioned queue: each partition's ready messages."),
                ("pending", "A partitioned queue: each partition's running messages."),
                ("dead_letters", "A partitioned queue: each partition's dead letters."),
            )
        }
        for queue in queues:
            add([queue.queue, ""], queue.ready, queue, queue.delayed)
            added.add_metric([queue.queue], queue.added)
            for number, part in enumerate(queue.partitions or ()):
                partitions["backlog"].add_metric([queue.queue, str(number)], part.ready)
                partitions["pending"].add_metric([queue.queue, str(number)], part.pending)
                partitions["dead_letters"].add_metric([queue.queue, str(number)], part.dead_letters)
            for band, ready in (queue.bands or {}).items():
                bands.add_metric([queue.queue, band], ready)
            if queue.fair_keys is not None:
                shown = 0
                for row in queue.fair_keys:
                    fair.add_metric([queue.queue, row["task"], row["key"]], row["backlog"])
                    shown += row["backlog"]
                fair.add_metric([queue.queue, "", "(other)"], queue.fair_backlog - shown)
        for topic in topics:
            added.add_metric([topic.topic], topic.added)
            for group in topic.groups:
                add([topic.topic, group.group], group.lag, group, group.retrying)
        yield from family.values()
        yield added
        yield bands
        yield fair
        yield from partitions.values()
        yield from _schedule_families(self.app)


def _schedule_families(app: NamespaceView) -> Iterator[Any]:
    """Per schedule: last and next run, period, paused (read from Redis at scrape time)."""
    try:
        found = Schedules(app.connection, app.namespace).all()
    except (StreamworkError, redis.exceptions.RedisError) as exc:
        log.error("metrics: cannot read schedules from Redis: %s", exc)
        return
    labels = ["schedule", "task", "queue"]
    last = GaugeMetricFamily(
        "streamwork_schedule_last_run_timestamp_seconds",
        "Due time of the schedule's last tick enqueued (Unix seconds).",
        labels=labels,
    )
    nxt = GaugeMetricFamily(
        "streamwork_schedule_next_run_timestamp_seconds",
        "When the schedule's next tick is due (Unix seconds); absent when paused or ended.",
        labels=labels,
    )
    period = GaugeMetricFamily(
        "streamwork_schedule_period_seconds",
        "Seconds between two ticks (cron: the next two).",
        labels=labels,
    )
    paused = GaugeMetricFamily(
        "streamwork_schedule_paused", "1 while the schedule is paused.", labels=labels
    )
    for schedule in found:
        key = [schedule.id, schedule.task, schedule.queue]
        if schedule.last_run is not None:
            last.add_metric(key, schedule.last_run.timestamp())
        if schedule.next_run is not None:
            nxt.add_metric(key, schedule.next_run.timestamp())
        period.add_metric(key, schedule.period)
        paused.add_metric(key, 1 if schedule.paused else 0)
    yield from (last, nxt, period, paused)


def _age(oldest_ms: int | None, now_ms: float) -> float:
    return 0.0 if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000)


SCHEDULE_TICKS = Counter(
    "streamwork_schedule_ticks",
    "Schedule ticks by outcome: enqueued, skipped (overlap=False and the previous run was "
    "still queued or running), missed (no worker ran in time; catch-up did not run it).",
    ["schedule", "outcome"],
)


def schedule_ticks(schedule: str, outcome: str, n: int) -> None:
    if n:
        SCHEDULE_TICKS.labels(schedule, outcome).inc(n)


WORKFLOWS_STARTED = Counter(
    "streamwork_workflows_started",
    "Workflows sent by this process, by the kind of their root.",
    ["kind"],
)
WORKFLOWS_FINISHED = Counter(
    "streamwork_workflows_finished",
    "Workflows that ended (done, failed, cancelled) or resumed after a failure (a replayed "
    "child succeeded), as recorded by this process.",
    ["outcome"],
)


def workflow_started(kind: str) -> None:
    WORKFLOWS_STARTED.labels(kind).inc()


def workflow_finished(outcome: str) -> None:
    WORKFLOWS_FINISHED.labels(outcome).inc()


HELD_BACK = Counter(
    "streamwork_held_back",
    "Messages held back before they ran — by a rate limit (rate), a concurrency limit "
    "(concurrency) — or handed back by their handler (rate_limited: it raised RateLimited). "
    "Never counted as attempts.",
    [*RUN_LABELS, "reason"],
)


def held_back(queue: str, group: str, task: str, reason: str) -> None:
    HELD_BACK.labels(queue, group, task, reason).inc()
