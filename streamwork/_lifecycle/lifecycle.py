"""Lifecycle: what state a message is in, cancelling it, and its progress.

Owns `TaskStatus` (read from the small status hash each queue message has, in its queue's
slot: written by the same Lua steps that send, start and settle it), `cancel` (cancel.lua:
a queued or delayed message never runs, a running one is stopped by its worker) and
`ProgressReporter`, the throttled writer behind `message.progress()`. It never runs a
handler and never decides an outcome (execution.py does).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

import msgpack
import redis.exceptions

from .._base import ids, protocol
from .._base.keys import QueueKeys, partition_name, partition_of_id
from .._redis import commands, reads
from .._redis.connection import NamespaceView
from .._redis.registry import known_queues
from .._redis.scripts import as_fields
from ..errors import ConfigurationError, EncodeError, StreamworkError

log = logging.getLogger("streamwork.lifecycle")

FINAL_STATES = ("done", "failed", "dead", "cancelled", "expired")

CancelResult = Literal["cancelled", "cancelling", "finished", "unknown"]

PROGRESS_EVERY = 0.25
"""Seconds between two progress writes of one run (the latest value is written last)."""
NOTE_CHARS = 200


@dataclass(frozen=True)
class TaskStatus:
    """Where a message is in its life, as its status hash says."""

    state: str
    """queued | delayed | running | retrying | done | failed | dead | cancelled | expired |
    unknown. expired: not started by its deadline (`expires`), never run.
    failed: the handler failed for good (not retryable, or out of retries); dead: set aside
    without a handler failure (rejected, bad input, delivered too often); both are in the
    dead letters. unknown: no status (never sent, or its status expired)."""
    attempts: int = 0
    """Runs started so far (retries included)."""
    progress: float | None = None
    """The last fraction (0..1) the handler reported with `message.progress()`."""
    note: str | None = None
    data: dict[str, Any] | None = None
    """The last data the handler reported with its progress (`progress(..., data={...})`)."""
    updated_at: datetime | None = None
    error: str | None = None
    """For retrying, failed and dead: what failed; for cancelled: the reason, if given."""
    task: str | None = None
    worker: str | None = None
    """The consumer running it (or that last ran it)."""
    cancel_requested: bool = False
    """A cancellation reached it while running: its worker is stopping it."""
    workflow: str | None = None
    """The id of the workflow it is a child of (`app.workflow(id)`), if any."""

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


def parse_status(raw: dict[bytes, bytes], now_ms: int) -> TaskStatus:
    """The TaskStatus of a status hash's fields ({} -> unknown)."""
    if not raw:
        return TaskStatus("unknown")

    def text(name: str) -> str | None:
        value = raw.get(name.encode())
        return None if value is None else value.decode(errors="replace")

    state = text("state") or "unknown"
    due = text("due")
    if state == "delayed" and due is not None and int(due) <= now_ms:
        state = "queued"  # due: moved to the stream, or about to be
    progress = text("progress")
    updated = text("updated")
    error = text("error") if state != "cancelled" else text("reason") or None
    return TaskStatus(
        state=state,
        attempts=int(text("attempts") or 0),
        progress=None if progress is None else float(progress),
        note=text("note") or None,
        data=unpacked_data(raw.get(b"data")),
        updated_at=None
        if updated is None
        else datetime.fromtimestamp(int(updated) / 1000, timezone.utc),
        error=error or None,
        task=text("task"),
        worker=text("worker"),
        cancel_requested=state == "running" and text("cancel") == "1",
        workflow=text("workflow"),
    )


class StatusView(NamespaceView, Protocol):
    """What finding and cancelling a message by id needs of an app (an App is one)."""

    @property
    def status_ttl_ms(self) -> int: ...

    def keys(self, queue: str) -> QueueKeys: ...

    def events_cap(self, queue: str) -> int: ...


class UnknownMessage(StreamworkError, LookupError):
    """No queue of the app holds a status for that message id."""


def find(
    app: StatusView, message_id: str, queue: str | None = None
) -> tuple[str, dict[bytes, bytes]]:
    """(the queue whose status hash holds `message_id`, its fields): `queue`, else the
    app's queues, then every queue registered in its namespace; UnknownMessage if none.
    In a partitioned queue, it is the partition's name (`orders~3`)."""
    queues = [queue] if queue else known_queues(app)
    # An id read off an entry names its queue (ids.py): ask that one alone.
    queues = [name for name in queues if ids.entry_of(message_id, name)] or queues
    with app.connection.translate_errors():
        for name in queues:
            if app.partitions(name) > 1:  # the id names the partition: `orders~3`
                name = partition_name(name, partition_of_id(message_id))
            raw = as_fields(app.connection.scripts.status(app.keys(name), message_id))
            if raw:
                return name, raw
    where = f"queue {queue!r}" if queue else f"any queue of namespace {app.namespace!r}"
    raise UnknownMessage(
        f"no status for message {message_id} in {where} (never sent, or its status expired)"
    )


def cancel_in(
    app: StatusView, queue: str, message_id: str, reason: str
) -> tuple[CancelResult, str]:
    """Cancel `message_id` of `queue` (cancel.lua): (what happened, the state it was in)."""
    with app.connection.translate_errors():
        reply = app.connection.scripts.cancel(
            app.keys(queue),
            message_id,
            reason,
            protocol.now_ms(),
            app.status_ttl_ms,
            app.events_cap(queue),
        )
    return decode_cancel(reply)


