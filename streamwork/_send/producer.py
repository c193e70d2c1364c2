"""Producer: the write side of every send and publish — one plan, then sync or async I/O.

Owns turning a send (a task message or a topic event; now or delayed; keyed or not; one or
many; waiting for replicas or not) into a `Plan`: the encoded bodies, checked against
`max_message_bytes`, the keys they go to, the due time, the idempotency key. `write` and
`write_async` only perform a plan's I/O, step for step the same, so the sync and async
paths cannot drift. It never builds an envelope's arguments (task.py and topic.py do) and
never decides what a message means to a worker.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis.exceptions

from .._base import ids, metrics, protocol
from .._base.keys import PARTITION_MARK
from .._base.settings import Duration, to_seconds
from .._redis import commands
from .._redis.connection import Connection
from .._redis.rows import NO_STATE, SendState
from .._redis.scripts import Scripts
from ..errors import ConfigurationError, ReplicationTimeout, SendIncomplete, StreamworkError

SEND_BATCH = 1000
"""How many messages a many-send writes in one atomic command (one round trip)."""
DEFAULT_KEY_TTL = 86400.0
"""How long an idempotency key holds by default: one day."""


def due_ms(delay: Duration | None, eta: datetime | None) -> int | None:
    """When a message sent with `delay` or `eta` is due (Unix ms); None for now."""
    if delay is not None and eta is not None:
        raise ConfigurationError("give either delay or eta, not both")
    if eta is not None:
        return _unix_ms("eta", eta)
    if delay is None:
        return None
    seconds = to_seconds("delay", delay)
    if seconds == 0:
        return None
    return protocol.now_ms() + math.ceil(seconds * 1000)


def _unix_ms(name: str, moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ConfigurationError(f"{name} must be a timezone-aware datetime (e.g. UTC)")
    return int(moment.astimezone(timezone.utc).timestamp() * 1000)


def expires_ms(expires: Duration | datetime | None) -> int | None:
    """A message's deadline (Unix ms) from `expires` (seconds or a timedelta from now, or a
    timezone-aware datetime); None for none."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        return _unix_ms("expires", expires)
    return protocol.now_ms() + math.ceil(to_seconds("expires", expires, allow_zero=False) * 1000)


@dataclass(frozen=True)
class Destination:
    """Where messages go: a queue (with its idempotency keys) or a topic."""

    name: str
    """The queue or topic name (metrics label, registry member)."""
    registry: str
    stream: str
    delayed: str
    dedupe_prefix: str | None = None
    """`NS:{QUEUE}:dedupe:` for a queue; None for a topic (no idempotent publish)."""
    status_prefix: str | None = None
    """`NS:{QUEUE}:status:` for a queue's messages; None for a topic's events."""
    task: str = ""
    """The task a queue destination's messages run (their status names it)."""
    events: str = ""
    """The queue's event stream (`NS:{QUEUE}:events`)."""
    fair: tuple[str, int] | None = None
    """A fair task's key prefix and per-key concurrency (0: none)."""
    order_prefix: str = ""
    """`NS:{QUEUE}:` for a queue: where its partition keys' orders are kept (OrderKeys)."""
    queue: str = ""
    """The queue whose stream it is (a partition's internal name, `orders~3`)."""
    band: str | None = None
    """The priority band whose stream it is (None: the queue's own stream)."""


