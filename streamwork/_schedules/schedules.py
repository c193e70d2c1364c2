"""Schedules: periodic tasks with no beat process and no leader — their Redis side.

A hash per schedule and a due set per queue, both in the target queue's slot, plus an index
of every schedule of the namespace (id -> queue); `Schedules` reads and changes them (the
calls behind `app.schedules()`, pause, resume, trigger, remove), `Schedule` is what they
return. What a schedule is and how its ticks fall is definitions.py's.

Every worker process serving a queue runs a `Ticker` (ticker.py) for that queue's
schedules; it enqueues each due tick with one Lua step that claims it (SET NX) and XADDs the
message, so workers racing for a tick enqueue it once. Declaring a schedule in code writes
nothing: a worker reconciles the app's declared schedules when it starts. Nothing here runs
a handler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .._base import protocol
from .._base.keys import ScheduleKeys, queue_registry, schedule_index
from .._redis import commands
from ..errors import StreamworkError
from .definitions import Definition, _utc, tick_body

TICK_EVERY = 0.5
"""The longest a ticker waits between looks at the due sets (seconds)."""


class UnknownSchedule(StreamworkError, LookupError):
    """No schedule with that id in the app's namespace."""


@dataclass(frozen=True)
class Schedule:
    """A schedule as stored in Redis (what `app.schedules()` and the CLI show)."""

    id: str
    task: str
    queue: str
    cron: str | None
    every: float | None
    """Seconds between ticks, for an `every` schedule."""
    tz: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    start: datetime | None
    end: datetime | None
    catch_up: str
    overlap: bool
    paused: bool
    next_run: datetime | None
    """UTC; None when paused or past its end."""
    last_run: datetime | None
    """UTC: the due time of the last tick enqueued (or of the last trigger)."""
    last_message_id: str | None
    origin: str
    """"code" (declared in the app; workers reconcile it) or "runtime" (add_schedule)."""
    enqueued: int = 0
    skipped: int = 0
    """Ticks skipped because the previous run was still queued or running (overlap=False)."""
    missed: int = 0
    """Ticks no worker enqueued in time and the catch-up policy did not run."""
    period: float = 0.0
    """Seconds between two ticks (cron: the next two from now)."""
    next_runs: tuple[datetime, ...] = ()
    """UTC: the next three run times (fewer near its end; none when paused)."""

    @classmethod
    def from_hash(
        cls, definition: Definition, raw: dict[bytes, bytes], next_ms: int | None
    ) -> Schedule:
        def number(name: str) -> int:
            value = raw.get(name.encode())
            return int(value) if value else 0

        last = raw.get(b"last_run")
        message = raw.get(b"last_message")
        paused = raw.get(b"paused") == b"1"
        return cls(
            id=definition.id,
            task=definition.task,
            queue=definition.queue,
            cron=definition.cron,
            every=None if definition.every_ms is None else definition.every_ms / 1000,
            tz=definition.tz,
            args=definition.args,
            kwargs=definition.kwargs,
            start=_utc(definition.start_ms),
            end=_utc(definition.end_ms),
            catch_up=definition.catch_up,
            overlap=definition.overlap,
            paused=paused,
            next_run=None if paused else _utc(next_ms),
            last_run=_utc(int(last)) if last else None,
            last_message_id=message.decode() if message else None,
            origin=(raw.get(b"origin") or b"runtime").decode(),
            enqueued=number("enqueued"),
            skipped=number("skipped"),
            missed=number("missed"),
            period=definition.period_ms(protocol.now_ms()) / 1000,
            next_runs=()
            if paused
            else tuple(
                datetime.fromtimestamp(ms / 1000, timezone.utc)
                for ms in definition.runs_from(next_ms)
            ),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the CLI's --json): times as ISO 8601 UTC."""
        out = dict(self.__dict__)
        for name in ("start", "end", "next_run", "last_run"):
            value = out[name]
            out[name] = None if value is None else value.isoformat()
        out["args"] = list(self.args)
        out["next_runs"] = [run.isoformat() for run in self.next_runs]
        return out


class Schedules:
    """The schedules of one namespace in Redis, for calls from user code and the CLI.

    Synchronous (the app's sync client); the worker's `Ticker` has the async side.
    """

    def __init__(
        self,
        connection: Any,
        namespace: str,
        status_ttl_ms: int = 86_400_000,
        events_cap: Callable[[str], int] = lambda queue: 0,
    ) -> None:
        self.connection = connection
        self.namespace = namespace
        self.status_ttl_ms = status_ttl_ms
        self.events_cap = events_cap

    def keys(self, queue: str, id: str) -> ScheduleKeys:
        return ScheduleKeys(self.namespace, queue, id)

    def put(self, definition: Definition, *, origin: str, paused: bool = False) -> int:
        """Create or update; 0 unchanged, 1 created, 2 updated."""
        connection = self.connection
        with connection.translate_errors():
            client = connection.redis
            index = schedule_index(self.namespace)
            old_queue = commands.queue_of_schedule(client, index, definition.id)
            if old_queue is not None and old_queue.decode() != definition.queue:
                connection.scripts.schedule_state(
                    self.keys(old_queue.decode(), definition.id), "remove", None
                )
            commands.index_schedule(client, index, definition.id, definition.queue)
            commands.register(client, queue_registry(self.namespace), definition.queue)
            now = protocol.now_ms()
            return int(
                connection.scripts.schedule_put(
                    self.keys(definition.queue, definition.id),
                    definition.rev,
                    definition.next_after(now),
                    paused,
                    origin,
                    definition.fields(),
                )
            )

    def _queue_of(self, id: str) -> str:
        with self.connection.translate_errors():
            queue = commands.queue_of_schedule(
                self.connection.redis, schedule_index(self.namespace), id
            )
        if queue is None:
            raise UnknownSchedule(f"no schedule {id!r} in namespace {self.namespace!r}")
        return str(queue.decode())

    def _load(self, id: str) -> tuple[ScheduleKeys, Definition, dict[bytes, bytes]]:
        keys = self.keys(self._queue_of(id), id)
        with self.connection.translate_errors():
            raw = commands.schedule_fields(self.connection.redis, keys)
        if not raw:
            raise UnknownSchedule(f"no schedule {id!r} in namespace {self.namespace!r}")
        return keys, Definition.from_fields(id, raw), raw

    def all(self) -> list[Schedule]:
        """Every schedule of the namespace, by id."""
        connection = self.connection
        with connection.translate_errors():
            client = connection.redis
            index = {
                k.decode(): v.decode()
                for k, v in commands.schedule_queues(client, schedule_index(self.namespace)).items()
            }
            ids = sorted(index)
            keys = [self.keys(index[id], id) for id in ids]
            raws = commands.read_schedules(client, keys)
            scores = commands.next_dues(client, keys)
        found = []
        for id, raw, score in zip(ids, raws, scores, strict=True):
            if not raw:
                continue
            try:
                definition = Definition.from_fields(id, raw)
            except ValueError:
                continue
            found.append(Schedule.from_hash(definition, raw, None if score is None else int(score)))
        return found

    def get(self, id: str) -> Schedule:
        keys, definition, raw = self._load(id)
        with self.connection.translate_errors():
            score = commands.next_due(self.connection.redis, keys)
        return Schedule.from_hash(definition, raw, None if score is None else int(score))

    def remove(self, id: str) -> None:
        keys = self.keys(self._queue_of(id), id)
        with self.connection.translate_errors():
            commands.unindex_schedule(self.connection.redis, schedule_index(self.namespace), id)
            self.connection.scripts.schedule_state(keys, "remove", None)

    def pause(self, id: str) -> None:
        keys, _, _ = self._load(id)
        with self.connection.translate_errors():
            self.connection.scripts.schedule_state(keys, "pause", None)

    def resume(self, id: str) -> None:
        keys, definition, _ = self._load(id)
        with self.connection.translate_errors():
            self.connection.scripts.schedule_state(
                keys, "resume", definition.next_after(protocol.now_ms())
            )

    def trigger(self, id: str) -> str:
        """Enqueue a run now (the next tick is unchanged); returns its message id."""
        keys, definition, _ = self._load(id)
        now = protocol.now_ms()
        message_id = protocol.new_id()
        body = tick_body(definition, message_id, now, now)
        with self.connection.translate_errors():
            _, _, status = self.connection.scripts.schedule_tick(
                keys,
                None,
                definition.rev,
                None,
                True,
                1,
                0,
                [(now, message_id, body)],
                self.status_ttl_ms,
                self.events_cap(definition.queue),
            )
        if status == -3:
            raise UnknownSchedule(f"no schedule {id!r} in namespace {self.namespace!r}")
        return message_id
