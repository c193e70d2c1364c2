"""Task: a decorated function, and the producer side — send, send_async, send_with, send_many.

Owns the signature check (bad arguments fail at send time, not on a worker) and the
handles returned by sends. It builds envelopes and hands them to _redis.commands; it never runs
a handler (the worker does) and never decides retries.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NoReturn

import msgpack

from .._base import metrics, protocol, tracing
from .._base.handler import HandlerOptions, check_priority
from .._base.keys import PARTITION_ID, QueueKeys, partition_name, partition_of_id, queue_registry
from .._base.plans import Plan, run_plan, run_plan_async, step
from .._base.settings import Duration
from .._lifecycle.lifecycle import CancelResult, TaskStatus, decode_cancel, parse_status
from .._redis import commands
from .._redis.connection import MAX_BLOCK, block_for
from .._send.producer import DEFAULT_KEY_TTL, SEND_BATCH, Destination, Producer, due_ms
from .._workflows.canvas import Signature
from ..errors import (
    BadArguments,
    ConfigurationError,
    DecodeError,
    ResultTimeout,
    SendIncomplete,
    TaskCancelled,
    TaskFailed,
)


@dataclass(frozen=True)
class TaskHandle:
    """What a send returns: the message id, and its result when the task stores results."""

    id: str
    task: Task = field(repr=False)
    is_duplicate: bool = False
    """True when a send with an idempotency key found the key held: nothing was queued."""

    @property
    def _key(self) -> str:
        return self.task.result_key(self.id)

    @property
    def partition(self) -> int | None:
        """The partition of its queue the message was sent to (None: a plain queue)."""
        return self.task.partition_of(self.id)

    def _check(self) -> None:
        if not self.task.options.store_result:
            raise ConfigurationError(
                f"task {self.task.name!r} does not store results: declare it with store_result=True"
            )

    def result(self, timeout: float | None = 10.0) -> Any:
        """Wait up to `timeout` seconds (None: without limit) for the return value.

        TaskFailed if it ended for good (dead-lettered, failed), TaskCancelled at once if it
        was cancelled (or when it is, while waiting), ResultTimeout past the timeout."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            return run_plan(self._result_plan(timeout), connection.redis)

    async def result_async(self, timeout: float | None = 10.0) -> Any:
        """Like `result`, for asyncio code."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            return await run_plan_async(self._result_plan(timeout), connection.async_redis())

    def _result_plan(self, timeout: float | None) -> Plan[Any]:
        self._check()
        wait = _ResultWait(timeout, self.task.producer.track_status)
        while True:
            key = self._status_key if wait.looks_at_status() else None
            if key and (yield step(commands.hash_field, key, "state")) == CANCELLED:
                self._raise_cancelled((yield step(commands.hash_field, key, "reason")))
            block = wait.block()
            raw = yield step(commands.wait_result, self._key, block)
            if raw is not None or wait.is_over():
                return self._decode(raw, timeout)

    def _raise_cancelled(self, raw_reason: bytes | None) -> NoReturn:
        reason = raw_reason.decode(errors="replace") if raw_reason else None
        why = f": {reason}" if reason else ""
        raise TaskCancelled(f"task {self.task.name} id {self.id} was cancelled{why}", reason)

    # -- lifecycle ------------------------------------------------------------------------

    def _check_tracked(self) -> None:
        if not self.task.producer.track_status:
            raise ConfigurationError(
                "this app does not track message status (App(track_status=False)): there is "
                "no status to read and nothing to cancel"
            )

    @property
    def _status_key(self) -> str:
        self._check_tracked()
        return self.task.keys_for(self.id).status(self.id)

    def status(self) -> TaskStatus:
        """Where the message is now: queued, delayed, running (with progress), retrying,
        done, failed, dead, cancelled, or unknown (never sent, or its status expired)."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            raw = commands.read_hash(connection.redis, self._status_key)
        return parse_status(raw, protocol.now_ms())

    async def status_async(self) -> TaskStatus:
        """Like `status`, for asyncio code."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            raw = await commands.read_hash(connection.async_redis(), self._status_key)
        return parse_status(raw, protocol.now_ms())

    def cancel(self, reason: str | None = None) -> CancelResult:
        """Cancel the message; returns what that did: "cancelled" (it was queued or delayed:
        it never runs; or it was cancelled already: a repeated cancel, say after a lost
        reply, answers as the first did), "cancelling" (it is running: its worker stops it —
        an async handler at once, a sync one when it checks `message.cancelled`), "finished"
        (it had already ended: done, failed or dead; nothing changes) or "unknown" (no such
        message, or its status expired)."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            reply = connection.scripts.cancel(*self._cancel_args(reason))
        return self._cancelled(reply)

    async def cancel_async(self, reason: str | None = None) -> CancelResult:
        """Like `cancel`, for asyncio code."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            reply = await connection.async_scripts().cancel(*self._cancel_args(reason))
        return self._cancelled(reply)

    def _cancel_args(self, reason: str | None) -> tuple[QueueKeys, str, str, int, int, int]:
        if reason is not None and not isinstance(reason, str):
            raise ConfigurationError(f"reason must be a string, got {reason!r}")
        self._check_tracked()
        producer = self.task.producer
        return (
            self.task.keys_for(self.id),
            self.id,
            (reason or "")[:500],
            protocol.now_ms(),
            producer.status_ttl_ms,
            producer.events_cap(self.task.options.queue),
        )

    def _cancelled(self, reply: Any) -> CancelResult:
        what, before = decode_cancel(reply)
        if what == "cancelled" and before not in ("queued", "cancelled"):
            # delayed or waiting to retry: it left the delayed set now, no worker sees it
            metrics.run_cancelled(self.task.options.queue, "", self.task.name)
        return what

    def _decode(self, raw: bytes | None, timeout: float | None) -> Any:
        if raw is None:
            raise ResultTimeout(
                f"no result for task {self.task.name} id {self.id} within {timeout}s — "
                "is a worker running for queue " + repr(self.task.options.queue) + "?"
            )
        try:
            outcome = protocol.unpack_value(raw)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise DecodeError(f"the stored result of {self.id} cannot be read: {exc}") from None
        if not isinstance(outcome, dict):
            raise DecodeError(f"the stored result of {self.id} is not a streamwork result")
        if outcome.get("ok"):
            return outcome.get("value")
        raise TaskFailed(outcome.get("error_type", "Error"), outcome.get("error", ""))


CANCELLED = b"cancelled"
STATUS_LOOK_EVERY = 0.5
"""Seconds between two looks at a message's status while its result is awaited: a
cancelled message has no result to wait for."""


class _ResultWait:
    """The blocks a result wait is made of: each within the socket timeout, and, when the
    message's status is tracked, short enough to look at it between them."""

    def __init__(self, timeout: float | None, tracks_status: bool) -> None:
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise ConfigurationError(f"timeout must be seconds >= 0 or None, got {timeout!r}")
        self._deadline = math.inf if timeout is None else time.monotonic() + timeout
        self._tracks_status = tracks_status

    def looks_at_status(self) -> bool:
        return self._tracks_status

    def block(self) -> float:
        longest = STATUS_LOOK_EVERY if self._tracks_status else MAX_BLOCK
        if self._deadline == math.inf:
            return longest
        return min(longest, block_for(self._deadline))

    def is_over(self) -> bool:
        return time.monotonic() >= self._deadline


