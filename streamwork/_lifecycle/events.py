"""Events: reading the lifecycle event streams of an app's queues.

A queue whose app records events (`App(events=True)` or a list of queues) has a capped
stream, `NS:{QUEUE}:events`, to which the Lua steps that send, start, report progress of,
settle and cancel a message append one entry each (sent, started, progress, retried, done,
failed, dead, cancelled), in the same step as the change it records. This module reads them:
`read` (one look, sync) and `follow` (an async iterator that blocks for more), both
resumable from any entry id. It never writes an event.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from .._base.keys import events_stream, partition_name
from .._redis import commands, reads
from .._redis.connection import MAX_BLOCK, NamespaceView
from .._redis.registry import known_queues
from ..errors import ConfigurationError
from .lifecycle import unpacked_data


class EventsView(NamespaceView, Protocol):
    """What reading events needs of an app (an App is one)."""

    def events_cap(self, queue: str) -> int: ...

    def subscriber_groups(self) -> list[tuple[str, str]]: ...


Since = str | datetime | Mapping[str, str]
"""Where to start: "$" (new events only), "0" (the oldest kept), an entry id, a datetime,
or {queue: entry id} to resume several queues where a reader left them."""


@dataclass(frozen=True)
class Event:
    """One lifecycle event of one message."""

    id: str
    """The event's entry id in its queue's event stream: resume after it with since=id."""
    queue: str
    """The queue, or "topic/group" for a subscriber group's events."""
    event: str
    """sent | started | progress | retried | done | failed | dead | cancelled"""
    message_id: str
    task: str
    attempt: int
    time: datetime
    worker: str | None = None
    error: str | None = None
    """For retried, failed, dead: what failed; for cancelled: the reason."""
    progress: float | None = None
    note: str | None = None
    data: dict[str, Any] | None = None
    """For "progress": the data reported with it, if any."""
    workflow: str | None = None
    """For "sent": the workflow the message is a child of (`app.workflow(id)`)."""

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["time"] = self.time.isoformat()
        return out


def parse(queue: str, entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> Event:
    def text(name: str) -> str | None:
        value = fields.get(name.encode())
        return None if value is None or value == b"" else value.decode(errors="replace")

    progress = text("progress")
    return Event(
        id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        queue=queue,
        event=text("event") or "",
        message_id=text("id") or "",
        task=text("task") or "",
        attempt=int(text("attempt") or 0),
        time=datetime.fromtimestamp(int(text("time") or 0) / 1000, timezone.utc),
        worker=text("worker"),
        error=text("error"),
        progress=None if progress is None else float(progress),
        note=text("note"),
        data=unpacked_data(fields.get(b"data")),
        workflow=text("workflow"),
    )


def _partitions(app: EventsView, names: list[str]) -> list[str]:
    """`names`, each partitioned queue as its partitions (`orders~0` ...): each has its
    own event stream, and an event names the partition it happened in."""
    found: list[str] = []
    for name in names:
        count = 1 if "/" in name else app.partitions(name)
        found += [name] if count == 1 else [partition_name(name, k) for k in range(count)]
    return found


def event_queues(app: EventsView, queue: str | None) -> list[str]:
    """The queues (and "topic/group" subscriber groups) to read: `queue`, or every one of
    the app that records events; a partitioned queue's partitions one by one."""
    if queue is not None:
        if not app.events_cap(queue):
            raise ConfigurationError(
                f"{queue!r} records no events: create the App with events=True "
                f"(or events=[{queue!r}, ...])"
            )
        return _partitions(app, [queue])
    groups = [f"{topic}/{group}" for topic, group in app.subscriber_groups()]
    names = [name for name in [*known_queues(app), *groups] if app.events_cap(name)]
    if not names:
        raise ConfigurationError(
            "this app records no events: create it with events=True (or a list of queues)"
        )
    return _partitions(app, names)


def _start(since: Since, queue: str) -> str:
    if isinstance(since, Mapping):
        return str(since.get(queue, "0"))
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise ConfigurationError("since must be a timezone-aware datetime")
        return f"{int(since.timestamp() * 1000)}-0"
    if since in ("0", "0-0", "$") or (isinstance(since, str) and since):
        return since
    raise ConfigurationError(f"since must be '$', '0', an event id or a datetime, got {since!r}")


def _by_slot(client: Any, streams: Iterable[str]) -> list[list[str]]:
    """Streams one XREAD may name together: all of them, or on a cluster those of a slot."""
    if not isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)):
        return [list(streams)]
    groups: dict[int, list[str]] = defaultdict(list)
    for stream in streams:
        groups[key_slot(stream.encode())].append(stream)
    return list(groups.values())


