"""The typed commands of the core: streams, groups, delayed sets, registries, statuses and
leases (the Lua scripts are in scripts.py; the worker's hot steps go through lanes.py).

Each function takes a client or pipeline, sync or asyncio; it returns what redis-py returns
(a value, or an awaitable for asyncio clients), so producers and workers share one
definition of every command. Nothing here decides what a message means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.exceptions

from .._base.keys import QueueKeys, ScheduleKeys, Source
from . import reads


def first_due(client: Any, delayed_sets: Sequence[str]) -> Any:
    """Each delayed set's first [(member, due ms)] (or []), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for key in delayed_sets:
        pipe.zrange(key, 0, 0, withscores=True)
    return pipe.execute()


def append(client: Any, stream: str, body: bytes) -> Any:
    """XADD one message to a stream."""
    return client.xadd(stream, {b"m": body})


def schedule(client: Any, delayed: str, body: bytes, due_ms: int) -> Any:
    """ZADD one message to a delayed set, scored by when it is due."""
    return client.zadd(delayed, {body: due_ms})


def add(client: Any, keys: QueueKeys, body: bytes, due_ms: int | None = None) -> Any:
    """Enqueue one message: XADD to the stream now, or ZADD to the delayed set for later."""
    if due_ms is None:
        return append(client, keys.stream, body)
    return schedule(client, keys.delayed, body, due_ms)


def register(client: Any, registry: str, name: str) -> Any:
    """Record a queue or topic in a registry set, so tools find it without KEYS or SCAN."""
    return client.sadd(registry, name)


def schedule_queues(client: Any, index: str) -> Any:
    """The schedule index: {id: target queue}."""
    return client.hgetall(index)


def read_hashes(client: Any, keys: Sequence[str]) -> Any:
    """Each hash at `keys` (empty when gone), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return pipe.execute()


def read_schedules(client: Any, keys: Sequence[ScheduleKeys]) -> Any:
    """Each schedule's hash (empty when gone), in one round trip."""
    return read_hashes(client, [key.schedule for key in keys])


def add_events(client: Any, stream: str, cap: int, events: Sequence[dict[str, Any]]) -> Any:
    """XADD lifecycle events to a capped event stream, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(stream, event, maxlen=cap, approximate=True)
    return pipe.execute()


def last_entries(client: Any, streams: Sequence[str]) -> Any:
    """Each stream's last entry ([] when empty), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.xrevrange(stream, "+", "-", count=1)
    return pipe.execute()


def read_hash(client: Any, key: str) -> Any:
    """A hash, whole ({} when there is none): a message's status, a workflow's record."""
    return client.hgetall(key)


def write_hash(client: Any, key: str, fields: dict[str, Any]) -> Any:
    return client.hset(key, mapping=fields)


def expire_now(client: Any, key: str) -> Any:
    """Make a key expire at once (PEXPIRE 1: a producer's ACL rules need no DEL)."""
    return client.pexpire(key, 1)


def hash_field(client: Any, key: str, name: str) -> Any:
    """One field of a hash (None when it has none): HGET, which a producer's ACL rules
    allow (HMGET they do not)."""
    return client.hget(key, name)


def batch(client: Any) -> Any:
    """A pipeline on `client` (no MULTI): the commands and scripts queued on it go in one
    round trip when `send_batch` sends them."""
    return client.pipeline(transaction=False)


def send_batch(pipe: Any) -> Any:
    """Send what a `batch` holds; the replies, in order."""
    return pipe.execute()


def wait_replicas(pipe: Any, replicas: int, timeout_ms: int) -> Any:
    """Queue a WAIT: how many replicas acknowledged the writes before it, within the time."""
    return pipe.execute_command("WAIT", replicas, timeout_ms)


async def cancel_flags(client: Any, statuses: Sequence[str]) -> list[Any]:
    """For each status hash: [cancel flag, reason], in one round trip ([None, None] for a
    done message's compact record, a string: lua/_status.lua)."""
    pipe = client.pipeline(transaction=False)
    for key in statuses:
        pipe.hmget(key, "cancel", "reason")
    return reads.no_fields_for_records(await pipe.execute(raise_on_error=False), 2)


def registered(client: Any, registry: str) -> Any:
    return client.smembers(registry)