"""The header carrying a fair task's message key (its per-key rate limit reads it)."""


def check_partition_key(key: Any) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 200:
        raise ConfigurationError(f"partition_key must be a string of 1-200 characters, got {key!r}")
    return key


class Task:
    """A function registered with `@app.task`; calling it runs it here, `send` queues it."""

    def __init__(
        self,
        producer: Producer,
        namespace: str,
        fn: Callable[..., Any],
        name: str,
        options: HandlerOptions,
        has_bands: Callable[[str], bool] = lambda queue: False,
        partitions: Callable[[str], int] = lambda queue: 1,
    ) -> None:
        self._has_bands = has_bands
        """Whether a queue has priority bands (the App knows: a task on it says priority=)."""
        self._bands: dict[str, Destination] = {}
        self._partitions = partitions
        """How many partitions a queue has (the App knows: app.queue, partitions=)."""
        self._partition_destinations: list[Destination] = []
        self._turns = itertools.count()
        """Round-robin over the partitions for sends without a partition key."""
        self.producer = producer
        self.fn = fn
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        if options.bind:
            params = list(self.signature.parameters.values())
            if not params or params[0].kind not in (
                params[0].POSITIONAL_ONLY,
                params[0].POSITIONAL_OR_KEYWORD,
            ):
                raise ConfigurationError(
                    f"task {name!r} has bind=True, so its first parameter must take the Message"
                )
            self.signature = self.signature.replace(parameters=params[1:])
        if options.batch is not None:
            if options.bind:
                raise ConfigurationError(
                    f"batch task {name!r} takes no bind=True: it receives the Messages already"
                )
            try:
                self.signature.bind(None)
            except TypeError:
                raise ConfigurationError(
                    f"batch task {name!r} must take exactly one argument: the list of Messages"
                ) from None
        fair = options.fair
        if (
            fair is not None
            and isinstance(fair.by, str)
            and fair.by not in self.signature.parameters
        ):
            raise ConfigurationError(f"task {name!r} has no argument {fair.by!r} (its fair_by)")
        self.keys = QueueKeys(namespace, options.queue)
        self.destination = self._destination_of(self.keys)
        self._shapes_that_fit: set[Any] = set()
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def _destination_of(self, keys: QueueKeys) -> Destination:
        options = self.options
        return Destination(
            name=options.queue,  # a partition's sends count and register as its queue's
            registry=queue_registry(keys.namespace),
            stream=keys.stream,
            delayed=keys.delayed,
            dedupe_prefix=keys.dedupe(""),
            status_prefix=keys.status("") if self.producer.track_status else None,
            fair=None
            if options.fair is None
            else (keys.fair(self.name), options.fair.concurrency or 0),
            task=self.name,
            events=keys.events,
            order_prefix=keys.order_prefix,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.options.queue}>"

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature for a workflow: in a chain, it receives the previous step's result
        as its first argument, before `args`."""
        return Signature(self, args, kwargs, immutable=False)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it runs with exactly these arguments, wherever it is."""
        return Signature(self, args, kwargs, immutable=True)

    def handle(self, message_id: str) -> TaskHandle:
        """The handle of a message sent earlier (e.g. by another process), from its id."""
        return TaskHandle(message_id, self)

    def result_key(self, message_id: str) -> str:
        return self.keys_for(message_id).result(message_id)

    @property
    def partitions(self) -> int:
        """How many partitions the task's queue has (1: a plain queue)."""
        return self._partitions(self.options.queue)

    @property
    def home_queue(self) -> str:
        """Where messages that pick no partition go (a workflow's steps, a schedule's
        ticks): the task's queue, or partition 0 of a partitioned one."""
        if self.partitions == 1:
            return self.options.queue
        return partition_name(self.options.queue, 0)

    def partition_of(self, message_id: str) -> int | None:
        """The partition a message of this task was sent to, from its id (a message id on a
        partitioned queue ends in `-pN`; one without, e.g. a workflow's child, went to
        partition 0); None on a plain queue."""
        if self.partitions == 1:
            return None
        return partition_of_id(message_id)

    def keys_for(self, message_id: str) -> QueueKeys:
        """The keys of the queue (or partition) holding message `message_id`."""
        partition = self.partition_of(message_id)
        if partition is None:
            return self.keys
        return QueueKeys(self.keys.namespace, partition_name(self.options.queue, partition))

    def _partition_destination(self, partition: int) -> Destination:
        """Where a send to partition `partition` of the task's queue goes."""
        count = self.partitions
        if len(self._partition_destinations) != count:
            self._partition_destinations = [
                self._destination_of(
                    QueueKeys(self.keys.namespace, partition_name(self.options.queue, k))
                )
                for k in range(count)
            ]
        return self._partition_destinations[partition]

    def _choose_partition(self, partition_key: str | None) -> int | None:
        """The partition of a send: the key's (crc32), or the next round-robin; None on a
        plain queue."""
        count = self.partitions
        if count == 1:
            return None
        if partition_key is not None:
            return zlib.crc32(partition_key.encode()) % count
        return next(self._turns) % count

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise BadArguments unless `args` and `kwargs` fit the handler's signature (a
        batch handler takes a list of Messages: its messages may carry any arguments)."""
        if self.options.batch is not None:
            return
        # Whether a call binds depends only on how many positional arguments there are and
        # which keywords: remember the shapes that fit (this runs for every message).
        shape = (len(args), *kwargs) if kwargs else len(args)
        if shape in self._shapes_that_fit:
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise BadArguments(f"{self.name}(): {exc}") from None
        if len(self._shapes_that_fit) < 64:
            self._shapes_that_fit.add(shape)

    def envelope(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        due: int | None = None,
        trace_context: dict[str, str] | None = None,
        partition: int | None = None,
    ) -> protocol.Envelope:
        """The envelope of one call, after checking its arguments (`trace_context`: the
        trace headers, when the caller looked them up once for many envelopes; `partition`:
        the partition it goes to, which its id names)."""
        args = tuple(args)
        kwargs = kwargs or {}
        self.check_arguments(args, kwargs)
        message_id = protocol.new_id()
        return protocol.Envelope(
            id=message_id if partition is None else f"{message_id}{PARTITION_ID}{partition}",
            task=self.name,
            args=args,
            kwargs=kwargs,
            headers=tracing.with_context(headers, trace_context),
            enqueued_ms=due or protocol.now_ms(),
        )

    def send(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Queue one run with these arguments; returns at once with the message's handle."""
        return self.send_with(args=args, kwargs=kwargs)

    async def send_async(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Like `send`, for asyncio code."""
        return await self.send_with_async(args=args, kwargs=kwargs)

    def fair_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key a fair task's message waits under: its `fair_by` argument's value (or
        what the `fair_by` callable returns), as a string."""
        assert self.options.fair is not None
        by = self.options.fair.by
        if callable(by):
            value = by(*args, **kwargs)
        else:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            value = bound.arguments[by]
        key = value if isinstance(value, str) else str(value)
        if not key or len(key) > 200:
            raise BadArguments(
                f"{self.name}(): the fair_by key must be 1-200 characters, got {key!r}"
            )
        return key

    def _keyed(self, envelope: protocol.Envelope) -> tuple[protocol.Envelope, str]:
        """A fair task's checked envelope with its key in its headers, and the key."""
        key = self.fair_key(envelope.args, envelope.kwargs)
        return replace(envelope, headers={**envelope.headers, protocol.FAIR_KEY: key}), key

    def destination_for(self, priority: str | None, partition: int | None = None) -> Destination:
        """Where a send goes: the stream of its priority band (the task's own by default),
        or of partition `partition` of a partitioned queue."""
        if partition is not None:
            return self._partition_destination(partition)
        band = self.options.priority if priority is None else check_priority(priority)
        if band is None or band == "default":
            return self.destination
        found = self._bands.get(band)
        if found is None:
            if not self._has_bands(self.options.queue):
                raise ConfigurationError(
                    f"queue {self.options.queue!r} has no priority bands: declare a task on "
                    "it with priority= (e.g. priority='default') so workers read its bands"
                )
            found = self._bands[band] = replace(
                self.destination,
                stream=self.keys.band_stream(band),
                delayed=self.keys.band_delayed(band),
            )
        return found

    def _plan_one(
        self,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any] | None,
        delay: Duration | None,
        eta: datetime | None,
        headers: dict[str, Any] | None,
        key: str | None,
        key_ttl: Duration,
        replicas: int,
        replica_timeout: Duration,
        priority: str | None = None,
        partition_key: str | None = None,
    ) -> Any:
        due = due_ms(delay, eta)
        if partition_key is not None:
            partition_key = check_partition_key(partition_key)
            if self.options.ack_mode == "auto":
                raise ConfigurationError(
                    f"task {self.name!r} acks on receipt (ack_mode='auto'): a partition key's "
                    "order needs each message's outcome (ack_mode 'late' or 'manual')"
                )
            headers = {**(headers or {}), protocol.PARTITION_KEY: partition_key}
        # An idempotency key without a partition key picks the partition: its sends meet.
        partition = self._choose_partition(partition_key if partition_key is not None else key)
        if partition is not None and priority is not None:
            raise ConfigurationError(
                f"queue {self.options.queue!r} is partitioned: it has no priority bands"
            )
        envelope = self.envelope(args, kwargs, headers, due, partition=partition)
        fair_keys = None
        # A fair task's message waits in its key's list when sent now, plainly; delayed,
        # keyed (idempotency or partition key) or replicated sends go to the queue (see
        # docs/guides/flow-control.md): a partition key's order starts at the send.
        if (
            self.options.fair is not None
            and due is None
            and key is None
            and partition_key is None
            and not replicas
        ):
            envelope, fair_key = self._keyed(envelope)
            fair_keys = [fair_key]
        return self.producer.plan(
            self.destination_for(priority, partition),
            [envelope],
            f"a message of task {self.name!r}",
            due=due,
            key=key,
            key_ttl=key_ttl,
            replicas=replicas,
            replica_timeout=replica_timeout,
            fair_keys=fair_keys,
            partition_key=partition_key,
        )

    def send_with(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        delay: Duration | None = None,
        eta: datetime | None = None,
        headers: dict[str, Any] | None = None,
        key: str | None = None,
        key_ttl: Duration = DEFAULT_KEY_TTL,
        replicas: int = 0,
        replica_timeout: Duration = 1.0,
        priority: str | None = None,
        partition_key: str | None = None,
    ) -> TaskHandle:
        """Queue one run with options: `delay` (seconds or timedelta) or `eta`, and headers.

        `priority` ("high", "default", "low"; default: the task's own) sends it in that
        band of its queue: workers take higher bands first (see Flow control).

        With `partition_key`, the messages sent with one key run one at a time, in send
        order: a message waits until the one sent before it with the key has finished
        (done, dead-lettered or cancelled; a retry keeps its place). On a partitioned queue
        the key also picks the partition. See Partitions and ordering.

        With `key`, the run is queued at most once per key within `key_ttl` (default one
        day): a later send with the same key queues nothing and returns the handle of the
        message queued first. For payments and orders that must not be submitted twice.

        With `replicas`, it returns only once that many replicas have the message (Redis
        `WAIT`, up to `replica_timeout`); fewer raise ReplicationTimeout — the message is
        queued all the same, and a failover now may lose it.
        """
        plan = self._plan_one(
            args,
            kwargs,
            delay,
            eta,
            headers,
            key,
            key_ttl,
            replicas,
            replica_timeout,
            priority,
            partition_key,
        )
        return self._handle(plan.ids[0], self.producer.write(plan))

    async def send_with_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        delay: Duration | None = None,
        eta: datetime | None = None,
        headers: dict[str, Any] | None = None,
        key: str | None = None,
        key_ttl: Duration = DEFAULT_KEY_TTL,
        replicas: int = 0,
        replica_timeout: Duration = 1.0,
        priority: str | None = None,
        partition_key: str | None = None,
    ) -> TaskHandle:
        """Like `send_with`, for asyncio code."""
        plan = self._plan_one(
            args,
            kwargs,
            delay,
            eta,
            headers,
            key,
            key_ttl,
            replicas,
            replica_timeout,
            priority,
            partition_key,
        )
        return self._handle(plan.ids[0], await self.producer.write_async(plan))

    def _handle(self, message_id: str, holder: str) -> TaskHandle:
        """The handle of the message holding the send's key (this one unless a duplicate)."""
        return TaskHandle(holder, self, is_duplicate=holder != message_id)

    def _plan_many(self, calls: Iterable[Any], delay: Duration | None) -> Any:
        due = due_ms(delay, None)
        what = f"a message of task {self.name!r}"
        destination = self.destination_for(None)
        found = tracing.context()  # once for the batch, not per message
        count = self.partitions
        if count > 1:  # each batch of SEND_BATCH to the next partition, round-robin
            first = next(self._turns)
            envelopes = (
                self.envelope(
                    *call,
                    due=due,
                    trace_context=found,
                    partition=(first + i // SEND_BATCH) % count,
                )
                for i, call in enumerate(self._calls(calls))
            )
            plan = self.producer.plan(destination, envelopes, what, due=due, is_many=True)
            plan.batch_destinations = [
                self._partition_destination((first + n) % count)
                for n in range(-(-len(plan.ids) // SEND_BATCH))
            ]
            return plan
        if self.options.fair is None or due is not None:  # delayed: to the queue when due
            envelopes = (
                self.envelope(*call, due=due, trace_context=found) for call in self._calls(calls)
            )
            return self.producer.plan(destination, envelopes, what, due=due, is_many=True)
        keyed = [
            self._keyed(self.envelope(*call, trace_context=found)) for call in self._calls(calls)
        ]
        return self.producer.plan(
            destination,
            (envelope for envelope, _ in keyed),
            what,
            is_many=True,
            fair_keys=[key for _, key in keyed],
        )

    def _calls(self, items: Iterable[Any]) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        """(args, kwargs) of each item of a many-send, checked against the signature; an
        item that does not fit is a BadArguments naming its index."""
        for index, item in enumerate(items):
            args, kwargs = _call(item)
            try:
                self.check_arguments(args, kwargs)
            except BadArguments as exc:
                hint = ""
                if isinstance(item, list):  # items read from JSON are lists, not tuples
                    hint = (
                        " (a list is one argument; for positional arguments give a tuple, "
                        "e.g. tuple(item))"
                    )
                raise BadArguments(f"send_many item {index}: {exc}{hint}") from None
            yield args, kwargs

    def send_many(self, calls: Iterable[Any], *, delay: Duration | None = None) -> list[TaskHandle]:
        """Queue one run per item: one command (one round trip) per 1000 sends.

        An item that is a tuple gives positional arguments, a dict gives keyword arguments,
        anything else (a list included) is the one positional argument; an item that does
        not fit the signature is a BadArguments naming its index (and, for a list, saying
        to give a tuple). Every item is checked before any is sent, so a bad item sends
        nothing. Each batch of 1000 is queued whole or not at all;
        if Redis fails after some batches were queued, SendIncomplete says which (`.sent`
        handles, `.index` of the first item not queued).
        """
        plan = self._plan_many(calls, delay)
        try:
            self.producer.write(plan)
        except SendIncomplete as exc:
            exc.sent = [TaskHandle(message_id, self) for message_id in exc.sent]
            raise
        return [TaskHandle(message_id, self) for message_id in plan.ids]

    async def send_many_async(
        self, calls: Iterable[Any], *, delay: Duration | None = None
    ) -> list[TaskHandle]:
        """Like `send_many`, for asyncio code."""
        plan = self._plan_many(calls, delay)
        try:
            await self.producer.write_async(plan)
        except SendIncomplete as exc:
            exc.sent = [TaskHandle(message_id, self) for message_id in exc.sent]
            raise
        return [TaskHandle(message_id, self) for message_id in plan.ids]


def _call(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(item, tuple):
        return item, {}
    if isinstance(item, dict):
        return (), item
    return (item,), {}
