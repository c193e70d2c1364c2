"""What the console's pages show, read from Redis: plain data, no HTML.

Each function reads a bounded amount (a page of entries, a few hundred events) whatever the
size of a stream, and returns dataclasses and dicts the templates render. The counts and
Little's law come from ops/stats.py, dead letters from ops/dead_letters.py, statuses from
lifecycle.py, schedules and workflows from the app: this module only gathers them per page.
It never changes anything (console.py's actions do, through the same modules as the CLI).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .._app.app import App
from .._base import ids, protocol
from .._base.keys import Source
from .._lifecycle import events as events_module
from .._lifecycle import lifecycle
from .._redis import commands, reads, registry
from .._workflows.handle import WorkflowStatus
from .._workflows.handle import parse_status as parse_workflow
from ..errors import DecodeError, StreamworkError
from ..ops import stats

PAGE = 50
"""Entries per page (ready, pending, delayed, dead letters)."""


def show_value(value: Any) -> str:
    """A decoded argument, kwarg or header as readable text (JSON where it can be; bytes
    and other values as their repr)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def when(ms: int | float | None) -> str:
    """Unix ms as UTC wall-clock text, '-' when unknown."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# -- overview ----------------------------------------------------------------------------


class Sampler:
    """The overview's memory: the last looks at every queue and topic (taken when a page
    asks, at most one per `every` seconds), so rates have two looks to compare and each
    queue has a backlog history for its sparkline. Lives as long as the console."""

    def __init__(self, app: App, every: float = 1.0, keep: int = 120) -> None:
        self.app = app
        self.every = every
        self.looks: deque[stats.Look] = deque(maxlen=keep)
        self._names: tuple[list[str], list[str]] = ([], [])
        self._lock = threading.Lock()

    def overview(self, window: float = 10.0) -> tuple[stats.Overview, dict[str, list[int]]]:
        """The flow between a look about `window` seconds old and a new one, and each
        queue's backlog over the kept looks (which start over when a queue or topic
        appears: looks at different queues do not compare)."""
        with self._lock:
            app = self.app
            names = (registry.known_queues(app), registry.known_topics(app))
            if names != self._names:
                self._names = names
                self.looks.clear()
            if not self.looks:
                self.looks.append(stats.look(app, *names))
                time.sleep(0.5)  # a first visit still gets rates
            if len(self.looks) == 1 or time.monotonic() - self.looks[-1].at >= self.every:
                self.looks.append(stats.look(app, *names))
            latest = self.looks[-1]
            start = next(look for look in self.looks if latest.at - look.at <= window)
            if start is latest:
                start = self.looks[-2]
            history = {
                queue: [look.queues[i].ready for look in self.looks]
                for i, queue in enumerate(names[0])
            }
            return stats.compare(start, latest), history


def sparkline(values: list[int], width: int = 120, height: int = 24) -> str:
    """The points of an SVG polyline drawing `values` (oldest first) in width x height."""
    if len(values) < 2:
        values = [*values, *values] if values else [0, 0]
    top = max(values) or 1
    step = width / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - 1 - (value / top) * (height - 2):.1f}"
        for i, value in enumerate(values)
    )


# -- a queue -----------------------------------------------------------------------------


@dataclass
class Entry:
    """A message in a queue's stream or delayed set, decoded as far as it goes."""

    entry_id: str
    message_id: str = ""
    task: str = ""
    args: str = ""
    attempt: int = 0
    enqueued: str = "-"
    band: str | None = None
    consumer: str | None = None
    idle: float | None = None
    deliveries: int | None = None
    due: str | None = None
    error: str | None = None
    """Why it could not be decoded."""


def _entry(entry_id: str, body: Any, source: Source) -> Entry:
    entry = Entry(entry_id, band=source.band)
    try:
        envelope = ids.named(protocol.decode(body), source.name, source.band, entry_id)
    except (DecodeError, StreamworkError) as exc:
        entry.error = str(exc)
        return entry
    entry.message_id = envelope.id
    entry.task = envelope.task
    entry.attempt = envelope.attempt
    entry.enqueued = when(envelope.enqueued_ms)
    shown = ", ".join(
        [*(repr(a) for a in envelope.args), *(f"{k}={v!r}" for k, v in envelope.kwargs.items())]
    )
    entry.args = shown if len(shown) <= 200 else shown[:199] + "…"
    return entry


def _body(fields: dict[bytes, Any]) -> Any:
    try:
        return protocol.entry_body(fields)
    except DecodeError:
        return fields


@dataclass
class QueuePage:
    state: stats.QueueState
    ready: list[Entry] = field(default_factory=list)
    pending: list[Entry] = field(default_factory=list)
    delayed: list[Entry] = field(default_factory=list)
    next_after: str | None = None
    """For a queue without bands: where the next page of ready entries starts."""