@dataclass(slots=True)
class Plan:
    """Everything one send call writes, decided before any I/O."""

    destination: Destination
    ids: list[str]
    bodies: list[bytes]
    due_ms: int | None = None
    is_many: bool = False
    dedupe_key: str | None = None
    """The full idempotency key (single sends only)."""
    key_ttl_ms: int = 0
    replicas: int = 0
    replica_timeout_ms: int = 0
    state: SendState = NO_STATE
    """For the status and event of each message: (task, now ms, status time-to-live ms,
    event stream, its cap or 0)."""
    fair_keys: list[str] | None = None
    """A fair task's messages: each one's key (they wait in their keys' lists)."""
    partition_key: str | None = None
    """A single send's partition key: its id joins the key's order (see Destination)."""
    batch_destinations: list[Destination] | None = None
    """A many-send to a partitioned queue: each batch of SEND_BATCH goes to its own
    partition (the ids name it); None: every batch goes to `destination`."""
    by_entry: bool = False
    """Its messages' ids are their entries' (ids.py): the send writes the entries alone,
    and `ids` holds each one's once it is written."""

    def destination_at(self, start: int) -> Destination:
        """Where the batch that starts at message `start` goes."""
        if self.batch_destinations is None:
            return self.destination
        return self.batch_destinations[start // SEND_BATCH]

    def statuses(self, ids: Sequence[str], start: int = 0) -> list[str]:
        prefix = self.destination_at(start).status_prefix
        return [] if prefix is None else [prefix + message_id for message_id in ids]


class Producer:
    """Plans and writes sends on one Connection."""

    def __init__(
        self,
        connection: Connection,
        max_message_bytes: int,
        status_ttl_ms: int = 86_400_000,
        track_status: bool = True,
        events_cap: Callable[[str], int] = lambda queue: 0,
        workflow_ttl_ms: int = 86_400_000,
    ) -> None:
        self.connection = connection
        self.workflow_ttl_ms = workflow_ttl_ms
        """How long a workflow's record is kept after it ends."""
        self.max_message_bytes = max_message_bytes
        self.status_ttl_ms = status_ttl_ms
        self.track_status = track_status
        self.events_cap = events_cap
        """The cap of a queue's event stream (0: no events)."""
        self._by_entry: dict[tuple[str, str, str], bool] = {}
        """`sends_by_entry` per destination (the app's settings it reads do not change)."""

    def plan(
        self,
        destination: Destination,
        envelopes: Iterable[protocol.Envelope],
        what: str,
        *,
        due: int | None = None,
        is_many: bool = False,
        key: str | None = None,
        key_ttl: Duration = DEFAULT_KEY_TTL,
        replicas: int = 0,
        replica_timeout: Duration = 1.0,
        fair_keys: list[str] | None = None,
        partition_key: str | None = None,
    ) -> Plan:
        """Encode `envelopes` and check every option; raise before anything is sent."""
        cap = self.events_cap(destination.name) if destination.status_prefix else 0
        # A plain send to a queue writes its entries alone; its ids are theirs (ids.py).
        by_entry = (
            due is None
            and key is None
            and partition_key is None
            and fair_keys is None
            and self.sends_by_entry(destination)
        )
        # One envelope at a time: each is garbage once encoded (thousands of live envelopes
        # would keep the garbage collector busy on the hot path of send_many).
        encode = protocol.encode
        with_id = not by_entry
        ids: list[str] = []
        bodies: list[bytes] = []
        for envelope in envelopes:
            ids.append(envelope.id)
            bodies.append(encode(envelope, with_id))
        if bodies and max(map(len, bodies)) > self.max_message_bytes:
            for body in bodies:
                protocol.check_size(body, self.max_message_bytes, what)
        dedupe_key, key_ttl_ms = None, 0
        if key is not None:
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"key must be a non-empty string, got {key!r}")
            if destination.dedupe_prefix is None:
                raise ConfigurationError("idempotency keys are for task sends, not publishes")
            dedupe_key = destination.dedupe_prefix + key
            key_ttl_ms = int(to_seconds("key_ttl", key_ttl, allow_zero=False) * 1000)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ConfigurationError(f"replicas must be a whole number >= 0, got {replicas!r}")
        return Plan(
            fair_keys=fair_keys,
            partition_key=partition_key,
            destination=destination,
            ids=ids,
            bodies=bodies,
            due_ms=due,
            is_many=is_many,
            dedupe_key=dedupe_key,
            key_ttl_ms=key_ttl_ms,
            replicas=replicas,
            replica_timeout_ms=(
                int(to_seconds("replica_timeout", replica_timeout) * 1000) if replicas else 0
            ),
            state=SendState(
                destination.task, protocol.now_ms(), self.status_ttl_ms, destination.events, cap
            ),
            by_entry=by_entry,
        )

    def sends_by_entry(self, destination: Destination) -> bool:
        """Whether a plain send to `destination` is its entry alone, the message's id the
        entry's (ids.py): a queue of an app that tracks status, not a partition, recording
        no events."""
        key = (destination.name, destination.queue, destination.stream)
        found = self._by_entry.get(key)
        if found is None:
            found = self._by_entry[key] = (
                destination.status_prefix is not None
                and PARTITION_MARK not in destination.queue
                and not self.events_cap(destination.name)
            )
        return found

    # -- the I/O, twinned -----------------------------------------------------------------

    def append(self, destination: Destination, body: bytes) -> str:
        """Send one message by entry, planned by the caller (Task.send: nothing to plan but
        the message): one XADD; returns the message's id, its entry's."""
        started = time.perf_counter()
        connection = self.connection
        with connection.translate_errors():
            connection.register(destination.registry, destination.name)
            entry = commands.append(connection.redis, destination.stream, body)
        return _appended(destination, entry, started)

    async def append_async(self, destination: Destination, body: bytes) -> str:
        """Like `append`, on the running event loop's client."""
        started = time.perf_counter()
        connection = self.connection
        with connection.translate_errors():
            await connection.register_async(destination.registry, destination.name)
            entry = await commands.append(connection.async_redis(), destination.stream, body)
        return _appended(destination, entry, started)

    def write(self, plan: Plan) -> str:
        """Perform `plan`; returns the id of the message holding the plan's key (its own
        id when it has none, or when it queued it). Raises streamwork's errors."""
        started = time.perf_counter()
        connection = self.connection
        if plan.is_many:
            with connection.translate_errors():
                connection.register(plan.destination.registry, plan.destination.name)
            _write_batches(
                connection, plan, lambda batch, start: self._many(connection, plan, batch, start)
            )
            holder = plan.ids[0] if plan.ids else ""
        else:
            with connection.translate_errors():
                connection.register(plan.destination.registry, plan.destination.name)
                if plan.replicas:
                    holder = self._replicated(plan)
                else:
                    holder = _holder(plan, _one(connection.redis, connection.scripts, plan))
        metrics.sent(plan.destination.name, len(plan.ids), time.perf_counter() - started)
        return holder

    async def write_async(self, plan: Plan) -> str:
        """Like `write`, on the running event loop's client."""
        started = time.perf_counter()
        connection = self.connection
        if plan.is_many:
            done = 0
            try:
                with connection.translate_errors():
                    await connection.register_async(
                        plan.destination.registry, plan.destination.name
                    )
                    for start in range(0, len(plan.bodies), SEND_BATCH):
                        batch = plan.bodies[start : start + SEND_BATCH]
                        await self._many_async(plan, batch, start)
                        done = min(start + SEND_BATCH, len(plan.bodies))
            except StreamworkError as exc:
                raise _incomplete(plan, done, exc) from exc
            holder = plan.ids[0] if plan.ids else ""
        else:
            with connection.translate_errors():
                await connection.register_async(plan.destination.registry, plan.destination.name)
                if plan.replicas:
                    holder = await self._replicated_async(plan)
                else:
                    client = connection.async_redis()
                    written = await _one(client, connection.async_scripts(), plan)
                    holder = _holder(plan, written)
        metrics.sent(plan.destination.name, len(plan.ids), time.perf_counter() - started)
        return holder

    @property
    def server(self) -> dict[str, Any]:
        """The Redis server's address, for trace spans."""
        return self.connection.server

    def _many(self, connection: Connection, plan: Plan, batch: list[bytes], start: int) -> None:
        _named(plan, start, _add_many(connection.scripts, plan, batch, start))

    async def _many_async(self, plan: Plan, batch: list[bytes], start: int) -> None:
        _named(plan, start, await _add_many(self.connection.async_scripts(), plan, batch, start))

    def _replicated(self, plan: Plan) -> str:
        """The write and a WAIT on one connection of the node that holds the queue."""
        client = self.connection.node_client(plan.destination.stream)
        pipe = commands.batch(client)
        _one(pipe, Scripts(pipe), plan)
        commands.wait_replicas(pipe, plan.replicas, plan.replica_timeout_ms)
        try:
            written, acknowledged = commands.send_batch(pipe)
        except redis.exceptions.RedisError:
            self.connection.refresh_nodes()  # a node failed or the slot moved: ask again
            raise
        return _replicated_holder(plan, written, acknowledged)

    async def _replicated_async(self, plan: Plan) -> str:
        client = await self.connection.async_node_client(plan.destination.stream)
        pipe = commands.batch(client)
        queued = _one(pipe, Scripts(pipe), plan)
        if inspect.isawaitable(queued):  # an asyncio script queues itself when awaited
            await queued
        commands.wait_replicas(pipe, plan.replicas, plan.replica_timeout_ms)
        try:
            written, acknowledged = await commands.send_batch(pipe)
        except redis.exceptions.RedisError:
            await self.connection.refresh_nodes_async()
            raise
        return _replicated_holder(plan, written, acknowledged)


