"""App: configuration, the registry of tasks, and the Redis connections.

An App is passed explicitly to everything that needs it: there is no default app and no
event loop is captured when it is built. Its clients connect lazily, on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, overload

import redis
import redis.asyncio
import redis.cluster

from . import connection, protocol, redis_ops
from . import topic as publishing
from .errors import AppNotFound, ConfigurationError
from .keys import (
    QueueKeys,
    Source,
    TopicKeys,
    check_name,
    queue_registry,
    queue_source,
    topic_registry,
    topic_sources,
)
from .settings import AckMode, Backoff, Duration, check_ack_mode, to_seconds
from .task import Task, TaskOptions, due_ms
from .topic import Retention, Subscriber

DEFAULT_RETENTION = Retention()

DEFAULT_QUEUE = "default"


class App:
    """A streamwork application: where its Redis is, and which tasks it has.

    `url` defaults to $STREAMWORK_REDIS_URL, then redis://localhost:6379/0. Every key the
    app writes starts with `namespace`, so several apps can share one Redis. The other
    arguments are defaults for the tasks the app declares; a message over
    `max_message_bytes` encoded (default 64 MiB) is refused at send with EncodeError.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "sw",
        ack_mode: AckMode = "late",
        max_retries: int = 3,
        max_deliveries: int = 5,
        backoff: Backoff | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        max_message_bytes: int = protocol.MAX_MESSAGE_BYTES,
    ) -> None:
        self.url = connection.resolve_url(url)
        self.namespace = check_name("namespace", namespace)
        self.ack_mode = check_ack_mode(ack_mode)
        self.max_retries = _check_count("max_retries", max_retries, 0)
        self.max_deliveries = _check_count("max_deliveries", max_deliveries, 1)
        self.backoff = backoff or Backoff()
        self.retry_on = retry_on
        self.max_message_bytes = _check_count("max_message_bytes", max_message_bytes, 1)
        if max_message_bytes > protocol.REDIS_MAX_BULK:
            raise ConfigurationError(
                f"max_message_bytes must be at most {protocol.REDIS_MAX_BULK} (Redis's limit "
                f"on one value), got {max_message_bytes}"
            )
        self.tasks: dict[str, Task] = {}
        self.subscribers: dict[tuple[str, str], Subscriber] = {}
        self.retention: dict[str, Retention] = {}
        self._redis: redis.Redis | None = None
        self._scripts: redis_ops.Scripts | None = None
        self._async_clients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}
        self._async_scripts: dict[asyncio.AbstractEventLoop, redis_ops.Scripts] = {}
        self._registered: set[Any] = set()

    def __repr__(self) -> str:
        return f"<App {connection.redact(self.url)} namespace={self.namespace!r}>"

    # -- tasks ---------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        queue: str = DEFAULT_QUEUE,
        name: str | None = None,
        ack_mode: AckMode | None = None,
        max_retries: int | None = None,
        max_deliveries: int | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        backoff: Backoff | None = None,
        timeout: Duration | None = None,
        store_result: bool = False,
        bind: bool = False,
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        queue: str = DEFAULT_QUEUE,
        name: str | None = None,
        ack_mode: AckMode | None = None,
        max_retries: int | None = None,
        max_deliveries: int | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        backoff: Backoff | None = None,
        timeout: Duration | None = None,
        store_result: bool = False,
        bind: bool = False,
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Declare a task: `@app.task` or `@app.task(queue=..., ...)` on a sync or async function.

        `bind=True` passes the `Message` as the first argument (needed to ack by hand with
        `ack_mode="manual"`). `timeout` bounds one run; past it the run counts as failed.
        A message delivered more than `max_deliveries` times without an outcome (its
        worker died each time) is dead-lettered instead of run again.
        """

        def declare(function: Callable[..., Any]) -> Task:
            mode = check_ack_mode(ack_mode or self.ack_mode)
            if mode == "manual" and not bind:
                raise ConfigurationError(
                    "ack_mode='manual' needs bind=True, so the handler receives the "
                    "Message it must ack or nack"
                )
            options = self._options(
                queue=check_name("queue", queue),
                ack_mode=mode,
                max_retries=max_retries,
                max_deliveries=max_deliveries,
                retry_on=retry_on,
                backoff=backoff,
                timeout=timeout,
                store_result=store_result,
                bind=bind,
            )
            task_name = check_name("task", function.__name__ if name is None else name)
            if task_name in self.tasks:
                raise ConfigurationError(
                    f"task name {task_name!r} is already taken by "
                    f"{self.tasks[task_name].fn.__module__}; give one of them name=..."
                )
            declared = Task(self, function, task_name, options)
            self.tasks[task_name] = declared
            return declared

        if fn is not None:
            return declare(fn)
        return declare

    def _options(
        self,
        *,
        queue: str,
        ack_mode: AckMode,
        max_retries: int | None,
        max_deliveries: int | None,
        retry_on: tuple[type[BaseException], ...] | None,
        backoff: Backoff | None,
        timeout: Duration | None,
        store_result: bool = False,
        bind: bool = False,
    ) -> TaskOptions:
        """A handler's options: the given ones, checked, else the app's defaults."""
        return TaskOptions(
            queue=queue,
            ack_mode=ack_mode,
            max_retries=self.max_retries
            if max_retries is None
            else _check_count("max_retries", max_retries, 0),
            max_deliveries=self.max_deliveries
            if max_deliveries is None
            else _check_count("max_deliveries", max_deliveries, 1),
            retry_on=self.retry_on if retry_on is None else tuple(retry_on),
            backoff=backoff or self.backoff,
            timeout=None if timeout is None else to_seconds("timeout", timeout, allow_zero=False),
            store_result=store_result,
            bind=bind,
        )

    # -- topics --------------------------------------------------------------------------

    def subscriber(
        self,
        topic: str,
        *,
        group: str,
        ack_mode: AckMode | None = None,
        max_retries: int | None = None,
        max_deliveries: int | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        backoff: Backoff | None = None,
        timeout: Duration | None = None,
        start: str = "new",
    ) -> Callable[[Callable[..., Any]], Subscriber]:
        """Declare a subscriber: `@app.subscriber("orders.created", group="billing")`.

        Its function takes one `Message` (`message.payload`, `.headers`, `.ack()` in manual
        mode). Every group receives every event; inside a group each event goes to one
        consumer. A group created after events were published starts with new events, or
        with `start="beginning"` from the oldest event the topic still retains.
        """

        def declare(function: Callable[..., Any]) -> Subscriber:
            key = (check_name("topic", topic), check_name("group", group))
            if key in self.subscribers:
                raise ConfigurationError(
                    f"topic {topic!r} already has a subscriber group {group!r}"
                )
            options = self._options(
                queue=topic,
                ack_mode=check_ack_mode(ack_mode or self.ack_mode),
                max_retries=max_retries,
                max_deliveries=max_deliveries,
                retry_on=retry_on,
                backoff=backoff,
                timeout=timeout,
                bind=True,
            )
            declared = Subscriber(self, function, topic, group, options, start)
            self.subscribers[key] = declared
            return declared

        return declare

    def topic(
        self,
        name: str,
        *,
        max_len: int | None = None,
        max_age: Duration | None = 86400.0,
        drop_unread: bool = False,
    ) -> Retention:
        """Set how long topic `name` keeps events (default: one day, never unread ones)."""
        retention = Retention(max_len=max_len, max_age=max_age, drop_unread=drop_unread)
        self.retention[check_name("topic", name)] = retention
        return retention

    def retention_of(self, topic: str) -> Retention:
        return self.retention.get(topic, DEFAULT_RETENTION)

    def topics(self) -> list[str]:
        """The topics this app's subscribers read, in declaration order."""
        return list(dict.fromkeys(topic for topic, _ in self.subscribers))

    def publish(
        self,
        topic: str,
        payload: Any,
        *,
        headers: dict[str, Any] | None = None,
        delay: Duration | None = None,
        eta: datetime | None = None,
    ) -> str:
        """Publish one event to `topic` (every subscriber group gets it); returns its id.

        With `delay` or `eta` the event is published when due (workers serving the topic
        move it), and then reaches every group.
        """
        due = due_ms(delay, eta)
        return publishing.publish(self, check_name("topic", topic), payload, headers, due)

    async def publish_async(
        self,
        topic: str,
        payload: Any,
        *,
        headers: dict[str, Any] | None = None,
        delay: Duration | None = None,
        eta: datetime | None = None,
    ) -> str:
        """Like `publish`, for asyncio code."""
        due = due_ms(delay, eta)
        return await publishing.publish_async(
            self, check_name("topic", topic), payload, headers, due
        )

    def publish_many(
        self, topic: str, payloads: Iterable[Any], *, headers: dict[str, Any] | None = None
    ) -> list[str]:
        """Publish one event per payload, pipelined: one round trip per 1000 events."""
        return publishing.publish_many(self, check_name("topic", topic), payloads, headers)

    def topic_keys(self, topic: str) -> TopicKeys:
        return TopicKeys(self.namespace, check_name("topic", topic))

    # -- queues --------------------------------------------------------------------------

    def queues(self) -> list[str]:
        """The queues this app's tasks are declared on, in declaration order."""
        return list(dict.fromkeys(t.options.queue for t in self.tasks.values()))

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.namespace, check_name("queue", queue))

    def queue_source(self, queue: str) -> Source:
        """How workers read `queue` (its stream, group and outcome keys)."""
        return queue_source(self.namespace, check_name("queue", queue))

    def topic_source(self, topic: str, group: str) -> Source:
        """How subscriber group `group` reads `topic` (the topic stream's source)."""
        return topic_sources(
            self.namespace, check_name("topic", topic), check_name("group", group)
        )[0]

    # -- Redis ---------------------------------------------------------------------------

    @property
    def redis(self) -> redis.Redis:
        """The synchronous client (created on first use)."""
        if self._redis is None:
            self._redis = connection.sync_client(self.url)
        return self._redis

    def node_client(self, key: str) -> redis.Redis:
        """A plain client of the node that holds `key` (the client itself off a cluster)."""
        client = self.redis
        if isinstance(client, redis.cluster.RedisCluster):
            return client.get_redis_connection(client.get_node_from_key(key))
        return client

    def refresh_nodes(self) -> None:
        """After a node failed under a `node_client`: learn the cluster's slots again (the
        cluster client does this itself for the commands it sends)."""
        client = self.redis
        if isinstance(client, redis.cluster.RedisCluster):
            with contextlib.suppress(redis.exceptions.RedisError):
                client.nodes_manager.initialize()

    @property
    def scripts(self) -> redis_ops.Scripts:
        """The Lua scripts, on the synchronous client."""
        if self._scripts is None:
            self._scripts = redis_ops.Scripts(self.redis)
        return self._scripts

    def async_redis(self) -> redis.asyncio.Redis:
        """The asyncio client of the running event loop (one per loop, created on first use)."""
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            for old in [old for old in self._async_clients if old.is_closed()]:
                del self._async_clients[old]
                self._async_scripts.pop(old, None)
            client = self._async_clients[loop] = connection.async_client(self.url)
            self._async_scripts[loop] = redis_ops.Scripts(client)
        return client

    def async_scripts(self) -> redis_ops.Scripts:
        """The Lua scripts, on the running event loop's asyncio client."""
        self.async_redis()
        return self._async_scripts[asyncio.get_running_loop()]

    def translate_errors(self) -> contextlib.AbstractContextManager[None]:
        """A block in which Redis connection errors become ConnectionFailed (URL redacted)."""
        return connection.translate_errors(self.url)

    def register_queue_sync(self, queue: str) -> None:
        if queue not in self._registered:
            redis_ops.register(self.redis, queue_registry(self.namespace), queue)
            self._registered.add(queue)

    async def register_queue_async(self, queue: str, client: redis.asyncio.Redis) -> None:
        if queue not in self._registered:
            await redis_ops.register(client, queue_registry(self.namespace), queue)
            self._registered.add(queue)

    def register_topic_sync(self, topic: str) -> None:
        if ("topic", topic) not in self._registered:
            redis_ops.register(self.redis, topic_registry(self.namespace), topic)
            self._registered.add(("topic", topic))

    async def register_topic_async(self, topic: str, client: redis.asyncio.Redis) -> None:
        if ("topic", topic) not in self._registered:
            await redis_ops.register(client, topic_registry(self.namespace), topic)
            self._registered.add(("topic", topic))

    def purge(self, queue: str, *, delayed: bool = True) -> tuple[int, int]:
        """Delete `queue`'s messages that no worker has received yet (and, with `delayed`,
        its delayed messages and retries); returns (waiting, delayed) counts deleted.

        Messages being run and dead letters are left alone.
        """
        source = self.queue_source(queue)
        waiting = scheduled = 0
        is_first = True
        with self.translate_errors():
            while True:
                deleted, dropped = self.scripts.purge(source, 1000, delayed and is_first)
                is_first = False
                waiting += deleted
                scheduled += dropped
                if deleted == 0:
                    return waiting, scheduled

    def ping(self) -> None:
        """Check that Redis answers; raise ConnectionFailed with what to do if not."""
        with self.translate_errors():
            self.redis.ping()

    def close(self) -> None:
        """Close the synchronous client (asyncio clients close with `aclose`)."""
        if self._redis is not None:
            self._redis.close()
            self._redis = None
            self._scripts = None

    async def aclose(self) -> None:
        """Close this event loop's asyncio client."""
        self._async_scripts.pop(asyncio.get_running_loop(), None)
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


