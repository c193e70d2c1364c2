"""Task: a decorated function, and the producer side — send, send_async, send_with, send_many.

Owns the signature check (bad arguments fail at send time, not on a worker) and the
handles returned by sends. It builds envelopes and hands them to _redis.commands; it never runs
a handler (the worker does) and never decides retries.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from .._base import protocol, tracing
from .._base.handler import HandlerOptions
from .._base.keys import PARTITION_ID, QueueKeys
from .._base.settings import Duration
from .._send.producer import (
    DEFAULT_KEY_TTL,
    SEND_BATCH,
    Destination,
    Producer,
    due_ms,
    expires_ms,
)
from .._workflows.canvas import Signature
from ..errors import (
    BadArguments,
    ConfigurationError,
    SendIncomplete,
)
from .handles import TaskHandle
from .routing import Routing


def check_partition_key(key: Any) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 200:
        raise ConfigurationError(f"partition_key must be a string of 1-200 characters, got {key!r}")
    return key


class Task(Routing):
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
        queues: Callable[[], list[str]] = list,
    ) -> None:
        self._has_bands = has_bands
        """Whether a queue has priority bands (the App knows: a task on it says priority=)."""
        self._bands: dict[str, Destination] = {}
        self._queues = queues
        """The queues the app's workers serve (the App knows: its tasks', app.queue)."""
        self._routes: dict[str, Destination] = {}
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

    def handle(self, message_id: str, queue: str | None = None) -> TaskHandle:
        """The handle of a message sent earlier (e.g. by another process), from its id (and
        the queue it was sent to with `send_with(queue=...)`, if not the task's own)."""
        return TaskHandle(message_id, self, queue=None if queue == self.options.queue else queue)

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
        expires: int | None = None,
    ) -> protocol.Envelope:
        """The envelope of one call, after checking its arguments (`trace_context`: the
        trace headers, when the caller looked them up once for many envelopes; `partition`:
        the partition it goes to, which its id names; `expires`: its deadline, Unix ms,
        else the task's `expires` from now)."""
        args = tuple(args)
        kwargs = kwargs or {}
        self.check_arguments(args, kwargs)
        if expires is None and self.options.expires is not None:
            expires = protocol.now_ms() + math.ceil(self.options.expires * 1000)
        if expires is not None:
            headers = {**(headers or {}), protocol.EXPIRES: expires}
        message_id = protocol.new_id()
        return protocol.made(
            id=message_id if partition is None else f"{message_id}{PARTITION_ID}{partition}",
            task=self.name,
            topic="",
            payload=None,
            args=args,
            kwargs=kwargs,
            headers=tracing.with_context(headers, trace_context),
            enqueued_ms=due or protocol.now_ms(),
            attempt=1,
            first_failure_ms=None,
        )

    def send(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Queue one run with these arguments; returns at once with the message's handle."""
        plain = self.plain_send(args, kwargs)
        if plain is None:
            return self.send_with(args=args, kwargs=kwargs)
        return TaskHandle(self.producer.append(*plain), self)

    async def send_async(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Like `send`, for asyncio code."""
        plain = self.plain_send(args, kwargs)
        if plain is None:
            return await self.send_with_async(args=args, kwargs=kwargs)
        return TaskHandle(await self.producer.append_async(*plain), self)

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
        queue: str | None = None,
        expires: Duration | datetime | None = None,
    ) -> Any:
        due = due_ms(delay, eta)
        deadline = expires_ms(expires)
        self._refuse_late(due, deadline)
        routed = None if queue is None else self.routed_to(queue, priority)
        if partition_key is not None:
            partition_key = check_partition_key(partition_key)
            if self.options.ack_mode == "auto":
                raise ConfigurationError(
                    f"task {self.name!r} acks on receipt (ack_mode='auto'): a partition key's "
                    "order needs each message's outcome (ack_mode 'late' or 'manual')"
                )
            headers = {**(headers or {}), protocol.PARTITION_KEY: partition_key}
        # An idempotency key without a partition key picks the partition: its sends meet.
        partition = None
        if routed is None:
            partition = self._choose_partition(partition_key if partition_key is not None else key)
        if partition is not None and priority is not None:
            raise ConfigurationError(
                f"queue {self.options.queue!r} is partitioned: it has no priority bands"
            )
        envelope = self.envelope(args, kwargs, headers, due, partition=partition, expires=deadline)
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
            routed or self.destination_for(priority, partition),
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
        queue: str | None = None,
        expires: Duration | datetime | None = None,
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

        With `queue`, this one message goes to another queue of the app (Celery's
        `apply_async(queue=...)`): one its workers serve (a task's, or declared with
        `app.queue(name)`), plain (not partitioned, without bands). Its status and result
        are kept there; its handle knows where.

        With `expires` (seconds or a timedelta from now, or an aware datetime; default: the
        task's `expires`), a message not started by then never runs: its status reads
        "expired", it is not retried nor dead-lettered, and a stored result raises
        TaskFailed("Expired"). The deadline is absolute: it holds for a delayed message and
        for its retries.
        """
        with tracing.planned_send(
            queue or self.options.queue,
            self.producer.server,
            lambda: self._plan_one(
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
                queue,
                expires,
            ),
        ) as plan:
            holder = self.producer.write(plan)  # first: a plan by entry learns its id here
            return self._handle(plan.ids[0], holder, plan.destination.name)

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
        queue: str | None = None,
        expires: Duration | datetime | None = None,
    ) -> TaskHandle:
        """Like `send_with`, for asyncio code."""
        with tracing.planned_send(
            queue or self.options.queue,
            self.producer.server,
            lambda: self._plan_one(
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
                queue,
                expires,
            ),
        ) as plan:
            holder = await self.producer.write_async(plan)
            return self._handle(plan.ids[0], holder, plan.destination.name)

    def _refuse_late(self, due: int | None, deadline: int | None) -> None:
        """ConfigurationError for a send due at or after its deadline: it could never run."""
        if deadline is None and self.options.expires is not None:
            deadline = protocol.now_ms() + math.ceil(self.options.expires * 1000)
        if due is not None and deadline is not None and due >= deadline:
            raise ConfigurationError(
                f"a message of task {self.name!r} due at or after its deadline (expires) "
                "would never run"
            )

    def _handle(self, message_id: str, holder: str, queue: str | None = None) -> TaskHandle:
        """The handle of the message holding the send's key (this one unless a duplicate)."""
        routed = None if queue in (None, self.options.queue) else queue
        return TaskHandle(holder, self, is_duplicate=holder != message_id, queue=routed)

    def _plan_many(
        self, calls: Iterable[Any], delay: Duration | None, creations: tracing.Creations
    ) -> Any:
        due = due_ms(delay, None)
        self._refuse_late(due, None)
        what = f"a message of task {self.name!r}"
        destination = self.destination_for(None)
        count = self.partitions
        if count > 1:  # each batch of SEND_BATCH to the next partition, round-robin
            first = next(self._turns)
            envelopes = (
                self.envelope(
                    *call,
                    due=due,
                    trace_context=creations.next(),
                    partition=(first + i // SEND_BATCH) % count,
                )
                for i, call in enumerate(self._calls(calls))
            )
            # the first batch's partition: a partition's sends are never by entry
            first_partition = self._partition_destination(first % count)
            plan = self.producer.plan(first_partition, envelopes, what, due=due, is_many=True)
            plan.batch_destinations = [
                self._partition_destination((first + n) % count)
                for n in range(-(-len(plan.ids) // SEND_BATCH))
            ]
            return plan
        if self.options.fair is None or due is not None:  # delayed: to the queue when due
            envelopes = (
                self.envelope(*call, due=due, trace_context=creations.next())
                for call in self._calls(calls)
            )
            return self.producer.plan(destination, envelopes, what, due=due, is_many=True)
        keyed = [
            self._keyed(self.envelope(*call, trace_context=creations.next()))
            for call in self._calls(calls)
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
        try:
            with tracing.planned_many(
                self.options.queue,
                self.producer.server,
                lambda creations: self._plan_many(calls, delay, creations),
            ) as plan:
                self.producer.write(plan)
        except SendIncomplete as exc:
            exc.sent = [TaskHandle(message_id, self) for message_id in exc.sent]
            raise
        return [TaskHandle(message_id, self) for message_id in plan.ids]

    async def send_many_async(
        self, calls: Iterable[Any], *, delay: Duration | None = None
    ) -> list[TaskHandle]:
        """Like `send_many`, for asyncio code."""
        try:
            with tracing.planned_many(
                self.options.queue,
                self.producer.server,
                lambda creations: self._plan_many(calls, delay, creations),
            ) as plan:
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
