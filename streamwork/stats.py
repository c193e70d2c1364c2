"""What a queue holds right now: ready, pending (running), delayed and dead letters.

Shared by the CLI, the examples and (later) metrics. It reads counts; it never changes a
queue. Rates, waits and Little's law build on these counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import redis_ops
from .keys import Source

if TYPE_CHECKING:
    from .app import App


@dataclass(frozen=True)
class QueueState:
    queue: str
    ready: int
    """Entries waiting for a worker (backlog)."""
    pending: int
    """Entries delivered to a worker and not yet acknowledged (running, or held by a dead one)."""
    delayed: int
    """Delayed messages and retries waiting for their time."""
    dead_letters: int

    @property
    def is_empty(self) -> bool:
        """True when nothing is waiting, running or delayed (dead letters aside)."""
        return self.ready == 0 and self.pending == 0 and self.delayed == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_state(app: App, queue: str) -> QueueState:
    """The counts of `queue`, read in one round trip."""
    source = Source(app.keys(queue))
    with app.translate_errors():
        length, pending, delayed, dead = redis_ops.queue_counts(app.redis, source)
    # An error for the pending count means no group yet: nothing was ever delivered.
    pending_count = 0 if isinstance(pending, Exception) else int(pending["pending"])
    for value in (length, delayed, dead):
        if isinstance(value, Exception):
            raise value
    # Queues delete each entry once acknowledged, so the stream is backlog + pending.
    return QueueState(queue, length - pending_count, pending_count, delayed, dead)
