"""The queue gauges of the metrics server: what Redis holds for an app's queues, topics and
schedules, read at scrape time (registered on the supervisor's registry by the CLI).

It reads; it never changes a queue. The counters worker processes keep are in
`streamwork._base.metrics`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.exceptions
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase

from .._app.app import App
from .._base import metrics as base_metrics
from .._redis import memory, registry
from .._schedules.schedules import Schedules
from .._worker.serving import SupervisorMetrics
from ..errors import StreamworkError
from . import backlog, stats

if TYPE_CHECKING:
    from .._redis.connection import NamespaceView

log = logging.getLogger("streamwork.metrics")


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
            queues = stats.queue_states(self.app, registry.known_queues(self.app))
            topics = stats.topic_states(self.app, registry.known_topics(self.app))
        except (StreamworkError, redis.exceptions.RedisError) as exc:
            log.error("metrics: cannot read queues from Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _queue_families(queues, topics)
        yield from _schedule_families(self.app)


def _queue_families(
    queues: list[stats.QueueState], topics: list[stats.TopicState]
) -> Iterator[Any]:
    """Per queue and per subscriber group: backlog, pending, delayed, dead letters, oldest
    pending age, consumers and held; per queue and topic, entries added."""
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

    for queue in queues:
        add([queue.queue, ""], queue.ready, queue, queue.delayed)
        added.add_metric([queue.queue], queue.added)
    for topic in topics:
        added.add_metric([topic.topic], topic.added)
        for group in topic.groups:
            add([topic.topic, group.group], group.lag, group, group.retrying)
    yield from family.values()
    yield added
    yield from _detail_families(queues)


def _detail_families(queues: list[stats.QueueState]) -> Iterator[Any]:
    """Per band, per partition and per fair key of the queues that have them."""
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
        name: GaugeMetricFamily(f"streamwork_partition_{name}", text, labels=["queue", "partition"])
        for name, text in (
            ("backlog", "A partitioned queue: each partition's ready messages."),
            ("pending", "A partitioned queue: each partition's running messages."),
            ("dead_letters", "A partitioned queue: each partition's dead letters."),
        )
    }
    for queue in queues:
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
    yield bands
    yield fair
    yield from partitions.values()


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


class BacklogCollector:
    """`streamwork_waiting`: everything waiting for a worker, per queue and per subscriber
    group (`streamwork.ops.backlog`), read at scrape time; `sum()` of it is the app's."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        try:
            found = backlog.backlog(self.app)
        except (StreamworkError, redis.exceptions.RedisError) as exc:
            log.error("metrics: cannot read the backlog from Redis: %s", exc)
            return
        waiting = GaugeMetricFamily(
            "streamwork_waiting",
            "Messages waiting for a worker: ready in every band and partition, fair lists, "
            "held, due delayed and retries, orphaned pending, due schedule ticks.",
            labels=["queue", "group"],
        )
        for part in found.parts:
            topic, _, group = part.name.partition("/")
            waiting.add_metric([topic, group], part.total)
        yield waiting


# -- the reference: every family streamwork exposes, from the code that defines it ----------


@dataclass(frozen=True)
class Family:
    """One metric family as Prometheus sees it."""

    name: str
    """As exposed: a counter's name ends in `_total`; a histogram's series add `_bucket`,
    `_sum` and `_count`."""
    type: str
    labels: tuple[str, ...]
    help: str
    served_by: str


WORKERS = "workers (summed by the supervisor)"
SENDERS = "the sending process"
SUPERVISOR = "supervisor"
READ_AT_SCRAPE = "supervisor and exporter (read from Redis)"
EXPORTER = "exporter (read from Redis)"


def families() -> list[Family]:
    """Every metric family streamwork exposes, with its labels and where it is served, read
    from the code that defines it (`docs/reference/metrics.md` is made from this)."""
    found = []
    senders = (base_metrics.SENT, base_metrics.SEND_TIME, base_metrics.WORKFLOWS_STARTED)
    for value in vars(base_metrics).values():
        if isinstance(value, MetricWrapperBase):
            served = SENDERS if value in senders else WORKERS
            found.append(_wrapped(value, served))
    with tempfile.TemporaryDirectory() as path:
        supervisor = SupervisorMetrics(path)
        found += [_wrapped(supervisor.processes, SUPERVISOR)]
        found += [_wrapped(supervisor.restarts, SUPERVISOR)]
    url = f"memory://metrics-reference-{os.getpid()}"
    app = App(url)
    try:
        for collector, served in (
            (QueueCollector(app), READ_AT_SCRAPE),
            (BacklogCollector(app), EXPORTER),
        ):
            for family in collector.collect():
                found.append(_collected(family, served))
    finally:
        app.close()
        memory.forget(url)
    return sorted(found, key=lambda family: family.name)


def _wrapped(metric: Any, served_by: str) -> Family:
    name = metric._name + ("_total" if metric._type == "counter" else "")
    return Family(name, metric._type, tuple(metric._labelnames), metric._documentation, served_by)


def _collected(family: Any, served_by: str) -> Family:
    name = family.name + ("_total" if family.type == "counter" else "")
    labels = tuple(getattr(family, "_labelnames", ()))
    return Family(name, family.type, labels, family.documentation, served_by)


LABELS = {
    "queue": "a queue's name; for a subscriber group's series, its topic's name (then "
    '`group` is not empty: `group=""` selects queues)',
    "group": 'the subscriber group; "" for queues',
    "task": "the task (or subscriber) name",
    "band": "a priority band: high, default, low",
    "partition": "a partitioned queue's partition number",
    "key": 'a fair task\'s key (the 10 with the largest backlogs; "(other)" sums the rest)',
    "schedule": "a schedule's id",
    "topic": "a topic",
    "reason": "why a message was held back: rate, concurrency, rate_limited",
    "outcome": "how it ended",
    "kind": "a workflow's kind: chain, group, chord",
}


def reference_markdown() -> str:
    """docs/reference/metrics.md."""
    lines = [
        "# Metrics reference",
        "",
        "<!-- Generated from the code by `python grafana/generate.py`; a test checks it. -->",
        "",
        "Every family streamwork exposes, as Prometheus names it. Served by: **workers** —",
        "each worker process counts in prometheus-client's multiprocess files and the",
        "supervisor's `/metrics` serves their sum; **supervisor** — its own; **read from",
        "Redis** — by the supervisor's and the exporter's `/metrics` at each scrape (what",
        "Redis holds: every replica reports the same, so aggregate them with `max`);",
        "**the sending process** — in the default registry of the process that sends (expose",
        "it with `prometheus_client.start_http_server`; set",
        "`PROMETHEUS_DISABLE_CREATED_SERIES=True` there to drop prometheus-client's",
        "`*_created` series, which streamwork's own servers never expose).",
        "",
        "| name | type | labels | served by | what |",
        "|---|---|---|---|---|",
    ]
    found = families()
    for family in found:
        labels = ", ".join(f"`{label}`" for label in family.labels) or "—"
        what = family.help.replace("|", "\\|")
        lines.append(
            f"| `{family.name}` | {family.type} | {labels} | {family.served_by} | {what} |"
        )
    lines += ["", "## Labels", "", "| label | what |", "|---|---|"]
    used = sorted({label for family in found for label in family.labels})
    lines += [f"| `{label}` | {LABELS[label]} |" for label in used]
    return "\n".join(lines) + "\n"
