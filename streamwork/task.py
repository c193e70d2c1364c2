"""Task: a decorated function, and the producer side — send, send_async, send_with, send_many.

Owns the signature check (bad arguments fail at send time, not on a worker) and the
handles returned by sends. It builds envelopes and hands them to redis_ops; it never runs
a handler (the worker does) and never decides retries.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import msgpack
import redis.exceptions

from . import metrics, protocol, redis_ops
from .connection import MAX_BLOCK
from .errors import (
    BadArguments,
    ConfigurationError,
    DecodeError,
    ReplicationTimeout,
    ResultTimeout,
    SendIncomplete,
    StreamworkError,
    TaskFailed,
)
from .keys import QueueKeys
from .settings import AckMode, Backoff, Duration, to_seconds

if TYPE_CHECKING:
    from .app import App

DEFAULT_KEY_TTL = 86400.0
"""How long an idempotency key holds by default: one day."""

SEND_BATCH = 1000
"""How many sends `send_many` puts in one pipelined round trip."""


@dataclass(frozen=True)
class TaskOptions:
    """How a task's messages are queued, acknowledged and retried."""

    queue: str
    ack_mode: AckMode
    max_retries: int
    max_deliveries: int
    retry_on: tuple[type[BaseException], ...]
    backoff: Backoff
    timeout: float | None = None
    store_result: bool = False
    bind: bool = False