def _positions(app: EventsView, queues: list[str], since: Since) -> dict[str, tuple[str, str]]:
    """{event stream: (queue, the id to read after)}."""
    return {events_stream(app.namespace, q): (q, _start(since, q)) for q in queues}


def _pin(positions: dict[str, tuple[str, str]], replies: list[Any]) -> None:
    """Turn "$" into the stream's last id, so reads that follow miss nothing between them."""
    for (stream, (queue, start)), reply in zip(list(positions.items()), replies, strict=True):
        if start == "$":
            positions[stream] = (queue, reply[0][0].decode() if reply else "0-0")


def _pinned(app: EventsView, queue: str | None, since: Since) -> dict[str, tuple[str, str]]:
    """{event stream: (name, the id to read after)}, "$" pinned to each stream's last id."""
    positions = _positions(app, event_queues(app, queue), since)
    if any(start == "$" for _, start in positions.values()):
        with app.connection.translate_errors():
            _pin(positions, commands.last_entries(app.connection.redis, list(positions)))
    return positions


def start_positions(app: EventsView, queue: str | None, since: Since) -> dict[str, str]:
    """{name: the id to read after} for every stream `read(app, queue, ...)` reads, with
    "$" pinned to each stream's last id now: a reader that keeps passing it back (updated
    with each event's id) misses nothing between its reads."""
    return dict(_pinned(app, queue, since).values())


def _collect(positions: dict[str, tuple[str, str]], reply: Any, into: list[Event]) -> None:
    for stream, entries in reply or ():
        name = stream.decode() if isinstance(stream, bytes) else stream
        queue = positions[name][0]
        for entry_id, fields in entries:
            event = parse(queue, entry_id, fields)
            positions[name] = (queue, event.id)
            into.append(event)


def read(
    app: EventsView,
    queue: str | None = None,
    since: Since = "0",
    count: int = 100,
    block: float | None = None,
) -> list[Event]:
    """Up to `count` events per queue after `since`, oldest first within each queue;
    waits up to `block` seconds for some when there are none."""
    positions = _pinned(app, queue, since)
    client = app.connection.redis
    found: list[Event] = []
    with app.connection.translate_errors():
        for streams in _by_slot(client, positions):
            wait = None if block is None else max(1, int(min(block, MAX_BLOCK) * 1000))
            reply = reads.read_after(client, {s: positions[s][1] for s in streams}, count, wait)
            _collect(positions, reply, found)
    return found


async def follow(
    app: EventsView, queue: str | None = None, since: Since = "$", count: int = 100
) -> AsyncIterator[Event]:
    """Every event after `since`, then each new one as it is written (blocking reads):
    `async for event in app.events(...)`. Resume after a restart with since=event.id (one
    queue) or since={queue: id, ...}."""
    queues = event_queues(app, queue)
    positions = _positions(app, queues, since)
    connection = app.connection
    with connection.translate_errors():
        client = connection.async_redis()
        _pin(positions, await commands.last_entries(client, list(positions)))
    groups = _by_slot(client, positions)
    block_ms = int(MAX_BLOCK * 1000) if len(groups) == 1 else 100
    while True:
        for streams in groups:
            found: list[Event] = []
            with connection.translate_errors():
                reply = await reads.read_after(
                    connection.async_redis(), {s: positions[s][1] for s in streams}, count, block_ms
                )
            _collect(positions, reply, found)
            for event in found:
                yield event
        await asyncio.sleep(0)


def recent(
    app: EventsView,
    queue: str | None = None,
    *,
    limit: int = 100,
    message_id: str | None = None,
    scan: int = 5000,
) -> list[Event]:
    """The newest `limit` events of `queue` (or of every queue that records events), newest
    first; with `message_id`, only that message's, looking at most `scan` events back per
    queue."""
    streams = {events_stream(app.namespace, q): q for q in event_queues(app, queue)}
    found: list[Event] = []
    client = app.connection.redis
    with app.connection.translate_errors():
        for stream, name in streams.items():
            end, looked, kept = "+", 0, 0
            while looked < scan and kept < limit:
                want = limit if message_id is None else min(500, scan - looked)
                rows = reads.entries_newest_first(client, stream, end, count=want)
                for entry_id, fields in rows:
                    event = parse(name, entry_id, fields)
                    if message_id is None or event.message_id == message_id:
                        found.append(event)
                        kept += 1
                end = "(" + rows[-1][0].decode() if rows else end
                looked += len(rows)
                if len(rows) < want:
                    break
    found.sort(key=lambda event: (event.time, event.id), reverse=True)
    return found[:limit]
