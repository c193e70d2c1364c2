"""The reads of operators' tools (dead letters, events, status, the console, stats): pages
of a stream, entries by id, lengths, the pending entries and consumers of a group, the
waiting keys of fair tasks — plus the few writes those tools make outside a script.

Like commands.py, each function takes a client or pipeline, sync or asyncio, and returns
what redis-py returns; the multi-key ones take one round trip (a pipeline). Nothing here
decodes a message or decides what it means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.exceptions

from .._base.keys import Source


def ping(client: Any) -> Any:
    return client.ping()


def entries(
    client: Any, stream: str, start: str = "-", end: str = "+", count: int | None = None
) -> Any:
    """XRANGE: [(entry id, fields)] from `start` to `end`, oldest first."""
    return client.xrange(stream, start, end, count=count)


def entries_newest_first(
    client: Any, stream: str, end: str = "+", start: str = "-", count: int | None = None
) -> Any:
    """XREVRANGE: [(entry id, fields)] from `end` back to `start`, newest first."""
    return client.xrevrange(stream, end, start, count=count)


def entries_by_id(client: Any, stream: str, ids: Sequence[Any]) -> Any:
    """For each id, the rows XRANGE id id gives ([] for an entry gone), in one round trip."""
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(stream, entry_id, entry_id, count=1)
    return pipe.execute()


def length(client: Any, stream: str) -> Any:
    return client.xlen(stream)


def lengths(client: Any, streams: Sequence[str]) -> Any:
    """XLEN of each stream, in one round trip."""
    if not streams:
        return []
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.xlen(stream)
    return pipe.execute()


def take_all(client: Any, stream: str) -> Any:
    """Delete a stream, atomically with reading its length: [length, deleted]."""
    pipe = client.pipeline(transaction=True)
    pipe.xlen(stream)
    pipe.delete(stream)
    return pipe.execute()


def read_after(client: Any, positions: Mapping[str, str], count: int, block_ms: int | None) -> Any:
    """XREAD the entries after each stream's position (not a group read), waiting up to
    `block_ms` when there are none (None: not at all)."""
    return client.xread(dict(positions), count=count, block=block_ms)


def last_delivered(client: Any, source: Source) -> str:
    """The id of the last entry the source's group was given ("0-0" before any, or when
    the stream or group does not exist)."""
    try:
        groups = client.xinfo_groups(source.stream)
    except redis.exceptions.ResponseError:
        return "0-0"  # no stream yet
    for group in groups:
        if group["name"].decode() == source.group:
            value = group["last-delivered-id"]
            return value.decode() if isinstance(value, bytes) else str(value)
    return "0-0"


def pending_page(client: Any, source: Source, count: int) -> Any:
    """The group's first `count` pending entries (message_id, consumer,
    time_since_delivered, times_delivered); [] when the group does not exist."""
    try:
        return client.xpending_range(source.stream, source.group, "-", "+", count)
    except redis.exceptions.ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        return []


def delayed_page(client: Any, delayed: str, count: int) -> Any:
    """The first `count` [(body, due ms)] of a delayed set, soonest first."""
    return client.zrange(delayed, 0, count - 1, withscores=True)


def consumers(client: Any, sources: Sequence[Source]) -> list[Any]:
    """XINFO CONSUMERS of each source's group, in one round trip (an error in place of a
    group that does not exist)."""
    if not sources:
        return []
    pipe = client.pipeline(transaction=False)
    for source in sources:
        pipe.xinfo_consumers(source.stream, source.group)
    return list(pipe.execute(raise_on_error=False))


def status_fields(client: Any, statuses: Sequence[str], fields: Sequence[str]) -> Any:
    """`fields` of each status hash, in one round trip: Nones for one gone, or for a done
    message's compact record (a string, which has none of them: lua/_status.lua)."""
    if not statuses:
        return []
    pipe = client.pipeline(transaction=False)
    for status in statuses:
        pipe.hmget(status, *fields)
    return no_fields_for_records(pipe.execute(raise_on_error=False), len(fields))


def no_fields_for_records(replies: list[Any], count: int) -> list[Any]:
    """HMGET replies with each WRONGTYPE error (a compact record) read as `count` Nones;
    any other error is raised."""
    for reply in replies:
        if isinstance(reply, Exception) and not str(reply).startswith("WRONGTYPE"):
            raise reply
    return [[None] * count if isinstance(reply, Exception) else reply for reply in replies]


def members(client: Any, key: str) -> Any:
    """SMEMBERS of a set."""
    return client.smembers(key)


def fair_rings(client: Any, prefixes: Sequence[str], limit: int) -> Any:
    """The first `limit` keys of each fair task's ring (its keys with messages waiting),
    in one round trip."""
    pipe = client.pipeline(transaction=False)
    for prefix in prefixes:
        pipe.lrange(prefix + "ring", 0, limit - 1)
    return pipe.execute()


def fair_key_counts(client: Any, keys: Sequence[tuple[str, bytes]]) -> Any:
    """For each (fair task's prefix, key): [messages waiting, messages running], flat, in
    one round trip."""
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for prefix, key in keys:
        pipe.llen(prefix.encode() + b"q:" + key)
        pipe.scard(prefix.encode() + b"run:" + key)
    return pipe.execute()


def due_counts(client: Any, sets: Sequence[str], due_by_ms: int) -> list[int]:
    """How many members of each sorted set are scored at or before `due_by_ms` (0 for a
    set that does not exist), in one round trip."""
    if not sets:
        return []
    pipe = client.pipeline(transaction=False)
    for key in sets:
        pipe.zcount(key, "-inf", due_by_ms)
    return [int(count) for count in pipe.execute()]


def list_lengths(client: Any, lists: Sequence[str]) -> list[int]:
    """The length of each list (0 for one that does not exist), in one round trip."""
    if not lists:
        return []
    pipe = client.pipeline(transaction=False)
    for key in lists:
        pipe.llen(key)
    return [int(length) for length in pipe.execute()]


def count_after(client: Any, stream: str, after_id: str, cap: int) -> int:
    """How many entries of `stream` come after `after_id`, counted up to `cap` (what a
    group's lag is when Redis cannot say it)."""
    return len(client.xrange(stream, f"({after_id}", "+", count=cap))
