"""What a queue holds and how it flows: counts now, rates between two looks, Little's law.

Shared by the CLI (`stats`), the examples and metrics. It reads; it never changes a queue.

- counts: ready (backlog), pending (running), delayed, dead letters;
- totals kept by workers in `NS:{QUEUE}:stats` (done, retry, dead, runs, wait_ms, run_ms)
  and the stream's `entries-added`;
- rates over an interval: arrival rate λ, completion rate, average wait W and run time S,
  and from Little's law L = λ·W the backlog that λ and W imply; λ·S is the number of
  handlers kept busy on average, i.e. the concurrency the queue needs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from .._base import protocol
from .._base.keys import (
    TopicKeys,
    topic_sources,
)
from .._redis import commands, reads
from .._redis.registry import known_queues, known_topics

if TYPE_CHECKING:
    from .._redis.connection import NamespaceView


@dataclass(frozen=True)
class QueueState:
    queue: str
    ready: int
    """Entries waiting for a worker (backlog)."""
    pending: int
    """Entries delivered to a worker and not yet acknowledged (running, or held by a dead one)."""
    delayed: int
    """Delayed messages and retries waiting for their time."""
    dead_letters: int
    added: int = 0
    """Entries ever added to the stream (arrivals, retries and replays included)."""
    done: int = 0
    retried: int = 0
    dead: int = 0
    runs: int = 0
    waited: int = 0
    """Runs whose wait is known (their message carried a `ts`)."""
    wait_ms: int = 0
    """Total time messages waited before their handler started (over `waited`)."""
    run_ms: int = 0
    """Total time handlers ran (over `runs`)."""
    oldest_pending_ms: int | None = None
    """When the oldest unacknowledged entry was added (Unix ms), None if nothing pending."""
    consumers: int = 0
    """Live consumers (worker processes) serving the queue: their heartbeat is current."""
    held: int = 0
    """Messages waiting for a concurrency slot (tasks with concurrency_limit)."""
    held_back: int = 0
    """Times a message was held back before it ran (rate, concurrency) or handed back
    (RateLimited), in total: never counted as attempts."""
    bands: dict[str, int] | None = None
    """For a queue with priority bands: each band's ready messages (they sum to `ready`)."""
    fair_backlog: int = 0
    """Messages of fair tasks waiting in their keys' lists (not yet in the stream)."""
    fair_keys: list[dict[str, Any]] | None = None
    """Fair tasks: the keys with the largest backlogs (task, key, backlog, in_flight: fed
    to the queue and not finished, counted for tasks with per_key_concurrency), at most
    TOP_KEYS of them."""
    partitions: list[QueueState] | None = None
    """For a partitioned queue: each partition's state (named `QUEUE~N`), in order; the
    queue's own counts and totals are their sums."""
    at: float = 0.0
    """time.monotonic() when it was read."""

    @property
    def is_empty(self) -> bool:
        """True when nothing is waiting, running or delayed (dead letters aside)."""
        return (
            self.ready == 0
            and self.pending == 0
            and self.delayed == 0
            and self.held == 0
            and self.fair_backlog == 0
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["at"]
        for partition in data["partitions"] or ():
            del partition["at"], partition["partitions"]
        return data


_SUMMED = (
    "ready",
    "pending",
    "delayed",
    "dead_letters",
    "added",
    "done",
    "retried",
    "dead",
    "runs",
    "waited",
    "wait_ms",
    "run_ms",
    "held_back",
)


def _partitioned(queue: str, parts: list[QueueState], at: float) -> QueueState:
    """A partitioned queue's state: its partitions' counts and totals summed, the oldest
    pending entry of any, the most consumers of any (each worker reads every partition)."""
    oldest = [p.oldest_pending_ms for p in parts if p.oldest_pending_ms is not None]
    return QueueState(
        queue,
        **{name: sum(getattr(part, name) for part in parts) for name in _SUMMED},
        oldest_pending_ms=min(oldest) if oldest else None,
        consumers=max(part.consumers for part in parts),
        partitions=parts,
        at=at,
    )


def _state(
    queue: str, bands: list[tuple[str | None, list[Any]]], held: int, at: float
) -> QueueState:
    """One queue's state from its counts: one reply per band (one without bands)."""
    ready = pending = delayed = added = consumers = 0
    oldest: list[int] = []
    per_band: dict[str, int] = {}
    for band, replies in bands:
        length, pending_summary, band_delayed, _, info, _, band_consumers = replies[:7]
        for value in (length, band_delayed):
            if isinstance(value, Exception):
                raise value
        # An error for the pending count means no group yet: nothing was ever delivered.
        count = 0 if isinstance(pending_summary, Exception) else int(pending_summary["pending"])
        # Queues delete each entry once acknowledged, so the stream is backlog + pending.
        ready += length - count
        pending += count
        delayed += band_delayed
        added += 0 if isinstance(info, Exception) else int(info.get("entries-added") or 0)
        consumers = max(consumers, live_consumers(band_consumers))
        first = _oldest_ms(pending_summary)
        if first is not None:
            oldest.append(first)
        if band is not None:
            per_band[band] = length - count
    dead, totals = bands[0][1][3], bands[0][1][5]
    for value in (dead, totals):
        if isinstance(value, Exception):
            raise value
    total = {k.decode(): int(v) for k, v in totals.items()}
    return QueueState(
        queue,
        ready=ready,
        pending=pending,
        delayed=delayed,
        dead_letters=dead,
        added=added,
        done=total.get("done", 0),
        retried=total.get("retry", 0),
        dead=total.get("dead", 0),
        runs=total.get("runs", 0),
        waited=total.get("waited", 0),
        wait_ms=total.get("wait_ms", 0),
        run_ms=total.get("run_ms", 0),
        oldest_pending_ms=min(oldest) if oldest else None,
        consumers=consumers,
        held=held,
        held_back=total.get("held", 0) + total.get("wait", 0) + total.get("turn", 0),
        bands=per_band or None,
        at=at,
    )


LIVE = (
    "LIVE: worker processes serving it now (each writes a heartbeat every third of its "
    "visibility timeout, good for one visibility timeout)"
)
"""What the consumer counts mean, as the CLI says it."""


def live_consumers(count: Any) -> int:
    """The live workers of a `workers` set's count (0 when it could not be read)."""
    return 0 if isinstance(count, Exception) else int(count)


def _oldest_ms(pending: Any) -> int | None:
    """The add time (ms) of the oldest entry in an XPENDING summary, None if there is none."""
    if isinstance(pending, Exception) or not pending.get("pending"):
        return None
    oldest = pending["min"]
    return int((oldest.decode() if isinstance(oldest, bytes) else oldest).split("-")[0])


def queue_states(app: NamespaceView, queues: Sequence[str]) -> list[QueueState]:
    """The counts and totals of `queues` (all their priority bands), in one round trip."""
    per_queue = [app.queue_sources(queue) for queue in queues]
    sources = [source for found in per_queue for source in found]
    held = [
        app.held_lists(queue) if i == 0 else []
        for queue, found in zip(queues, per_queue, strict=True)
        for i in range(len(found))
    ]
    with app.connection.translate_errors():
        replies = iter(
            commands.queue_counts(app.connection.redis, sources, held, protocol.now_ms())
        )
    at = time.monotonic()
    states = []
    for queue, found in zip(queues, per_queue, strict=True):
        if found[0].partition is not None:
            parts = [_state(source.name, [(None, next(replies))], 0, at) for source in found]
            states.append(_partitioned(queue, parts, at))
            continue
        bands = [(source.band, next(replies)) for source in found]
        state = _state(queue, bands, sum(r[7] for _, r in bands), at)
        prefixes = app.fair_prefixes(queue)
        if prefixes:
            with app.connection.translate_errors():
                total, top = fair_keys(app.connection.redis, prefixes)
            state = replace(state, fair_backlog=total, fair_keys=top)
        states.append(state)
    return states


TOP_KEYS = 10
"""How many keys of fair tasks stats and metrics show one by one (the rest are summed)."""
RING_SCAN = 1000
"""How many keys of one fair task are looked at for the top keys."""


def fair_keys(client: Any, prefixes: Sequence[tuple[str, str]]) -> tuple[int, list[dict[str, Any]]]:
    """(the fair tasks' total backlog, their top keys by backlog) of one queue."""
    rings = reads.fair_rings(client, [prefix for _, prefix in prefixes], RING_SCAN)
    found, keys = [], []
    for (task, prefix), ring in zip(prefixes, rings, strict=True):
        for key in ring:
            found.append((task, key.decode(errors="replace")))
            keys.append((prefix, key))
    counts = reads.fair_key_counts(client, keys)
    rows = [
        {"task": task, "key": key, "backlog": counts[2 * i], "in_flight": counts[2 * i + 1]}
        for i, (task, key) in enumerate(found)
    ]
    rows.sort(key=lambda row: (-row["backlog"], -row["in_flight"], row["key"]))
    return sum(row["backlog"] for row in rows), rows[:TOP_KEYS]


def queue_state(app: NamespaceView, queue: str) -> QueueState:
    return queue_states(app, [queue])[0]


@dataclass(frozen=True)
class GroupState:
    """One subscriber group of a topic."""

    group: str
    lag: int | None
    """Events not yet delivered to the group (None when Redis cannot tell, after trims)."""
    pending: int
    """Events delivered to the group's consumers and not yet acknowledged."""
    consumers: int
    """Live consumers (worker processes) of the group: their heartbeat is current."""
    retrying: int
    """Retries waiting in the group's delayed set or retry stream."""
    dead_letters: int
    oldest_pending_ms: int | None = None
    """When the oldest unacknowledged event was added (Unix ms), None if nothing pending."""


@dataclass(frozen=True)
class TopicState:
    topic: str
    length: int
    """Events the topic stream retains."""
    added: int
    """Events ever published (λ is its rate)."""
    groups: list[GroupState]
    at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["at"]
        return data


def topic_states(app: NamespaceView, topics: Sequence[str]) -> list[TopicState]:
    """Each topic's length and, per subscriber group, lag, pending, consumers and failures."""
    streams = [TopicKeys(app.namespace, topic).stream for topic in topics]
    with app.connection.translate_errors():
        infos = commands.topic_info(app.connection.redis, streams)
        groups_of = [[] if isinstance(g, Exception) else g for _, g in infos]
        pairs = [
            topic_sources(app.namespace, topic, group["name"].decode())
            for topic, groups in zip(topics, groups_of, strict=True)
            for group in groups
        ]
        counts = iter(commands.group_counts(app.connection.redis, pairs, protocol.now_ms()))
    at = time.monotonic()
    states = []
    for topic, (info, _), groups in zip(topics, infos, groups_of, strict=True):
        group_states = []
        for group in groups:
            main_pending, retry_length, retry_pending, delayed, dead, consumers = next(counts)
            oldest = _oldest_ms(main_pending)
            retry_oldest = _oldest_ms(retry_pending)
            if oldest is None or (retry_oldest is not None and retry_oldest < oldest):
                oldest = retry_oldest
            retry_pending = 0 if isinstance(retry_pending, Exception) else retry_pending["pending"]
            lag = group.get("lag")
            group_states.append(
                GroupState(
                    group=group["name"].decode(),
                    lag=None if lag is None else int(lag),
                    pending=int(group["pending"]) + int(retry_pending),
                    consumers=live_consumers(consumers),
                    retrying=int(delayed) + int(retry_length) - int(retry_pending),
                    dead_letters=int(dead),
                    oldest_pending_ms=oldest,
                )
            )
        is_missing = isinstance(info, Exception)
        states.append(
            TopicState(
                topic=topic,
                length=0 if is_missing else int(info["length"]),
                added=0 if is_missing else int(info.get("entries-added") or 0),
                groups=group_states,
                at=at,
            )
        )
    return states


@dataclass(frozen=True)
class QueueFlow:
    """A queue's rates between two looks, and what Little's law makes of them."""

    state: QueueState
    arrival_rate: float
    """λ: entries added per second."""
    completion_rate: float
    """Messages finished (done or dead-lettered) per second."""
    wait: float | None
    """W: average seconds a message waited before its handler started (None: no runs yet)."""
    run_time: float | None
    """S: average seconds a handler ran."""

    @property
    def expected_backlog(self) -> float | None:
        """L = λ·W: how many messages wait on average at this arrival rate and wait."""
        return None if self.wait is None else self.arrival_rate * self.wait

    @property
    def busy_handlers(self) -> float | None:
        """λ·S: handlers busy on average — the concurrency the queue needs to keep up."""
        return None if self.run_time is None else self.arrival_rate * self.run_time

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.state.as_dict(),
            "arrival_rate": self.arrival_rate,
            "completion_rate": self.completion_rate,
            "wait": self.wait,
            "run_time": self.run_time,
            "expected_backlog": self.expected_backlog,
            "busy_handlers": self.busy_handlers,
        }