def group_names(client: Any, stream: str) -> list[str]:
    """The consumer groups of `stream` (none when it does not exist)."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.exceptions.ResponseError as exc:
        if "no such key" in str(exc):
            return []
        raise
    return [
        name.decode() if isinstance(name, bytes) else str(name)
        for name in (group["name"] for group in groups)
    ]


def register_partitions(client: Any, registry: str, partitions: dict[str, int]) -> Any:
    """Record how many partitions each queue of `partitions` has."""
    return client.hset(registry, mapping=partitions)


def registered_partitions(client: Any, registry: str) -> Any:
    return client.hgetall(registry)


def create_group(client: Any, source: Source) -> bool:
    """Create the source's consumer group (and stream) at `source.start` on a synchronous
    client; False if it existed."""
    try:
        client.xgroup_create(source.stream, source.group, id=source.start, mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if not str(exc).startswith("BUSYGROUP"):
            raise
        return False
    return True


async def ensure_group(client: Any, source: Source) -> None:
    """Create the source's consumer group (and stream) unless it exists, at `source.start`."""
    try:
        await client.xgroup_create(source.stream, source.group, id=source.start, mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if not str(exc).startswith("BUSYGROUP"):
            raise


def read(
    client: Any,
    group: str,
    consumer: str,
    streams: dict[str, str],
    count: int,
    block_ms: int | None,
) -> Any:
    """XREADGROUP new entries (`>`) from several streams; None or [[stream, entries], ...]."""
    return client.xreadgroup(group, consumer, streams, count=count, block=block_ms)


def claim_stale(
    client: Any, source: Source, consumer: str, min_idle_ms: int, start: bytes, count: int
) -> Any:
    """XAUTOCLAIM entries idle past `min_idle_ms`: [next start, entries, deleted ids]."""
    return client.xautoclaim(
        source.stream, source.group, consumer, min_idle_ms, start_id=start, count=count
    )


def pending_of(
    client: Any,
    source: Source,
    consumer: str,
    first: bytes = b"-",
    last: bytes = b"+",
    count: int = 1,
) -> Any:
    """XPENDING details of `consumer`'s entries between two ids (each with times delivered)."""
    return client.xpending_range(
        source.stream, source.group, first, last, count, consumername=consumer
    )


def pending_entries(client: Any, source: Source, count: int) -> Any:
    """XPENDING details of the group's first `count` pending entries, of every consumer."""
    return client.xpending_range(source.stream, source.group, "-", "+", count)


def remove_consumer(client: Any, source: Source, consumer: str) -> Any:
    """XGROUP DELCONSUMER — which drops the consumer's pending entries: check they are none."""
    return client.xgroup_delconsumer(source.stream, source.group, consumer)


async def beat(
    client: Any, keys: Sequence[str], consumer: str, now_ms: int, lapses_ms: int
) -> None:
    """Say, in one round trip, that worker `consumer` serves the sources whose `workers`
    sets are `keys` until `lapses_ms`; drop workers whose heartbeat lapsed. A set lives as
    long as its last heartbeat: no worker left, no key left."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.zadd(key, {consumer: lapses_ms})
        pipe.zremrangebyscore(key, "-inf", now_ms)
        ttl = max(1, lapses_ms - now_ms)
        pipe.pexpire(key, ttl, nx=True)  # a new set: it has no TTL yet
        pipe.pexpire(key, ttl, gt=True)  # never shorter than another worker's heartbeat
    await pipe.execute()


async def leave(client: Any, keys: Sequence[str], consumer: str) -> None:
    """Take worker `consumer` out of the `workers` sets `keys` (it stops serving them)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.zrem(key, consumer)
    await pipe.execute()


def workers_of(client: Any, sources: Sequence[Source]) -> list[Any]:
    """Per source, in one round trip: its workers as [(consumer, lapses at ms), ...]."""
    pipe = client.pipeline(transaction=False)
    for source in sources:
        pipe.zrange(source.workers, 0, -1, withscores=True)
    return list(pipe.execute())


def wait_result(client: Any, key: str, timeout: float) -> Any:
    """Block until the result list at `key` has its element, and return it (kept in place)."""
    return client.blmove(key, key, timeout, "RIGHT", "RIGHT")


async def durability(client: Any) -> tuple[str, bool | None]:
    """(maxmemory-policy, whether Redis persists anything: AOF or RDB; None when unknown).

    Uses CONFIG GET, and INFO where CONFIG is not allowed (managed Redis, ACL users).
    """
    try:
        config = await client.config_get("maxmemory-policy")
        config.update(await client.config_get("appendonly"))
        config.update(await client.config_get("save"))
        persists = config.get("appendonly") == "yes" or bool(config.get("save", "").strip())
        return config["maxmemory-policy"], persists
    except redis.exceptions.ResponseError:
        memory = await client.info("memory")
        persistence = await client.info("persistence")
        persists = True if persistence.get("aof_enabled") else None
        return str(memory.get("maxmemory_policy", "unknown")), persists


def queue_counts(
    client: Any, sources: Sequence[Source], held: Sequence[Sequence[str]], now_ms: int
) -> list[list[Any]]:
    """Per source, in one round trip: [stream length, pending summary, delayed count,
    dead letters, stream info, stats totals, live workers (heartbeats current at `now_ms`),
    messages waiting for a concurrency slot (the lengths of its `held` lists, summed)].

    Pending summary and stream info are exception objects when the group or stream does
    not exist yet.
    """
    pipe = client.pipeline(transaction=False)
    for source in sources:
        pipe.xlen(source.stream)
        pipe.xpending(source.stream, source.group)
        pipe.zcard(source.delayed)
        pipe.xlen(source.dead_letters)
        pipe.xinfo_stream(source.stream)
        pipe.hgetall(source.stats)
        pipe.zcount(source.workers, now_ms, "+inf")
    for lists in held:
        for key in lists:
            pipe.llen(key)
    replies = pipe.execute(raise_on_error=False)
    counts = [replies[i : i + 7] for i in range(0, 7 * len(sources), 7)]
    at = 7 * len(sources)
    for count, lists in zip(counts, held or [()] * len(sources), strict=True):
        count.append(sum(replies[at : at + len(lists)]))
        at += len(lists)
    return counts


def topic_info(client: Any, streams: Sequence[str]) -> list[list[Any]]:
    """Per topic stream, in one round trip: [stream info, groups info] (errors as values)."""
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.xinfo_stream(stream)
        pipe.xinfo_groups(stream)
    replies = pipe.execute(raise_on_error=False)
    return [replies[i : i + 2] for i in range(0, len(replies), 2)]


def group_counts(
    client: Any, groups: Sequence[tuple[Source, Source]], now_ms: int
) -> list[list[Any]]:
    """Per subscriber group (its topic and retry sources), in one round trip: [topic pending
    summary, retry stream length, retry pending summary, delayed count, dead letters,
    live workers (heartbeats current at `now_ms`)] (errors as values)."""
    pipe = client.pipeline(transaction=False)
    for main, retry in groups:
        pipe.xpending(main.stream, main.group)
        pipe.xlen(retry.stream)
        pipe.xpending(retry.stream, retry.group)
        pipe.zcard(retry.delayed)
        pipe.xlen(retry.dead_letters)
        pipe.zcount(main.workers, now_ms, "+inf")
    replies = pipe.execute(raise_on_error=False)
    return [replies[i : i + 6] for i in range(0, len(replies), 6)]


# -- schedules: the index, each schedule's hash and the due set (ticker.py, schedules.py) --


def index_schedule(client: Any, index: str, id: str, queue: str) -> Any:
    """Record in the schedule index which queue holds schedule `id`."""
    return client.hset(index, id, queue)


def unindex_schedule(client: Any, index: str, id: str) -> Any:
    return client.hdel(index, id)


def queue_of_schedule(client: Any, index: str, id: str) -> Any:
    """The queue holding schedule `id` (bytes), or None."""
    return client.hget(index, id)


def schedule_origin(client: Any, keys: ScheduleKeys) -> Any:
    """Who declared a schedule: b"code" or b"runtime" (None when gone)."""
    return client.hget(keys.schedule, "origin")


def schedule_fields(client: Any, keys: ScheduleKeys) -> Any:
    """A schedule's hash (empty when gone)."""
    return client.hgetall(keys.schedule)


def next_due(client: Any, keys: ScheduleKeys) -> Any:
    """When schedule `keys.id` is next due (its score in the due set), or None."""
    return client.zscore(keys.due, keys.id)


def next_dues(client: Any, keys: Sequence[ScheduleKeys]) -> Any:
    """`next_due` of each schedule, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.zscore(key.due, key.id)
    return pipe.execute()


def first_of_due_set(client: Any, due_set: str) -> Any:
    """The first [(id, due ms)] of a queue's due set, or []."""
    return client.zrange(due_set, 0, 0, withscores=True)


def due_after(client: Any, due_set: str, after_ms: int) -> Any:
    """[(id, due ms)] of the schedules due after `after_ms`."""
    return client.zrangebyscore(due_set, f"({after_ms}", "+inf", withscores=True)


def set_due(client: Any, due_set: str, id: str, due_ms: int) -> Any:
    """Give a schedule still in the due set another due time."""
    return client.zadd(due_set, {id: due_ms}, xx=True)


def forget_due(client: Any, due_set: str, id: str) -> Any:
    """Drop the due time of a schedule removed under the ticker."""
    return client.zrem(due_set, id)


def release_claim(client: Any, keys: ScheduleKeys, due_ms: int) -> Any:
    """Delete the claim of one tick, so that a ticker enqueues that tick again."""
    return client.delete(keys.claim(due_ms))


# -- rate limit overrides (`streamwork limits`; _worker/overrides.py reads them) --------------


def rate_overrides(client: Any, key: str) -> Any:
    """{task: rate text} of the overrides in force."""
    return client.hgetall(key)


def set_rate_override(client: Any, key: str, task: str, text: str) -> Any:
    return client.hset(key, task, text)


def reset_rate_override(client: Any, key: str, task: str) -> Any:
    """Remove a task's override: 1 removed, 0 it had none."""
    return client.hdel(key, task)
