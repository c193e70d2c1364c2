"""Message: the envelope a handler sees — ids, attempt, headers, and ack/nack in manual mode.

A Message is read-only except for its one decision (ack or nack), which it hands to the
worker that delivered it, and its progress, which it hands to a throttled writer; it never
talks to Redis itself. Its methods are safe to call
from a sync handler's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..errors import StreamworkError

Decide = Callable[["Message", str, bool, str], None]


class Message:
    """One delivery of a message to a handler."""

    __slots__ = (
        "_cancelled",
        "_decide",
        "_decision",
        "_lock",
        "_progress",
        "args",
        "attempt",
        "delivery_count",
        "enqueued_ms",
        "entry_id",
        "group",
        "headers",
        "id",
        "kwargs",
        "payload",
        "queue",
        "task",
        "topic",
    )

    def __init__(
        self,
        *,
        id: str,
        entry_id: str,
        queue: str,
        task: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        attempt: int = 1,
        delivery_count: int = 1,
        enqueued_ms: int = 0,
        payload: Any = None,
        topic: str | None = None,
        group: str | None = None,
        decide: Decide | None = None,
        progress: Callable[[float, str | None, dict[str, Any] | None], None] | None = None,
    ) -> None:
        self.id = id
        """The message's stable id: the same across retries and redeliveries."""
        self.entry_id = entry_id
        """The stream entry id of this delivery (a retry is a new entry)."""
        self.queue = queue
        self.task = task
        self.args = args
        self.kwargs = kwargs or {}
        self.headers = headers or {}
        self.attempt = attempt
        """1 for the first run; each retry after a failure adds one."""
        self.delivery_count = delivery_count
        """How often this entry was delivered; above 1 after a worker died holding it."""
        self.enqueued_ms = enqueued_ms
        self.payload = payload
        """The event's data (topics)."""
        self.topic = topic
        """The topic the event was published to (None for a task)."""
        self.group = group
        """The subscriber group it was delivered to (None for a task)."""
        self._decide = decide
        self._progress = progress
        self._cancelled = False
        self._decision: str | None = None
        self._lock = threading.Lock() if decide is not None else None

    @property
    def redelivered(self) -> bool:
        """True when an earlier delivery of this entry may have run (part of) the handler."""
        return self.delivery_count > 1

    @property
    def cancelled(self) -> bool:
        """True once someone cancelled this message while it runs (`handle.cancel()`): a
        sync handler should check it and return early; its outcome is "cancelled" either
        way (not a failure, never retried). Async handlers are cancelled outright."""
        return self._cancelled

    def progress(
        self, fraction: float, note: str | None = None, data: dict[str, Any] | None = None
    ) -> None:
        """Record how far the run is (0..1), a short note and, with `data`, a small dict of
        plain values (Celery's `update_state(meta={...})`, at most 4 KiB encoded), for
        `handle.status()` (`.data`), `streamwork status`, the console and the events. Cheap
        to call often: writes are throttled to a few per second, the latest value written
        last. Task messages only (an event has no status)."""
        if self._progress is None:
            raise StreamworkError(
                "progress is recorded for task messages run by a worker; this message has "
                "no status (a topic's event, or a Message made by hand)"
            )
        self._progress(fraction, note, data)

    @property
    def decision(self) -> str | None:
        """ "ack" or "nack" once the handler decided (manual ack mode), else None."""
        return self._decision

    def ack(self) -> None:
        """Acknowledge: the message is done and leaves the queue (manual ack mode)."""
        self._settle("ack", requeue=False, reason="")

    def nack(self, *, requeue: bool = True, reason: str = "nacked by handler") -> None:
        """Refuse the message: retry it later (counts as a failed attempt), or dead-letter it."""
        self._settle("nack", requeue=requeue, reason=reason)

    def _settle(self, decision: str, *, requeue: bool, reason: str) -> None:
        if self._decide is None:
            raise StreamworkError(
                "this message is not in manual ack mode: declare the task with "
                "ack_mode='manual' to ack or nack it"
            )
        assert self._lock is not None  # created with `decide`
        with self._lock:
            if self._decision is not None:
                raise StreamworkError(f"message {self.id} was already {self._decision}ed")
            self._decision = decision
        self._decide(self, decision, requeue, reason)

    def __repr__(self) -> str:
        return (
            f"Message(id={self.id!r}, queue={self.queue!r}, task={self.task!r}, "
            f"topic={self.topic!r}, group={self.group!r}, "
            f"attempt={self.attempt}, delivery_count={self.delivery_count})"
        )
