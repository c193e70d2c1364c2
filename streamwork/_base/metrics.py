"""Prometheus metrics: what worker processes and producers count.

Owns metric names and labels (`streamwork_` prefix; labels `queue` — a queue, or the topic
of a subscriber —, `group` — the subscriber group, "" for queues —, and `task`; never ids).
Other modules call the small functions here; only the two servers below import
prometheus_client too.
Worker processes write to prometheus-client's multiprocess files; the supervisor serves
their sum (`_worker/serving.py`) and the queue gauges read at scrape time (`ops/metrics.py`).
"""

from __future__ import annotations

import bisect
import logging
import threading
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from .keys import Source

log = logging.getLogger("streamwork.metrics")

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
EXPIRED = Counter(
    "streamwork_tasks_expired",
    "Messages not started by their deadline (expires=): never run, not retried.",
    RUN_LABELS,
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
    RUN_LABELS,
    multiprocess_mode="livesum",
)
BATCH_SIZE = Histogram(
    "streamwork_batch_messages",
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

_OUTCOMES = {"done": SUCCEEDED, "retry": RETRIED, "dead": DEAD_LETTERED, "expired": EXPIRED}


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
        self.in_flight = IN_FLIGHT.labels(*labels)
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


def expired(queue: str, group: str, task: str) -> None:
    """An expired message moved to the dead letters (dead_letter_expired): it counts as
    expired too (an expired outcome counts itself when written)."""
    EXPIRED.labels(queue, group, task).inc()


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


_SENDS: dict[str, tuple[Any, Any]] = {}
"""Each queue's (sent counter, send time histogram) children: looked up once, not per send."""


def sent(queue: str, count: int, seconds: float) -> None:
    children = _SENDS.get(queue)
    if children is None:
        children = _SENDS[queue] = (SENT.labels(queue), SEND_TIME.labels(queue))
    children[0].inc(count)
    children[1].observe(seconds)


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


def record_retention(topic: str, held: int, dropped: int) -> None:
    TOPIC_HELD.labels(topic).set(held)
    if dropped:
        TOPIC_DROPPED.labels(topic).inc(dropped)


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