def queue_page(app: App, queue: str, after: str | None = None) -> QueuePage:
    """A queue's counts, then a page of its ready entries (not yet delivered, oldest
    first, from `after`), its pending entries (with owner, idle time and deliveries) and
    its delayed messages (soonest first)."""
    page = QueuePage(stats.queue_state(app, queue))
    client = app.connection.redis
    sources = app.queue_sources(queue)
    with app.connection.translate_errors():
        for source in sources:
            start = after if after and len(sources) == 1 else reads.last_delivered(client, source)
            rows = reads.entries(client, source.stream, "(" + start, count=PAGE)
            page.ready += [_entry(i.decode(), _body(f), source) for i, f in rows]
            if len(sources) == 1 and len(rows) == PAGE:
                page.next_after = rows[-1][0].decode()
            page.pending += _pending(client, source)
            for body, score in reads.delayed_page(client, source.delayed, PAGE):
                entry = _entry("", body, source)
                entry.due = when(score)
                page.delayed.append(entry)
    page.delayed.sort(key=lambda entry: entry.due or "")
    return page


def _pending(client: Any, source: Source) -> list[Entry]:
    rows = reads.pending_page(client, source, PAGE)
    entries = reads.entries_by_id(client, source.stream, [row["message_id"] for row in rows])
    found = []
    for row, entry in zip(rows, entries, strict=True):
        entry_id = row["message_id"].decode()
        shown = _entry(entry_id, _body(entry[0][1]), source) if entry else Entry(entry_id)
        shown.consumer = row["consumer"].decode()
        shown.idle = int(row["time_since_delivered"]) / 1000
        shown.deliveries = int(row["times_delivered"])
        found.append(shown)
    return found


# -- workers -----------------------------------------------------------------------------


@dataclass
class Worker:
    """One consumer name (a worker process) across the queues and groups it reads."""

    name: str
    idle: float
    """Seconds since it last got or claimed anything, anywhere (0 for a live worker that
    never got anything: it is reading)."""
    sources: list[dict[str, Any]] = field(default_factory=list)
    running: list[lifecycle.Running] = field(default_factory=list)
    is_live: bool = False
    """Its heartbeat is current: it serves its queues now, busy or idle."""

    @property
    def pending(self) -> int:
        return sum(int(source["pending"]) for source in self.sources)


def all_sources(app: App) -> list[Source]:
    """Every queue (each band) and every subscriber group's topic stream of the app."""
    queues = [s for queue in registry.known_queues(app) for s in app.queue_sources(queue)]
    return queues + [app.topic_source(topic, group) for topic, group in app.subscriber_groups()]


def workers(app: App) -> list[Worker]:
    """The consumers of every queue and subscriber group, live ones first, with what each
    runs now (its pending entries, with the progress their status holds)."""
    client = app.connection.redis
    sources = all_sources(app)
    found: dict[str, Worker] = {}
    now = protocol.now_ms()
    with app.connection.translate_errors():
        replies = reads.consumers(client, sources)
        beats = commands.workers_of(client, sources) if sources else []
        for source, consumers, beating in zip(sources, replies, beats, strict=True):
            live = {name.decode() for name, lapses in beating if lapses > now}
            pending: dict[str, int] = {name: 0 for name in live}
            idle_of: dict[str, float] = {name: 0.0 for name in live}
            for consumer in [] if isinstance(consumers, Exception) else consumers:
                name = consumer["name"].decode()  # no stream or group yet: none
                pending[name] = int(consumer["pending"])
                idle_of[name] = int(consumer["idle"]) / 1000
            for name, count in pending.items():
                worker = found.setdefault(name, Worker(name, idle_of[name]))
                worker.idle = min(worker.idle, idle_of[name])
                worker.is_live = worker.is_live or name in live
                worker.sources.append({"name": source.name, "pending": count})
        queue_sources = [source for source in sources if source.topic is None]
        for item in lifecycle.running(client, queue_sources, limit=200):
            if item.worker in found:
                found[item.worker].running.append(item)
    return sorted(found.values(), key=lambda w: (not w.is_live, w.idle, w.name))


# -- a task, workflows, events -----------------------------------------------------------


@dataclass
class TaskPage:
    id: str
    queue: str
    status: lifecycle.TaskStatus
    events: list[events_module.Event]
    events_note: str | None = None


def task_page(app: App, message_id: str) -> TaskPage:
    """A message's status (found in whichever queue holds it) and its recorded events."""
    queue, raw = lifecycle.find(app, message_id)
    status = lifecycle.parse_status(raw, protocol.now_ms())
    if not app.events_cap(queue):
        return TaskPage(message_id, queue, status, [], f"queue {queue!r} records no events")
    found = events_module.recent(app, queue, limit=200, message_id=message_id)
    return TaskPage(message_id, queue, status, list(reversed(found)))


def recent_workflows(app: App, limit: int = 50) -> list[WorkflowStatus]:
    """The workflows whose children were sent most recently (from the events of the
    queues that record them; newest first), each with its kind, state and times (those
    whose record expired read "unknown")."""
    try:
        found = events_module.recent(app, limit=2000)
    except StreamworkError:
        return []
    ids: dict[str, None] = {}
    for event in found:
        if event.workflow and event.workflow not in ids:
            ids[event.workflow] = None
            if len(ids) == limit:
                break
    handles = [app.workflow(workflow_id) for workflow_id in ids]
    with app.connection.translate_errors():
        records = commands.read_hashes(app.connection.redis, [h.keys.workflow for h in handles])
    found_status = []
    for handle, record in zip(handles, records, strict=True):
        try:
            found_status.append(parse_workflow(handle.id, record))
        except (KeyError, ValueError, DecodeError):  # a record another version wrote
            found_status.append(WorkflowStatus(handle.id, "unknown"))
    return found_status