def _check_count(name: str, value: int, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(f"{name} must be a whole number >= {least}, got {value!r}")
    return value


_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)


def load_app(spec: str) -> App:
    """The App named by `MODULE:APP` (the module imported with the current directory first).

    Every way this can fail is an AppNotFound with one line saying why; when importing the
    module raised, that error is the `__cause__` (its traceback shows the user's code).
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppNotFound(f"{spec!r} is not MODULE:APP (e.g. myproject.tasks:app)")
    if module_name.endswith(".py"):
        raise AppNotFound(
            f"{spec!r} is not MODULE:APP: {module_name!r} is a file name, not a module name "
            f"(not a file path) — try {module_name[:-3].replace('/', '.')}:{attr}"
        )
    if not _MODULE.fullmatch(module_name):
        raise AppNotFound(
            f"{spec!r} is not MODULE:APP: {module_name!r} is not a module name — give a "
            "dotted module name like myproject.tasks (not a file path), and run from the "
            "directory that holds it"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppNotFound(
                f"cannot import module {module_name!r}: no such module "
                "(run from the directory that holds it, or set PYTHONPATH)"
            ) from None
        raise AppNotFound(f"could not import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise AppNotFound(f"could not import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise AppNotFound(
            f"{module_name!r} has no streamwork App named {attr!r}"
            + (f" (it is a {type(app).__name__})" if app is not None else "")
        )
    return app