def _appended(destination: Destination, entry: Any, started: float) -> str:
    """After one message sent by entry: its send counted, and its id (its entry's)."""
    metrics.sent(destination.name, 1, time.perf_counter() - started)
    return ids.from_entry(destination.queue, destination.band, entry)


def _fair(scripts: Scripts, plan: Plan, batch: list[bytes], start: int) -> Any:
    """A fair task's messages into their keys' lists (fair_send.lua)."""
    destination = plan.destination
    assert destination.fair is not None and plan.fair_keys is not None
    prefix, concurrency = destination.fair
    ids = plan.ids[start : start + len(batch)]
    keys = plan.fair_keys[start : start + len(batch)]
    return scripts.fair_send(
        destination.stream,
        prefix,
        list(zip(ids, batch, keys, strict=True)),
        plan.statuses(ids),
        plan.state,
        concurrency,
    )


def _add_many(scripts: Scripts, plan: Plan, batch: list[bytes], start: int) -> Any:
    if plan.fair_keys is not None:
        return _fair(scripts, plan, batch, start)
    destination = plan.destination_at(start)
    if plan.by_entry:
        return scripts.add_many(destination.stream, destination.delayed, batch, by_entry=True)
    return scripts.add_many(
        destination.stream,
        destination.delayed,
        batch,
        ids=plan.ids[start : start + len(batch)],
        due_ms=plan.due_ms,
        statuses=plan.statuses(plan.ids[start : start + len(batch)], start),
        state=plan.state._replace(events=destination.events),
    )


