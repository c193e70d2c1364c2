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
from typing import TYPE_CHECKING, Any, ClassVar, overload

from .._base import protocol
from .._base.handler import Defaults, HandlerArgs, HandlerOptions, check_count
from .._base.keys import (
    NAME,
    base_queue,
    check_events_name,
    check_name,
)
from .._base.settings import AckMode, Backoff, Duration, to_seconds
from .._lifecycle import events as events_module
from .._lifecycle import lifecycle
from .._lifecycle.events import Event, Since
from .._redis.connection import Connection
from .._schedules.definitions import SCHEDULE_ARGS, Definition, ScheduleArgs
from .._send.producer import Producer
from .._workflows.handle import WorkflowHandle
from ..errors import AppNotFound, ConfigurationError, UnknownTask
from .handles import TaskHandle
from .queue_methods import DEFAULT_QUEUE, QueueMethods
from .schedule_methods import ScheduleMethods
from .task import Task
from .topic import Retention, Subscriber
from .topic_methods import TopicMethods

if TYPE_CHECKING:
    from typing_extensions import Unpack


class PeriodicArgs(ScheduleArgs, HandlerArgs, total=False):
    """`@app.periodic`'s keyword arguments: the schedule's and the task's handler options."""


class App(ScheduleMethods, TopicMethods, QueueMethods):
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
                self.queues,
            )
            self._check_partitioned(resolved.queue, partitions, declared)
            self.tasks[task_name] = declared
            if partitions is not None:
                self._partitions[resolved.queue] = partitions
            return declared

        if fn is not None:
            return declare(fn)
        return declare

    def handle(self, task: Task | str, id: str | None = None) -> TaskHandle:
        """The handle of a message sent earlier (by this process or another: a web request
        that got the id back), to read its status, cancel it or wait for its result.

        `app.handle(task, id)`, or `app.handle(id)` alone (Celery's `AsyncResult(id)`): the
        message's status names its queue and task — UnknownMessage when no status knows
        it (never sent, or expired), UnknownTask when its task is not one of this app's.
        """
        if id is None:
            if not isinstance(task, str):
                raise ConfigurationError(f"app.handle({task!r}) needs the message id too")
            return self._found(task)
        if isinstance(task, str):
            if task not in self.tasks:
                raise UnknownTask(f"the app has no task {task!r}")
            task = self.tasks[task]
        return task.handle(_checked_id(id))

    def _found(self, id: str) -> TaskHandle:
        if not self.track_status:
            raise ConfigurationError(
                "this app does not track message status (App(track_status=False)): a "
                "message cannot be found by its id alone; give its task: app.handle(task, id)"
            )
        queue, raw = lifecycle.find(self, _checked_id(id))
        name = raw.get(b"task", b"").decode(errors="replace")
        if name not in self.tasks:
            raise UnknownTask(f"message {id} is of task {name!r}, which this app does not have")
        return self.tasks[name].handle(id, base_queue(queue))

    def workflow(self, id: str) -> WorkflowHandle:
        """The handle of a workflow sent earlier (e.g. by another process), from its id."""
        return WorkflowHandle(_checked_id(id, "workflow"), self._producer, self.namespace)

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


def _checked_id(id: Any, kind: str = "message") -> str:
    if not isinstance(id, str) or not protocol.ID.fullmatch(id):
        raise ConfigurationError(f"invalid {kind} id {id!r}: {protocol.ID_RULE}")
    return id


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
