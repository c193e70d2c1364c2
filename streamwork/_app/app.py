"""App: configuration, the registry of tasks, subscribers and topics, and the user-facing
calls (declare, publish, purge).

An App is passed explicitly to everything that needs it: there is no default app and no
event loop is captured when it is built. Its Redis side (clients, scripts, error
translation) is a `Connection`, which connects lazily, on first use; sends are planned and
written by a `Producer`.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, overload

from .._base import protocol, tracing
from .._base.handler import BANDS, Defaults, HandlerArgs, HandlerOptions, check_count
from .._base.keys import (
    NAME,
    OrderKeys,
    QueueKeys,
    Source,
    TopicKeys,
    base_queue,
    check_events_name,
    check_name,
    check_queue,
    partition_name,
    partition_number,
    queue_source,
    topic_sources,
)
from .._base.settings import AckMode, Backoff, Duration, to_seconds
from .._lifecycle import events as events_module
from .._lifecycle.events import Event, Since
from .._redis import reads
from .._redis.connection import Connection
from .._schedules.schedules import (
    SCHEDULE_ARGS,
    Definition,
    Schedule,
    ScheduleArgs,
    Schedules,
    define,
    tick_body,
)
from .._send.producer import Producer, due_ms
from .._workflows.workflows import WorkflowHandle
from ..errors import AppNotFound, BadArguments, ConfigurationError, EncodeError, UnknownTask
from .task import Task, TaskHandle
from .topic import Retention, Subscriber, destination, event

if TYPE_CHECKING:
    from typing_extensions import Unpack


class PeriodicArgs(ScheduleArgs, HandlerArgs, total=False):
    """`@app.periodic`'s keyword arguments: the schedule's and the task's handler options."""


DEFAULT_RETENTION = Retention()

DEFAULT_QUEUE = "default"


