"""Prometheus metrics of a worker process.

Owns metric names and labels (`streamwork_` prefix; labels `queue`, `task`; never ids).
Other modules call the small functions here; nothing else imports prometheus_client.
"""

from __future__ import annotations

from prometheus_client import Counter

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


def count_lost_ownership(queue: str, n: int = 1) -> None:
    LOST_OWNERSHIP.labels(queue).inc(n)


def count_lost_entries(queue: str, n: int) -> None:
    LOST_ENTRIES.labels(queue).inc(n)
