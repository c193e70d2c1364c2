"""Small frozen settings: retry backoff, and how a worker process runs.

Durations are accepted as seconds or `timedelta` and converted once, here; names carry
their unit where it is not seconds. Invalid values raise ConfigurationError, never assert.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from ..errors import ConfigurationError

AckMode = Literal["late", "auto", "manual"]
ACK_MODES: tuple[str, ...] = ("late", "auto", "manual")

Duration = float | int | timedelta


def to_seconds(name: str, value: Duration, *, allow_zero: bool = True) -> float:
    """`value` in seconds; raise ConfigurationError if it is not a non-negative duration."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be seconds or a timedelta, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be {'>=' if allow_zero else '>'} 0, got {value}")
    return float(value)


def check_ack_mode(value: str) -> AckMode:
    if value not in ACK_MODES:
        raise ConfigurationError(f"ack_mode must be one of {', '.join(ACK_MODES)}, got {value!r}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits about base * 2**(n-1), at most cap.

    The wait is drawn from [d/2, d] ("equal jitter"), so retries of many messages that
    failed together spread out instead of returning at the same instant.
    """

    base: float = 1.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", to_seconds("backoff base", self.base))
        object.__setattr__(self, "cap", to_seconds("backoff cap", self.cap))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the attempt after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 60))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class WorkerSettings:
    """How one worker process fetches, runs and recovers messages."""

    concurrency: int = 10
    """The most messages running at once in this process."""
    batch_size: int = 100
    """The most entries one XREADGROUP asks for (a read also asks for at most half the
    concurrency, so that the next read overlaps the handlers of this one)."""
    block: float = 1.0
    """How long one XREADGROUP waits for new entries (also bounds how fast a stop is seen)."""
    visibility_timeout: float = 30.0
    """An entry idle this long in a consumer's pending list is taken to be abandoned."""
    scan_interval: float | None = None
    """How often the scanner looks for abandoned entries (default: visibility_timeout / 2)."""
    result_ttl: float = 3600.0
    """How long a stored task result is kept."""
    consumer_idle_timeout: float | None = None
    """Consumers idle this long with nothing pending are removed (default: 10 x visibility)."""
    allow_evicting_redis: bool = False
    """Start even when Redis may evict keys (maxmemory-policy other than noeviction)."""
    max_starvation: float = 60.0
    """A lower priority band's message waiting longer than this is taken before higher
    bands' (queues with priority bands)."""
    grace: float = 30.0
    """On stop, how long running messages may take to finish before they are cut off."""
    max_tasks: int | None = None
    """Recycle the process (stop gracefully, exit for a restart) after this many messages."""
    max_memory_mb: float | None = None
    """Recycle the process once its resident memory passes this many MiB."""
    schedules: bool = True
    """Run the schedule ticker (every worker process does by default; no leader needed)."""

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise ConfigurationError(f"concurrency must be an integer, got {self.concurrency!r}")
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {self.concurrency}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {self.batch_size!r}")
        for name, kind in (("max_tasks", int), ("max_memory_mb", (int, float))):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, kind) or value <= 0
            ):
                raise ConfigurationError(f"{name} must be a number above 0, got {value!r}")
        object.__setattr__(self, "grace", to_seconds("grace", self.grace))
        for name in ("block", "visibility_timeout", "result_ttl", "max_starvation"):
            seconds = to_seconds(name, getattr(self, name), allow_zero=False)
            object.__setattr__(self, name, seconds)
        defaults = {
            "scan_interval": self.visibility_timeout / 2,
            "consumer_idle_timeout": self.visibility_timeout * 10,
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            seconds = to_seconds(name, default if value is None else value, allow_zero=False)
            object.__setattr__(self, name, seconds)

    @property
    def scan_seconds(self) -> float:
        """`scan_interval` as resolved (never None after construction)."""
        return float(self.scan_interval or self.visibility_timeout / 2)

    @property
    def consumer_idle_seconds(self) -> float:
        """`consumer_idle_timeout` as resolved (never None after construction)."""
        return float(self.consumer_idle_timeout or self.visibility_timeout * 10)

    @property
    def lease_interval(self) -> float:
        """How often running entries have their lease renewed: well inside the timeout."""
        return self.visibility_timeout / 3