def _named(plan: Plan, start: int, entries: Any) -> None:
    """Name the messages of the batch at `start` by the entries they were written to."""
    if plan.by_entry:
        destination = plan.destination_at(start)
        plan.ids[start : start + len(entries)] = ids.from_entries(
            destination.queue, destination.band, entries
        )


def _one(client: Any, scripts: Scripts, plan: Plan) -> Any:
    """The command of a single send on `client` (sync, asyncio or a pipeline): what it
    returns, an awaitable of it, or the pipeline."""
    if plan.fair_keys is not None:
        return _fair(scripts, plan, plan.bodies, 0)
    body, destination = plan.bodies[0], plan.destination
    if plan.by_entry:
        return commands.append(client, destination.stream, body)
    statuses = plan.statuses(plan.ids)
    if statuses or plan.dedupe_key is not None or plan.partition_key is not None:
        # a status, a key, an order, or several: one script
        dedupe = None if plan.dedupe_key is None else (plan.dedupe_key, plan.key_ttl_ms)
        state = plan.state if statuses else plan.state._replace(ttl_ms=0)
        order = (
            None if plan.partition_key is None else (destination.order_prefix, plan.partition_key)
        )
        return scripts.enqueue(
            destination.stream,
            destination.delayed,
            statuses[0] if statuses else destination.stream,
            plan.ids[0],
            body,
            plan.due_ms,
            state,
            dedupe,
            order=order,
        )
    if plan.due_ms is None:
        return commands.append(client, destination.stream, body)
    return commands.schedule(client, destination.delayed, body, plan.due_ms)


def _holder(plan: Plan, written: Any) -> str:
    """The id of the message holding the plan's key: the script's reply, else its own
    (read off its entry when the plan is by entry)."""
    if plan.by_entry:
        plan.ids[0] = ids.from_entry(plan.destination.queue, plan.destination.band, written)
    if plan.dedupe_key is None:
        return plan.ids[0]
    return written.decode() if isinstance(written, bytes) else str(written)


def _replicated_holder(plan: Plan, written: Any, acknowledged: int) -> str:
    holder = _holder(plan, written)
    if acknowledged < plan.replicas:
        raise ReplicationTimeout(
            f"message {plan.ids[0]} is queued, but only {acknowledged} of {plan.replicas} "
            f"replica(s) acknowledged it within {plan.replica_timeout_ms} ms: a failover "
            "now could lose it"
        )
    return holder


def _write_batches(
    connection: Connection, plan: Plan, write: Callable[[list[bytes], int], Any]
) -> None:
    """Write a many-send in batches of SEND_BATCH, each one atomic command.

    If a batch fails after earlier ones were written, raise SendIncomplete carrying what
    was queued and the index to resume from; if the first fails, nothing was queued and the
    Redis error itself is raised.
    """
    done = 0
    try:
        with connection.translate_errors():
            for start in range(0, len(plan.bodies), SEND_BATCH):
                write(plan.bodies[start : start + SEND_BATCH], start)
                done = min(start + SEND_BATCH, len(plan.bodies))
    except StreamworkError as exc:
        raise _incomplete(plan, done, exc) from exc


def _incomplete(plan: Plan, done: int, exc: StreamworkError) -> StreamworkError:
    if done == 0:
        return exc
    return SendIncomplete(
        f"queued {done} of {len(plan.bodies)} message(s) (items 0-{done - 1}), then failed: "
        f"{exc} — items {done} on were not queued; resend them (items[{done}:])",
        plan.ids[:done],
        done,
    )
