"""Prometheus metrics of a worker process.

Owns metric names and labels (`streamwork_` prefix; labels `queue`, `task`; never ids).
Other modules call the small functions here; nothing else imports prometheus_client.
"""

from __future__ import annotations

import glob
import os
import tempfile

from prometheus_client import CollectorRegistry, Counter, Gauge, multiprocess, start_http_server

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

    def __init__(self, path: str) -> None:
        self.path = path
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=path)
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
        start_http_server(port, address, registry=self.registry)

    def process_exited(self, pid: int) -> None:
        """Drop the live gauges of a process that ended, so none go stale."""
        multiprocess.mark_process_dead(pid, self.path)


def record_retention(topic: str, held: int, dropped: int) -> None:
    TOPIC_HELD.labels(topic).set(held)
    if dropped:
        TOPIC_DROPPED.labels(topic).inc(dropped)