def flow(before: QueueState, after: QueueState) -> QueueFlow:
    """The rates between two looks at one queue.

    W and S are averaged over the runs between the looks, or over all runs when there
    were none in between (a quiet queue still shows what its messages usually wait).
    """
    seconds = max(after.at - before.at, 1e-9)
    runs = after.runs - before.runs
    waited = after.waited - before.waited
    wait = run_time = None
    if runs > 0:
        run_time = (after.run_ms - before.run_ms) / runs / 1000
    elif after.runs > 0:
        run_time = after.run_ms / after.runs / 1000
    # W over the runs whose wait is known (messages without `ts` have none)
    if waited > 0:
        wait = (after.wait_ms - before.wait_ms) / waited / 1000
    elif after.waited > 0:
        wait = after.wait_ms / after.waited / 1000
    finished = (after.done + after.dead) - (before.done + before.dead)
    return QueueFlow(
        state=after,
        arrival_rate=max(0, after.added - before.added) / seconds,
        completion_rate=max(0, finished) / seconds,
        wait=wait,
        run_time=run_time,
    )


@dataclass(frozen=True)
class Look:
    """Everything `stats` and `top` show, read at one moment."""

    queues: list[QueueState]
    topics: list[TopicState]
    at: float = 0.0
    """time.monotonic() when it was read."""