class App:
    """A streamwork application: where its Redis is, and which tasks it has.

    `url` defaults to $STREAMWORK_REDIS_URL, then redis://localhost:6379/0. Every key the
    app writes starts with `namespace`, so several apps can share one Redis. The handler
    arguments (`ack_mode` ... `retry_on`) are defaults for the tasks and subscribers the app
    declares; a message over `max_message_bytes` encoded (default 64 MiB) is refused at send
    with EncodeError. A message's status (`handle.status()`) is kept for `status_ttl` after
    its last change (default one day); `track_status=False` turns status, cancellation and
    progress off, for throughput. `events=True` (or a list of queues) records each queue's
    lifecycle events in a stream capped at about `events_max_len` entries (`app.events`).
    A workflow's record (its tree, states and results) is kept for `workflow_ttl` after it
    ends (default one day), and never expires while it runs.
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
        status_ttl: Duration = 86400.0,
        track_status: bool = True,
        events: bool | Iterable[str] = False,
        events_max_len: int = 10_000,
        workflow_ttl: Duration = 86400.0,
    ) -> None:
        self.connection = Connection(url)
        """The Redis side: clients, scripts, error translation (see connection.py)."""
        self.namespace = check_name("namespace", namespace)
        self.defaults = Defaults(
            ack_mode, max_retries, max_deliveries, backoff or Backoff(), retry_on
        )
        check_count("max_message_bytes", max_message_bytes, 1)
        if max_message_bytes > protocol.REDIS_MAX_BULK:
            raise ConfigurationError(
                f"max_message_bytes must be at most {protocol.REDIS_MAX_BULK} (Redis's limit "
                f"on one value), got {max_message_bytes}"
            )
        self.status_ttl_ms = int(to_seconds("status_ttl", status_ttl, allow_zero=False) * 1000)
        """How long a message's status is kept after its last change (default one day)."""
        self.track_status = bool(track_status)
        """Whether messages get a status hash (status, cancel, progress); off trades them for
        throughput (see benchmarks/README.md)."""
        check_count("events_max_len", events_max_len, 1)
        self.events_max_len = events_max_len
        self._events: bool | frozenset[str] = (
            events if isinstance(events, bool) else frozenset(map(check_events_name, events))
        )
        self.workflow_ttl_ms = int(
            to_seconds("workflow_ttl", workflow_ttl, allow_zero=False) * 1000
        )
        """How long a workflow's record is kept after it ends (default one day)."""
        self._producer = Producer(
            self.connection,
            max_message_bytes,
            self.status_ttl_ms,
            self.track_status,
            self.events_cap,
            self.workflow_ttl_ms,
        )
        App.instances.add(self)
        self.tasks: dict[str, Task] = {}
        self.subscribers: dict[tuple[str, str], Subscriber] = {}
        self.retention: dict[str, Retention] = {}
        self.declared_schedules: dict[str, Definition] = {}
        self._partitions: dict[str, int] = {}
        """Queues declared with partitions (`app.queue`, `@app.task(partitions=...)`)."""
        self._paused_at_start: dict[str, bool] = {}
        """Schedules declared in code (`schedule`, `@periodic`): workers write them at start."""

    instances: ClassVar[weakref.WeakSet[App]] = weakref.WeakSet()
    """Every App alive in this process (the pytest plugin re-points them at memory://)."""

    def __repr__(self) -> str:
        return f"<App {self.connection!r} namespace={self.namespace!r}>"

    def reconnect(self, target: str | Connection | None) -> Connection:
        """Point the app at another Redis (a URL, a Connection, or None for the default):
        sends and workers made from now on use it. Returns the connection it used before
        (not closed), so a test can put it back."""
        previous = self.connection
        self.connection = target if isinstance(target, Connection) else Connection(target)
        self._producer.connection = self.connection
        return previous

    def events_cap(self, queue: str) -> int:
        """The cap of the event stream of `queue` (or of a subscriber group, "topic/group"),
        or 0 when the app records no events for it."""
        if "/" not in queue:
            if not self.track_status:
                return 0
            queue = base_queue(queue)  # a partition records its queue's events
        if self._events is True or (self._events is not False and queue in self._events):
            return self.events_max_len
        return 0

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def max_message_bytes(self) -> int:
        return self._producer.max_message_bytes

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
        store_result: bool = False,
        bind: bool = False,
        partitions: int | None = None,
        **options: Unpack[HandlerArgs],
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        queue: str = DEFAULT_QUEUE,
        name: str | None = None,
        store_result: bool = False,
        bind: bool = False,
        partitions: int | None = None,
        **options: Unpack[HandlerArgs],
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Declare a task: `@app.task` or `@app.task(queue=..., ...)` on a sync or async function.

        `options` are the handler options (handler.HandlerArgs: `ack_mode`, `max_retries`,
        `max_deliveries`, `retry_on`, `backoff`, `timeout`); the App's defaults fill in the
        rest. `bind=True` passes the `Message` as the first argument (needed to ack by hand
        with `ack_mode="manual"`). `timeout` bounds one run; past it the run counts as
        failed. A message delivered more than `max_deliveries` times without an outcome (its
        worker died each time) is dead-lettered instead of run again. `partitions=N` spreads
        the task's queue over N streams (see `queue`).
        """

        def declare(function: Callable[..., Any]) -> Task:
            resolved = HandlerOptions.resolve(
                self.defaults,
                check_name("queue", queue),
                options,
                store_result=store_result,
                bind=bind,
            )
            if resolved.ack_mode == "manual" and not bind and resolved.batch is None:
                raise ConfigurationError(
                    "ack_mode='manual' needs bind=True, so the handler receives the "
                    "Message it must ack or nack"
                )
            if name is None and not NAME.fullmatch(getattr(function, "__name__", "")):
                raise ConfigurationError(
                    f"{function!r} has no name a task can have: give it one with name=..."
                )
            task_name = check_name("task", function.__name__ if name is None else name)
            if task_name in self.tasks:
                raise ConfigurationError(
                    f"task name {task_name!r} is already taken by "
                    f"{self.tasks[task_name].fn.__module__}; give one of them name=..."
                )
            declared = Task(
                self._producer,
                self.namespace,
                function,
                task_name,
                resolved,
                self.has_bands,
                self.partitions,
            )
            self._check_partitioned(resolved.queue, partitions, declared)
            self.tasks[task_name] = declared
            if partitions is not None:
                self._partitions[resolved.queue] = partitions
            return declared

        if fn is not None:
            return declare(fn)
        return declare

    def handle(self, task: Task | str, id: str) -> TaskHandle:
        """The handle of a message sent earlier (by this process or another: a web request
        that got the id back), to read its status, cancel it or wait for its result."""
        if isinstance(task, str):
            if task not in self.tasks:
                raise UnknownTask(f"the app has no task {task!r}")
            task = self.tasks[task]
        if not isinstance(id, str) or not protocol.ID.fullmatch(id):
            raise ConfigurationError(f"invalid message id {id!r}: {protocol.ID_RULE}")
        return task.handle(id)

    def workflow(self, id: str) -> WorkflowHandle:
        """The handle of a workflow sent earlier (e.g. by another process), from its id."""
        if not isinstance(id, str) or not protocol.ID.fullmatch(id):
            raise ConfigurationError(f"invalid workflow id {id!r}: {protocol.ID_RULE}")
        return WorkflowHandle(id, self._producer, self.namespace)

    def events(
        self, queue: str | None = None, *, since: Since = "$", count: int = 100
    ) -> AsyncIterator[Event]:
        """The lifecycle events of `queue` (or of every queue that records events) after
        `since` ("$": new ones only; "0": the oldest kept; an event id; a datetime; or
        {queue: id}), then each new one as it happens: `async for event in app.events()`.
        Resumable: pass the last event's id back as `since`."""
        return events_module.follow(self, queue, since, count)

    def read_events(
        self,
        queue: str | None = None,
        *,
        since: Since = "0",
        count: int = 100,
        block: float | None = None,
    ) -> list[Event]:
        """The sync variant of `events`: up to `count` events per queue after `since`, in
        one look (waiting up to `block` seconds when there are none)."""
        return events_module.read(self, queue, since, count, block)

    # -- schedules ------------------------------------------------------------------------

    def _define(self, id: str, task: Task | str, rule: ScheduleArgs) -> Definition:
        if isinstance(task, str):
            if task not in self.tasks:
                raise ConfigurationError(f"schedule {id!r}: the app has no task {task!r}")
            task = self.tasks[task]
        elif not isinstance(task, Task) or self.tasks.get(task.name) is not task:
            raise ConfigurationError(f"schedule {id!r}: {task!r} is not a task of this app")
        try:
            definition = define(id, task.name, task.home_queue, task.check_arguments, rule)
            sample = tick_body(definition, protocol.new_id(), 0, 0)
            protocol.check_size(sample, self.max_message_bytes, "its message")
            return definition
        except (BadArguments, EncodeError) as exc:
            raise ConfigurationError(f"schedule {id!r}: {exc}") from None

    def schedule(
        self, id: str, task: Task | str, *, paused: bool = False, **rule: Unpack[ScheduleArgs]
    ) -> Definition:
        """Declare a schedule: run `task` on a `cron` expression (5 fields, or 6 with seconds
        first, in time zone `tz`) or `every` N seconds (or a timedelta); the arguments are
        `schedules.ScheduleArgs`.

        Declaring writes nothing: workers write the app's declared schedules when they
        start (and remove the ones it declared before and no longer does). `catch_up` says
        what a tick missed while no worker ran becomes: "latest" (one run), "none", "all"
        (up to 100); with `overlap=False` a tick is skipped while the previous run is not
        over. `paused` is the state a new schedule starts in.
        """
        definition = self._define(id, task, rule)
        if id in self.declared_schedules:
            raise ConfigurationError(f"schedule {id!r} is declared twice")
        self.declared_schedules[id] = definition
        self._paused_at_start[id] = paused
        return definition

    def periodic(
        self,
        *,
        paused: bool = False,
        queue: str = DEFAULT_QUEUE,
        name: str | None = None,
        bind: bool = False,
        **options: Unpack[PeriodicArgs],
    ) -> Callable[[Callable[..., Any]], Task]:
        """Declare a task and its schedule (the schedule's id is the task's name):
        `@app.periodic(cron="*/5 * * * *", queue="maintenance")`. Takes the schedule's
        arguments (see `schedule`) and the task's (see `task`)."""
        rule: Any = {k: v for k, v in options.items() if k in SCHEDULE_ARGS}
        handler: Any = {k: v for k, v in options.items() if k not in SCHEDULE_ARGS}

        def declare(function: Callable[..., Any]) -> Task:
            declared = self.task(queue=queue, name=name, bind=bind, **handler)(function)
            try:
                self.schedule(declared.name, declared, paused=paused, **rule)
            except ConfigurationError:
                del self.tasks[declared.name]  # a refused periodic declares nothing
                raise
            return declared

        return declare

    def add_schedule(
        self, id: str, task: Task | str, *, paused: bool = False, **rule: Unpack[ScheduleArgs]
    ) -> Schedule:
        """Write a schedule now (created, or its definition updated): a schedule added at
        runtime lasts until `unschedule`, whatever code workers run. Same arguments as
        `schedule`; returns it as stored."""
        store = self._schedules()
        store.put(self._define(id, task, rule), origin="runtime", paused=paused)
        return store.get(id)

    def _schedules(self) -> Schedules:
        return Schedules(self.connection, self.namespace, self.status_ttl_ms, self.events_cap)

    def schedules(self) -> list[Schedule]:
        """Every schedule stored in the app's namespace (declared ones once a worker wrote
        them), by id."""
        return self._schedules().all()

    def get_schedule(self, id: str) -> Schedule:
        """One stored schedule; UnknownSchedule if there is none with that id."""
        return self._schedules().get(id)

    def unschedule(self, id: str) -> None:
        """Remove a schedule (UnknownSchedule if there is none). One the app declares in
        code comes back when a worker starts with code that still declares it."""
        self._schedules().remove(id)

    def pause_schedule(self, id: str) -> None:
        """Stop enqueuing ticks of `id` until `resume_schedule`."""
        self._schedules().pause(id)

    def resume_schedule(self, id: str) -> None:
        """Enqueue ticks of `id` again from its next tick (ticks missed meanwhile never run)."""
        self._schedules().resume(id)

    def trigger_schedule(self, id: str) -> str:
        """Enqueue one run of `id` now (its next tick is unchanged); returns the message id."""
        return self._schedules().trigger(id)

    # -- topics --------------------------------------------------------------------------

    def subscriber(
        self,
        topic: str,
        *,
        group: str,
        start: str = "new",
        **options: Unpack[HandlerArgs],
    ) -> Callable[[Callable[..., Any]], Subscriber]:
        """Declare a subscriber: `@app.subscriber("orders.created", group="billing")`.

        Its function takes one `Message` (`message.payload`, `.headers`, `.ack()` in manual
        mode). Every group receives every event; inside a group each event goes to one
        consumer. A group created after events were published starts with new events, or
        with `start="beginning"` from the oldest event the topic still retains. `options`
        are the handler options, as for `task`.
        """

        def declare(function: Callable[..., Any]) -> Subscriber:
            key = (check_name("topic", topic), check_name("group", group))
            if key in self.subscribers:
                raise ConfigurationError(
                    f"topic {topic!r} already has a subscriber group {group!r}"
                )
            resolved = HandlerOptions.resolve(self.defaults, topic, options, bind=True)
            declared = Subscriber(
                self.namespace,
                function,
                topic,
                group,
                resolved,
                start,
                self.events_cap(f"{topic}/{group}"),
            )
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
        age = None if max_age is None else to_seconds("max_age", max_age, allow_zero=False)
        retention = Retention(max_len=max_len, max_age=age, drop_unread=drop_unread)
        self.retention[check_name("topic", name)] = retention
        return retention

    def retention_of(self, topic: str) -> Retention:
        return self.retention.get(topic, DEFAULT_RETENTION)

    def subscriber_groups(self) -> list[tuple[str, str]]:
        """(topic, group) of each subscriber, in declaration order."""
        return list(self.subscribers)

    def topics(self) -> list[str]:
        """The topics this app's subscribers read, in declaration order."""
        return list(dict.fromkeys(topic for topic, _ in self.subscribers))

    def _plan_publish(
        self,
        topic: str,
        payloads: list[Any],
        headers: dict[str, Any] | None,
        due: int | None,
        is_many: bool,
    ) -> Any:
        topic = check_name("topic", topic)
        found = tracing.context()  # once for the batch, not per event
        envelopes = (event(topic, payload, headers, due, found) for payload in payloads)
        what = f"an event of topic {topic!r}"
        target = destination(self.namespace, topic)
        return self._producer.plan(target, envelopes, what, due=due, is_many=is_many)

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
        plan = self._plan_publish(topic, [payload], headers, due_ms(delay, eta), False)
        return self._producer.write(plan)

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
        plan = self._plan_publish(topic, [payload], headers, due_ms(delay, eta), False)
        return await self._producer.write_async(plan)

    def publish_many(
        self, topic: str, payloads: Iterable[Any], *, headers: dict[str, Any] | None = None
    ) -> list[str]:
        """Publish one event per payload: one command (one round trip) per 1000 events.

        If Redis fails after some batches were published, SendIncomplete says which
        (`.sent` event ids, `.index` of the first payload not published).
        """
        plan = self._plan_publish(topic, list(payloads), headers, None, True)
        self._producer.write(plan)
        return list(plan.ids)

    async def publish_many_async(
        self, topic: str, payloads: Iterable[Any], *, headers: dict[str, Any] | None = None
    ) -> list[str]:
        """Like `publish_many`, for asyncio code."""
        plan = self._plan_publish(topic, list(payloads), headers, None, True)
        await self._producer.write_async(plan)
        return list(plan.ids)

    def topic_keys(self, topic: str) -> TopicKeys:
        return TopicKeys(self.namespace, check_name("topic", topic))

    # -- queues --------------------------------------------------------------------------

    def queue(self, name: str, *, partitions: int) -> None:
        """Declare how queue `name` is laid out: `partitions=N` spreads it over N streams,
        each under a hash tag of its own (`NAME~0` ... `NAME~N-1`), so that on Redis Cluster
        one busy queue uses every node. Sends go round-robin over the partitions, or, with
        `send_with(partition_key=...)`, to the key's partition, where the messages of one
        key run one at a time in send order. Workers read every partition; stats, metrics
        and dead letters show the queue as one, with each partition's detail. Declare it
        before workers start and keep N: a message waits in the partition it was sent to."""
        queue = check_name("queue", name)
        self._check_partitioned(queue, partitions)
        self._partitions[queue] = partitions

    def partitions(self, queue: str) -> int:
        """How many partitions `queue` has (1: a plain queue, one stream)."""
        return self._partitions.get(queue, 1)

    def _check_partitioned(
        self, queue: str, partitions: int | None, declaring: Task | None = None
    ) -> None:
        """Refuse a partition count that is not a whole number 1-1024, one that differs
        from the queue's declared count, and a partitioned queue's tasks (those declared,
        and the one `declaring`) with priority bands, rate or concurrency limits or fair_by
        (their state is one per queue)."""
        if partitions is not None:
            if isinstance(partitions, bool) or not isinstance(partitions, int):
                raise ConfigurationError(f"partitions must be a whole number, got {partitions!r}")
            if not 1 <= partitions <= 1024:
                raise ConfigurationError(f"partitions must be 1-1024, got {partitions}")
            known = self._partitions.get(queue)
            if known is not None and known != partitions:
                raise ConfigurationError(
                    f"queue {queue!r} has {known} partitions already; got partitions={partitions}"
                )
        count = partitions or self._partitions.get(queue, 1)
        if count == 1:
            return
        tasks = [t for t in self.tasks.values() if t.options.queue == queue]
        for task in [*tasks, declaring] if declaring is not None else tasks:
            options = task.options
            for option, value in (
                ("priority", options.priority),
                ("rate_limit", options.rate),
                ("concurrency_limit", options.concurrency_limit),
                ("fair_by", options.fair),
            ):
                if value is not None:
                    raise ConfigurationError(
                        f"task {task.name!r}: {option} is not available on a partitioned "
                        f"queue ({queue!r} has {count} partitions): its state is one per queue"
                    )

    def queues(self) -> list[str]:
        """The queues this app's tasks are declared on, in declaration order."""
        return list(dict.fromkeys(t.options.queue for t in self.tasks.values()))

    def held_lists(self, queue: str) -> list[str]:
        """The lists where messages of `queue` wait for a concurrency slot (one per task
        declared with concurrency_limit)."""
        source = self.queue_source(queue)
        return [
            source.limit("held", task.name)
            for task in self.tasks.values()
            if task.options.queue == queue and task.options.concurrency_limit is not None
        ]

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.namespace, check_queue(queue))

    def fair_prefixes(self, queue: str) -> list[tuple[str, str]]:
        """(task, key prefix) of each task of `queue` declared with fair_by."""
        return [
            (task.name, task.keys.fair(task.name))
            for task in self.tasks.values()
            if task.options.queue == queue and task.options.fair is not None
        ]

    def has_bands(self, queue: str) -> bool:
        """Whether `queue` has priority bands: a task declared on it says `priority=`."""
        return any(
            t.options.queue == queue and t.options.priority is not None for t in self.tasks.values()
        )

    def queue_sources(self, queue: str) -> list[Source]:
        """How workers read `queue`: one source, one per priority band (high first), or
        one per partition."""
        partitions = self.partitions(queue)
        if partitions > 1:
            return [self.queue_source(partition_name(queue, k)) for k in range(partitions)]
        if not self.has_bands(queue):
            return [self.queue_source(queue)]
        return [self.queue_source(queue, band) for band in BANDS]

    def queue_source(self, queue: str, band: str | None = None) -> Source:
        """How workers read `queue` (its stream, group and outcome keys), or one band of it;
        `queue` may be a partition's internal name (`orders~3`)."""
        check_queue(queue)
        return queue_source(
            self.namespace,
            queue,
            tracks_status=self.track_status,
            events_max_len=self.events_cap(queue),
            band=band,
            partition=partition_number(queue),
        )

    def topic_source(self, topic: str, group: str) -> Source:
        """How subscriber group `group` reads `topic` (the topic stream's source)."""
        return topic_sources(
            self.namespace, check_name("topic", topic), check_name("group", group)
        )[0]

    def purge(self, queue: str, *, delayed: bool = True) -> tuple[int, int]:
        """Delete `queue`'s messages that no worker has received yet (and, with `delayed`,
        its delayed messages and retries); returns (waiting, delayed) counts deleted.

        Messages being run and dead letters are left alone. The order of its partition
        keys starts afresh: messages waiting for their turn are deleted, and those left
        (running, or delayed when `delayed` is False) run without waiting for each other.
        """
        waiting = scheduled = 0
        with self.connection.translate_errors():
            for source in self.queue_sources(queue):
                is_first = True
                ordered = reads.members(
                    self.connection.redis, OrderKeys.of(source.order_prefix, "").ordered
                )
                while True:
                    deleted, dropped = self.connection.scripts.purge(
                        source,
                        1000,
                        delayed and is_first,
                        [key.decode() for key in ordered] if is_first else (),
                    )
                    is_first = False
                    waiting += deleted
                    scheduled += dropped
                    if deleted == 0:
                        break
        return waiting, scheduled

    def ping(self) -> None:
        """Check that Redis answers; raise ConnectionFailed with what to do if not."""
        self.connection.ping()

    def close(self) -> None:
        """Close the synchronous client (asyncio clients close with `aclose`)."""
        self.connection.close()

    async def aclose(self) -> None:
        """Close this event loop's asyncio client."""
        await self.connection.aclose()


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
    except Exception as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and module_name.startswith(missing):  # the module itself, not its import
            raise AppNotFound(
                f"cannot import module {module_name!r}: no such module "
                "(run from the directory that holds it, or set PYTHONPATH)"
            ) from None
        raise AppNotFound(f"could not import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise AppNotFound(
            f"{module_name!r} has no streamwork App named {attr!r}"
            + (f" (it is a {type(app).__name__})" if app is not None else "")
        )
    return app