CANCEL_OUTCOMES: dict[CancelResult, str] = {
    "cancelled": "cancelled: it was {before}, it will not run",
    "cancelling": "cancelling: it is running; its worker stops it",
    "finished": "not cancelled: it had already ended ({before})",
    "unknown": "not cancelled: its status expired",
}


def describe_cancel(what: CancelResult, before: str) -> str:
    """What a cancel did, in words (the CLI and the web console say it)."""
    if what == "cancelled" and before == "cancelled":
        return "cancelled (already): it will not run"
    return CANCEL_OUTCOMES[what].format(before=before)


def decode_cancel(reply: Any) -> tuple[CancelResult, str]:
    what, before = (v.decode() if isinstance(v, bytes) else str(v) for v in reply)
    return what, before  # type: ignore[return-value]


PROGRESS_DATA_BYTES = 4096
"""The most a run's progress data may take, encoded (it is rewritten with every report)."""


def check_progress(
    fraction: float, note: str | None, data: dict[str, Any] | None = None
) -> tuple[float, str, bytes]:
    """(fraction, note, data packed: b"" for none) of a progress report; ConfigurationError
    or EncodeError for what cannot be one."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ConfigurationError(f"progress must be a number from 0 to 1, got {fraction!r}")
    if not 0 <= fraction <= 1:
        raise ConfigurationError(f"progress must be from 0 to 1, got {fraction}")
    if note is not None and not isinstance(note, str):
        raise ConfigurationError(f"a progress note must be a string, got {note!r}")
    return float(fraction), (note or "")[:NOTE_CHARS], _packed_data(data)


def _packed_data(data: dict[str, Any] | None) -> bytes:
    if data is None:
        return b""
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise ConfigurationError(f"progress data must be a dict with string keys, got {data!r}")
    try:
        packed = protocol.pack_value(data)
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"progress data is not plain data (msgpack): {exc}") from None
    if len(packed) > PROGRESS_DATA_BYTES:
        raise EncodeError(
            f"progress data is {len(packed)} bytes encoded; at most {PROGRESS_DATA_BYTES}"
        )
    return packed


def unpacked_data(raw: bytes | None) -> dict[str, Any] | None:
    """The progress data a status hash or an event holds (None: none, or unreadable)."""
    if not raw:
        return None
    try:
        value = protocol.unpack_value(raw)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    return value if isinstance(value, dict) else None


class ProgressReporter:
    """Writes one run's progress from any thread, at most once per PROGRESS_EVERY seconds:
    a handler calling `message.progress()` in a tight loop costs a few writes per second,
    and the latest value is always written last."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        write: Callable[[float, str, bytes], Coroutine[Any, Any, Any]],
    ) -> None:
        self._loop = loop
        self._write = write
        self._lock = threading.Lock()
        self._latest: tuple[float, str, bytes] | None = None
        self._is_scheduled = False
        self._last_write = 0.0
        self._writes: set[asyncio.Task[Any]] = set()
        self.written = 0

    def report(self, fraction: float, note: str | None, data: dict[str, Any] | None = None) -> None:
        value = check_progress(fraction, note, data)
        with self._lock:
            self._latest = value
            if self._is_scheduled:
                return
            self._is_scheduled = True
            delay = max(0.0, self._last_write + PROGRESS_EVERY - time.monotonic())
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, self._flush)

    async def drain(self) -> None:
        """Write what is pending now and wait for every write (the run is ending: its last
        progress lands before its outcome)."""
        self._flush()
        if self._writes:
            await asyncio.wait(set(self._writes))

    def _flush(self) -> None:
        with self._lock:
            value, self._latest = self._latest, None
            self._is_scheduled = False
            self._last_write = time.monotonic()
        if value is None:
            return
        task = self._loop.create_task(self._write(*value))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("cannot record progress: %s", exc)
        else:
            self.written += 1


@dataclass(frozen=True)
class Running:
    """A message being run now, as `streamwork top` lists it."""

    queue: str
    id: str
    task: str
    worker: str
    age: float
    """Seconds since it was ready (sent, or due): its wait and its run so far."""
    progress: float | None
    note: str | None


def running(client: Any, sources: list[Any], limit: int = 20) -> list[Running]:
    """Up to `limit` messages pending in the queues of `sources` (being run), with the
    progress their status holds; oldest first."""
    found: list[Running] = []
    now = protocol.now_ms()
    for source in sources:
        try:
            rows = commands.pending_entries(client, source, limit)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            continue  # no worker ever served it: nothing runs
        if not rows:
            continue
        entries = reads.entries_by_id(client, source.stream, [row["message_id"] for row in rows])
        messages = []
        for row, entry in zip(rows, entries, strict=True):
            if not entry:
                continue
            try:
                envelope = protocol.decode(protocol.entry_body(entry[0][1]))
            except StreamworkError:
                continue
            envelope = ids.named(envelope, source.name, source.band, entry[0][0])
            messages.append((row, envelope))
        keys = [source.status(envelope.id) or "" for _, envelope in messages]
        statuses = reads.status_fields(client, keys, ("progress", "note", "updated"))
        for (row, envelope), (progress, note, _) in zip(messages, statuses, strict=True):
            enqueued = envelope.enqueued_ms or now
            found.append(
                Running(
                    queue=source.name,
                    id=envelope.id,
                    task=envelope.task,
                    worker=row["consumer"].decode(),
                    age=max(0.0, (now - enqueued) / 1000),
                    progress=None if progress is None else float(progress),
                    note=None if note is None else note.decode(errors="replace"),
                )
            )
    found.sort(key=lambda item: -item.age)
    return found[:limit]