@dataclass(frozen=True)
class TaskHandle:
    """What a send returns: the message id, and its result when the task stores results."""

    id: str
    task: Task = field(repr=False)
    is_duplicate: bool = False
    """True when a send with an idempotency key found the key held: nothing was queued."""

    @property
    def _key(self) -> str:
        return self.task.keys.result(self.id)

    def _check(self) -> None:
        if not self.task.options.store_result:
            raise ConfigurationError(
                f"task {self.task.name!r} does not store results: declare it with store_result=True"
            )

    def result(self, timeout: float = 10.0) -> Any:
        """Wait up to `timeout` seconds for the return value; TaskFailed if it was dead-lettered."""
        self._check()
        app = self.task.app
        deadline = time.monotonic() + timeout
        with app.translate_errors():
            while True:  # blocks of at most MAX_BLOCK: each reply within the socket timeout
                block = _block_for(deadline)
                raw = redis_ops.wait_result(app.redis, self._key, block)
                if raw is not None or block < MAX_BLOCK:
                    break
        return self._decode(raw, timeout)

    async def result_async(self, timeout: float = 10.0) -> Any:
        """Like `result`, for asyncio code."""
        self._check()
        app = self.task.app
        deadline = time.monotonic() + timeout
        with app.translate_errors():
            while True:
                block = _block_for(deadline)
                raw = await redis_ops.wait_result(app.async_redis(), self._key, block)
                if raw is not None or block < MAX_BLOCK:
                    break
        return self._decode(raw, timeout)

    def _decode(self, raw: bytes | None, timeout: float) -> Any:
        if raw is None:
            raise ResultTimeout(
                f"no result for task {self.task.name} id {self.id} within {timeout}s — "
                "is a worker running for queue " + repr(self.task.options.queue) + "?"
            )
        try:
            outcome = msgpack.unpackb(raw, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise DecodeError(f"the stored result of {self.id} cannot be read: {exc}") from None
        if not isinstance(outcome, dict):
            raise DecodeError(f"the stored result of {self.id} is not a streamwork result")
        if outcome.get("ok"):
            return outcome.get("value")
        raise TaskFailed(outcome.get("error_type", "Error"), outcome.get("error", ""))


def _block_for(deadline: float) -> float:
    """How long the next blocking read may block: what is left, at most MAX_BLOCK, and never
    0 (which Redis reads as "forever")."""
    return min(MAX_BLOCK, max(0.001, round(deadline - time.monotonic(), 3)))


def due_ms(delay: Duration | None, eta: datetime | None) -> int | None:
    if delay is not None and eta is not None:
        raise ConfigurationError("give either delay or eta, not both")
    if eta is not None:
        if eta.tzinfo is None:
            raise ConfigurationError("eta must be a timezone-aware datetime (e.g. UTC)")
        return int(eta.astimezone(timezone.utc).timestamp() * 1000)
    if delay is None:
        return None
    seconds = to_seconds("delay", delay)
    if seconds == 0:
        return None
    return protocol.now_ms() + math.ceil(seconds * 1000)


class Task:
    """A function registered with `@app.task`; calling it runs it here, `send` queues it."""

    def __init__(self, app: App, fn: Callable[..., Any], name: str, options: TaskOptions) -> None:
        self.app = app
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
        self.keys: QueueKeys = app.keys(options.queue)
        self._shapes_that_fit: set[Any] = set()
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.options.queue}>"

    def handle(self, message_id: str) -> TaskHandle:
        """The handle of a message sent earlier (e.g. by another process), from its id."""
        return TaskHandle(message_id, self)

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise BadArguments unless `args` and `kwargs` fit the handler's signature."""
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
        due_ms: int | None = None,
    ) -> tuple[str, bytes]:
        """The id and encoded message of one call, after checking its arguments."""
        args = tuple(args)
        kwargs = kwargs or {}
        self.check_arguments(args, kwargs)
        message_id = protocol.new_id()
        body = protocol.encode(
            protocol.Envelope(
                id=message_id,
                task=self.name,
                args=args,
                kwargs=kwargs,
                headers=headers or {},
                enqueued_ms=due_ms or protocol.now_ms(),
            )
        )
        return message_id, protocol.check_size(
            body, self.app.max_message_bytes, f"a message of task {self.name!r}"
        )

    def send(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Queue one run with these arguments; returns at once with the message's handle."""
        return self.send_with(args=args, kwargs=kwargs)

    async def send_async(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Like `send`, for asyncio code."""
        return await self.send_with_async(args=args, kwargs=kwargs)

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
    ) -> TaskHandle:
        """Queue one run with options: `delay` (seconds or timedelta) or `eta`, and headers.

        With `key`, the run is queued at most once per key within `key_ttl` (default one
        day): a later send with the same key queues nothing and returns the handle of the
        message queued first. For payments and orders that must not be submitted twice.

        With `replicas`, it returns only once that many replicas have the message (Redis
        `WAIT`, up to `replica_timeout`); fewer raise ReplicationTimeout — the message is
        queued all the same, and a failover now may lose it.
        """
        due = due_ms(delay, eta)
        message_id, body = self.envelope(args, kwargs, headers, due)
        app = self.app
        started = time.perf_counter()
        with app.translate_errors():
            app.register_queue_sync(self.options.queue)
            if replicas:
                written = self._write_replicated(
                    message_id, body, due, key, key_ttl, replicas, replica_timeout
                )
            else:
                written = self._write(app.redis, app.scripts, message_id, body, due, key, key_ttl)
        metrics.sent(self.options.queue, 1, time.perf_counter() - started)
        return self._holder(written, message_id, key)

    def _write_replicated(
        self,
        message_id: str,
        body: bytes,
        due: int | None,
        key: str | None,
        key_ttl: Duration,
        replicas: int,
        replica_timeout: Duration,
    ) -> Any:
        """The write and a WAIT on one connection of the node that holds the queue."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ConfigurationError(f"replicas must be a whole number >= 0, got {replicas!r}")
        timeout_ms = int(to_seconds("replica_timeout", replica_timeout) * 1000)
        client = self.app.node_client(self.keys.stream)
        pipe = client.pipeline(transaction=False)
        self._write(pipe, redis_ops.Scripts(pipe), message_id, body, due, key, key_ttl)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        try:
            written, acknowledged = pipe.execute()
        except redis.exceptions.RedisError:
            self.app.refresh_nodes()  # a node failed or the slot moved: ask again next time
            raise
        if acknowledged < replicas:
            raise ReplicationTimeout(
                f"message {message_id} is queued, but only {acknowledged} of {replicas} "
                f"replica(s) acknowledged it within {timeout_ms} ms: a failover now could "
                "lose it"
            )
        return written

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
    ) -> TaskHandle:
        """Like `send_with`, for asyncio code."""
        due = due_ms(delay, eta)
        message_id, body = self.envelope(args, kwargs, headers, due)
        app = self.app
        started = time.perf_counter()
        with app.translate_errors():
            client = app.async_redis()
            await app.register_queue_async(self.options.queue, client)
            written = await self._write(
                client, app.async_scripts(), message_id, body, due, key, key_ttl
            )
        metrics.sent(self.options.queue, 1, time.perf_counter() - started)
        return self._holder(written, message_id, key)

    def _write(
        self,
        client: Any,
        scripts: redis_ops.Scripts,
        message_id: str,
        body: bytes,
        due: int | None,
        key: str | None,
        key_ttl: Duration,
    ) -> Any:
        if key is None:
            return redis_ops.add(client, self.keys, body, due)
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"key must be a non-empty string, got {key!r}")
        ttl_ms = int(to_seconds("key_ttl", key_ttl, allow_zero=False) * 1000)
        return scripts.enqueue_unique(self.keys, key, message_id, body, ttl_ms, due)

    def _holder(self, written: Any, message_id: str, key: str | None) -> TaskHandle:
        """The handle of the message holding `key` (this one unless it was a duplicate)."""
        if key is None:
            return TaskHandle(message_id, self)
        holder = written.decode() if isinstance(written, bytes) else str(written)
        return TaskHandle(holder, self, is_duplicate=holder != message_id)

    def send_many(
        self, calls: Iterable[Any], *, delay: Duration | timedelta | None = None
    ) -> list[TaskHandle]:
        """Queue one run per item: one command (one round trip) per 1000 sends.

        An item that is a tuple gives positional arguments, a dict gives keyword arguments,
        anything else is the one positional argument. Every item is checked before any is
        sent, so a bad item sends nothing. Each batch of 1000 is queued whole or not at all;
        if Redis fails after some batches were queued, SendIncomplete says which (`.sent`
        handles, `.index` of the first item not queued).
        """
        due = due_ms(delay, None)
        encoded = [self.envelope(*_call(item), due_ms=due) for item in calls]
        app = self.app
        started = time.perf_counter()
        with app.translate_errors():
            app.register_queue_sync(self.options.queue)

        def write(bodies: list[bytes]) -> None:
            if due is None:
                app.scripts.add_many(self.keys.stream, bodies)
            else:
                redis_ops.schedule_many(app.redis, self.keys.delayed, bodies, due)

        handles = [TaskHandle(message_id, self) for message_id, _ in encoded]
        write_batches(app, [body for _, body in encoded], write, handles, "message(s)")
        metrics.sent(self.options.queue, len(encoded), time.perf_counter() - started)
        return handles


def write_batches(
    app: App,
    bodies: list[bytes],
    write: Callable[[list[bytes]], Any],
    sent: list[Any],
    what: str,
) -> None:
    """Write `bodies` in batches of SEND_BATCH (each batch one atomic command).

    If a batch fails after earlier ones were written, raise SendIncomplete carrying what was
    queued (`sent[:index]`) and the index to resume from; if the first fails, nothing was
    queued and the Redis error itself is raised.
    """
    done = 0
    try:
        with app.translate_errors():
            for start in range(0, len(bodies), SEND_BATCH):
                write(bodies[start : start + SEND_BATCH])
                done = min(start + SEND_BATCH, len(bodies))
    except StreamworkError as exc:
        if done == 0:
            raise
        raise SendIncomplete(
            f"queued {done} of {len(bodies)} {what} (items 0-{done - 1}), then failed: "
            f"{exc} — items {done} on were not queued; resend them (items[{done}:])",
            sent[:done],
            done,
        ) from exc


def _call(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(item, tuple):
        return item, {}
    if isinstance(item, dict):
        return (), item
    return (item,), {}
