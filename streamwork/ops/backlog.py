"""The backlog an autoscaler reads: everything waiting for a worker of an app, one number
per queue (and per subscriber group) and one for the app, readable with no worker running.

A message waits when a worker, started now, would have it to run or to move:

- ready: stream entries not yet delivered, in every priority band and partition (a queue's
  stream length less its pending entries: queues delete an entry once acknowledged, which is
  why Redis's own consumer-group lag is not used — it turns unknown (NULL) as soon as an
  entry stays pending behind deleted ones); a subscriber group's lag, counted from its
  last-delivered id when Redis cannot say it, and its retry stream's undelivered entries;
- fair: fair tasks' messages waiting in their keys' lists;
- held: messages waiting for a concurrency slot;
- due: delayed messages, retries past their backoff and rate-limit hold-backs whose time
  has come (only a worker moves them into the stream, so a fleet at zero must wake for them);
- orphaned: entries delivered to consumers when no live worker serves the queue (a worker
  died holding them: only a running worker reclaims them);
- schedules: schedule ticks due now, and the app's declared schedules no worker has
  written yet (a worker writes them when it starts, then they tick on their own).

Delayed messages not yet due, and entries running under a live worker, are not waiting.
It reads; it never changes a queue. `streamwork exporter` serves it; `streamwork keda`
points KEDA's metrics-api trigger at it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .._base import protocol
from .._base.keys import ScheduleKeys, Source, schedule_index
from .._redis import commands, reads
from . import stats

if TYPE_CHECKING:
    from .._app.app import App

LAG_CAP = 100_000
"""How far a subscriber group's lag is counted when Redis cannot say it (more still
reads as this many: far past any autoscaler's target)."""


@dataclass(frozen=True)
class Waiting:
    """What waits for a worker in one queue, or one subscriber group ("topic/group")."""

    name: str
    ready: int = 0
    fair: int = 0
    held: int = 0
    due: int = 0
    orphaned: int = 0
    schedules: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.fair + self.held + self.due + self.orphaned + self.schedules

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class Backlog:
    """An app's backlog: each queue's and subscriber group's, and their sum."""

    parts: list[Waiting]

    @property
    def total(self) -> int:
        return sum(part.total for part in self.parts)

    def only(self, names: list[str]) -> Backlog:
        """The backlog of some queues or groups; KeyError names the first unknown one."""
        known = {part.name: part for part in self.parts}
        for name in names:
            if name not in known:
                raise KeyError(name)
        return Backlog([known[name] for name in dict.fromkeys(names)])

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "queues": {part.name: part.as_dict() for part in self.parts}}


def backlog(app: App) -> Backlog:
    """Read what waits in every queue and subscriber group of `app` (a few round trips)."""
    now = protocol.now_ms()
    client = app.connection.redis
    queues = app.queues()
    groups = app.subscriber_groups()
    states = stats.queue_states(app, queues)
    sources = {queue: app.queue_sources(queue) for queue in queues}
    pairs = [app.subscribers[group].sources for group in groups]
    with app.connection.translate_errors():
        due = iter(
            reads.due_counts(
                client,
                [s.delayed for queue in queues for s in sources[queue]]
                + [retry.delayed for _, retry in pairs],
                now,
            )
        )
        ticks = _schedules_waiting(app, queues, now)
        group_counts = commands.group_counts(client, pairs, now)
        held = iter(reads.list_lengths(client, [main.limit("held", "") for main, _ in pairs]))
        infos = commands.topic_info(client, [main.stream for main, _ in pairs])
        parts = [
            Waiting(
                state.queue,
                ready=state.ready,
                fair=state.fair_backlog,
                held=state.held,
                due=sum(next(due) for _ in sources[state.queue]),
                orphaned=state.pending if state.consumers == 0 else 0,
                schedules=ticks.get(state.queue, 0),
            )
            for state in states
        ]
        for (main, _), counts, (_, info) in zip(pairs, group_counts, infos, strict=True):
            main_pending, retry_length, retry_pending, _, _, consumers = counts
            pending = _pending(main_pending) + _pending(retry_pending)
            parts.append(
                Waiting(
                    main.name,
                    ready=_lag(client, main, info) + int(retry_length) - _pending(retry_pending),
                    held=next(held),
                    due=next(due),
                    orphaned=pending if stats.live_consumers(consumers) == 0 else 0,
                )
            )
    return Backlog(parts)


def _pending(summary: Any) -> int:
    """The count of an XPENDING summary (0 when the group does not exist yet)."""
    return 0 if isinstance(summary, Exception) else int(summary["pending"])


def _lag(client: Any, source: Source, groups: Any) -> int:
    """A subscriber group's undelivered entries: Redis's lag, or counted after the group's
    last-delivered id when Redis reports none (NULL after trims and deletions)."""
    if isinstance(groups, Exception):
        return 0  # no topic stream yet: nothing was published
    for group in groups:
        if group["name"].decode() != source.group:
            continue
        if group.get("lag") is not None:
            return int(group["lag"])
        last = group["last-delivered-id"]
        last = last.decode() if isinstance(last, bytes) else str(last)
        return reads.count_after(client, source.stream, last, LAG_CAP)
    # no group yet: a worker would make it at its start position
    if source.start == "$":
        return 0
    return reads.count_after(client, source.stream, "0-0", LAG_CAP)


def _schedules_waiting(app: App, queues: list[str], now_ms: int) -> dict[str, int]:
    """Per queue: its schedules due by `now_ms`, and the app's declared schedules (not
    paused) that no worker has written yet."""
    client = app.connection.redis
    index = {
        k.decode(): v.decode()
        for k, v in commands.schedule_queues(client, schedule_index(app.namespace)).items()
    }
    homes = sorted({*index.values(), *(d.queue for d in app.declared_schedules.values())})
    homes = [queue for queue in homes if queue in queues]
    due_sets = [ScheduleKeys(app.namespace, queue, "").due for queue in homes]
    counts = reads.due_counts(client, due_sets, now_ms)
    waiting = dict(zip(homes, counts, strict=True))
    for id, definition in app.declared_schedules.items():
        if id not in index and not app.starts_paused(id):
            waiting[definition.queue] = waiting.get(definition.queue, 0) + 1
    return waiting