def look(app: NamespaceView, queues: Sequence[str], topics: Sequence[str]) -> Look:
    return Look(queue_states(app, queues), topic_states(app, topics), time.monotonic())


@dataclass(frozen=True)
class Overview:
    """Two looks compared: each queue's flow, and each topic's publish rate."""

    queues: list[QueueFlow]
    topics: list[TopicState]
    publish_rates: list[float]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "queues": [flow.as_dict() for flow in self.queues],
            "topics": [
                {**topic.as_dict(), "publish_rate": rate}
                for topic, rate in zip(self.topics, self.publish_rates, strict=True)
            ],
        }


def compare(before: Look, after: Look) -> Overview:
    rates = [
        max(0, a.added - b.added) / max(a.at - b.at, 1e-9)
        for b, a in zip(before.topics, after.topics, strict=True)
    ]
    seconds = after.queues[0].at - before.queues[0].at if after.queues else after.at - before.at
    return Overview(
        queues=[flow(b, a) for b, a in zip(before.queues, after.queues, strict=True)],
        topics=after.topics,
        publish_rates=rates,
        seconds=seconds,
    )


def measure(app: NamespaceView, interval: float) -> Overview:
    """Look at every known queue and topic twice, `interval` seconds apart."""
    queues, topics = known_queues(app), known_topics(app)
    before = look(app, queues, topics)
    time.sleep(interval)
    return compare(before, look(app, queues, topics))
