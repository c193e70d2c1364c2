"""Every Redis key name streamwork uses, in one place.

All keys of one queue share the hash tag `{queue}` so that each multi-key step (a Lua
script, a MULTI) stays inside one Redis Cluster slot. Nothing here talks to Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError

QUEUE_GROUP = "workers"
"""The consumer group that reads a queue: one group, so each message goes to one worker."""

NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
"""What a queue, topic, group, namespace or task name may be (also on the wire)."""
NAME_RULE = "use 1-200 ASCII letters, digits, '_', '.', ':' or '-'"


PARTITION_MARK = "~"
"""Joins a partitioned queue's name and a partition number (`orders~3`): never in a name
a user gives, so the internal queue of a partition cannot clash with a declared queue."""


def partition_name(queue: str, partition: int) -> str:
    """The internal queue name of partition `partition` of `queue` (its own hash tag)."""
    return f"{queue}{PARTITION_MARK}{partition}"


def base_queue(name: str) -> str:
    """The queue a partition's internal name belongs to (`orders~3` -> `orders`)."""
    return name.split(PARTITION_MARK, 1)[0]


def partition_number(name: str) -> int | None:
    """The partition an internal queue name is (`orders~3` -> 3), None for a plain queue."""
    _, mark, number = name.partition(PARTITION_MARK)
    return int(number) if mark and number.isdigit() else None


PARTITION_ID = "-p"
"""Joins a message id and its partition (`<32 hex>-p3`) on a partitioned queue, so that a
message's keys are found from its id alone."""


def partition_of_id(message_id: str) -> int:
    """The partition a message of a partitioned queue went to, from its id (one without
    the `-pN` ending, e.g. a workflow's step, went to partition 0)."""
    _, mark, number = message_id.rpartition(PARTITION_ID)
    return int(number) if mark and number.isdigit() else 0


def check_name(kind: str, name: str) -> str:
    """Return `name` if it can be a queue, topic, group, namespace or task name, else raise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigurationError(f"invalid {kind} name {name!r}: {NAME_RULE}")
    return name


def check_queue(name: str) -> str:
    """Return `name` if it names a queue or one partition of one (`orders~3`), else raise."""
    if isinstance(name, str) and partition_number(name) is not None:
        check_name("queue", base_queue(name))
        return name
    return check_name("queue", name)


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue (or topic): its stream, delayed set and dead-letter stream."""

    namespace: str
    queue: str

    @property
    def tag(self) -> str:
        return f"{self.namespace}:{{{self.queue}}}"

    @property
    def stream(self) -> str:
        return f"{self.tag}:stream"

    @property
    def delayed(self) -> str:
        return f"{self.tag}:delayed"

    def fair(self, task: str) -> str:
        """The prefix of a fair task's keys: `ring` (a list of the keys with a backlog,
        rotated), `keys` (a set of them), and per key `q:KEY` (its backlog), `run:KEY`
        (entries fed and not finished), `rate:KEY` (GCRA)."""
        return f"{self.tag}:fair:{task}:"

    def band_stream(self, band: str) -> str:
        """The stream of a priority band: the queue's stream for "default"."""
        return self.stream if band == "default" else f"{self.tag}:stream:{band}"

    def band_delayed(self, band: str) -> str:
        """Where a band's delayed messages and retries wait (the delayed set for "default")."""
        return self.delayed if band == "default" else f"{self.tag}:delayed:{band}"

    @property
    def dead_letters(self) -> str:
        return f"{self.tag}:dlq"

    @property
    def stats(self) -> str:
        return f"{self.tag}:stats"

    def result(self, task_id: str) -> str:
        return f"{self.tag}:result:{task_id}"

    def dedupe(self, key: str) -> str:
        return f"{self.tag}:dedupe:{key}"

    def status(self, task_id: str) -> str:
        """A small hash: a message's lifecycle state, attempts, progress, cancellation."""
        return f"{self.tag}:status:{task_id}"

    @property
    def events(self) -> str:
        """A capped stream of the queue's lifecycle events (when the app records them)."""
        return f"{self.tag}:events"

    @property
    def order_prefix(self) -> str:
        """Where the queue's partition key orders are kept (see Source.order_prefix)."""
        return f"{self.tag}:"


@dataclass(frozen=True)
class ScheduleKeys(QueueKeys):
    """The keys of one schedule, all in its target queue's slot (the tick script writes the
    schedule, its claim key and the queue's stream, statuses and events in one step)."""

    id: str

    @property
    def schedule(self) -> str:
        """A hash: the definition, its revision, paused, last run, counters."""
        return f"{self.tag}:schedule:{self.id}"

    @property
    def due(self) -> str:
        """A sorted set of the queue's active schedules by next due time (Unix ms)."""
        return f"{self.tag}:schedules"

    def claim(self, due_ms: int) -> str:
        """Set (NX) by the step that enqueues the tick due at `due_ms`."""
        return f"{self.tag}:tick:{self.id}:{due_ms}"


@dataclass(frozen=True)
class WorkflowKeys:
    """The keys of one workflow, under a hash tag of its own (`{wf:ID}`): every step on a
    workflow is one slot, whichever queues its children run on."""

    namespace: str
    id: str

    @property
    def tag(self) -> str:
        return f"{self.namespace}:{{wf:{self.id}}}"

    @property
    def workflow(self) -> str:
        """A hash: the tree of nodes, each node's state and value, the workflow's state."""
        return f"{self.tag}:workflow"

    @property
    def finished(self) -> str:
        """A list holding the final state once the workflow ends (waiters block on it)."""
        return f"{self.tag}:finished"

    def dedupe(self, node: int) -> str:
        """The idempotency key a child is sent under (in its queue's `dedupe:` space)."""
        return f"wf:{self.id}:{node}"


def schedule_index(namespace: str) -> str:
    """A hash of every schedule in `namespace`: id -> target queue."""
    return f"{namespace}:schedules"


def events_stream(namespace: str, name: str) -> str:
    """The lifecycle event stream of a queue, or of a subscriber group named "topic/group"."""
    if "/" in name:
        topic, group = name.split("/", 1)
        return TopicKeys(namespace, topic).group(group, "events")
    return QueueKeys(namespace, name).events


def check_events_name(name: str) -> str:
    """A queue name, or "topic/group" for a subscriber group's events."""
    if isinstance(name, str) and "/" in name:
        topic, group = name.split("/", 1)
        check_name("topic", topic)
        check_name("group", group)
        return name
    return check_name("queue", name)


def queue_registry(namespace: str) -> str:
    """The set of every queue name that was sent to or served in `namespace`."""
    return f"{namespace}:queues"


@dataclass(frozen=True)
class OrderKeys:
    """The keys of one partition key's order, in its queue's slot (see _redis/lua/_turns.lua):
    `order` lists the ids of the key's messages not finished, in send order; `turn` holds
    (id -> body) those a worker read before their turn; `ordered` is the queue's set of
    keys with an order."""

    order: str
    turn: str
    ordered: str

    @classmethod
    def of(cls, prefix: str, partition_key: str) -> OrderKeys:
        """The keys of `partition_key` under a queue's order prefix (`NS:{QUEUE}:`)."""
        return cls(
            f"{prefix}order:{partition_key}", f"{prefix}turn:{partition_key}", f"{prefix}ordered"
        )

    def all(self) -> list[str]:
        """The three, in the order the scripts take them."""
        return [self.order, self.turn, self.ordered]


def limits_registry(namespace: str) -> str:
    """A hash of the rate limits changed at run time in `namespace`: task -> "100/s" or
    "none" (`streamwork limits set`; workers read it once a second)."""
    return f"{namespace}:limits"


def partitions_registry(namespace: str) -> str:
    """A hash of every partitioned queue in `namespace`: queue -> its number of partitions
    (written by workers, read by tools that see the queues without the app's code)."""
    return f"{namespace}:partitions"


def topic_registry(namespace: str) -> str:
    """The set of every topic name published to or subscribed in `namespace`."""
    return f"{namespace}:topics"


@dataclass(frozen=True)
class TopicKeys:
    """The keys of one topic: its stream, and per subscriber group the keys of its retries,
    dead letters and stats (a group's retries must reach that group only)."""

    namespace: str
    topic: str

    @property
    def tag(self) -> str:
        return f"{self.namespace}:topic:{{{self.topic}}}"

    @property
    def stream(self) -> str:
        return f"{self.tag}:stream"

    @property
    def delayed(self) -> str:
        """Events published with a delay, added to the stream (for every group) when due."""
        return f"{self.tag}:delayed"

    def group(self, group: str, what: str) -> str:
        """Key `what` (retry, delayed, dlq, stats) of subscriber group `group`."""
        return f"{self.tag}:group:{group}:{what}"


@dataclass(frozen=True)
class Source:
    """A stream as one consumer group reads it, with the keys its outcomes go to.

    A queue is one source: its stream read by the group `workers`; entries are deleted once
    acknowledged, so the stream holds only backlog and in-flight work. A topic's subscriber
    group is two sources: the topic stream (kept for every group until retention trims it)
    and the group's own retry stream, where its retries and replays arrive, so that they
    reach that group only. Everything else — acks, retries, dead letters — is one code path.
    """

    name: str
    """What logs and tools call it: the queue, or "topic/group"."""
    stream: str
    group: str
    delayed: str
    dead_letters: str
    stats: str
    ready: str
    """The stream that due delayed messages, retries and replays are added to."""
    deletes_on_ack: bool = True
    topic: str | None = None
    """The topic, for a subscriber group's sources."""
    start: str = "0"
    """Where a new consumer group starts: "0" (every retained entry) or "$" (new ones only)."""
    namespace: str = "sw"
    tracks_status: bool = True
    """Whether its messages have a status hash (queues of an App with track_status)."""
    events_max_len: int = 0
    """The cap of the queue's event stream; 0: it records no events."""
    band: str | None = None
    """The priority band it is (high, default, low) of a queue with bands; None: no bands."""
    partition: int | None = None
    """Which partition of a partitioned queue it is (its name is then `QUEUE~N`)."""
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Sources key the worker's per-message dicts: hash the two fields that tell them
        # apart (a stream, as one group reads it), once.
        object.__setattr__(self, "_hash", hash((self.stream, self.group)))

    @property
    def queue(self) -> str:
        """The queue as users name it: a partition's queue, else `name`."""
        return base_queue(self.name) if self.partition is not None else self.name

    @property
    def order_prefix(self) -> str:
        """Where the per-key order of a queue's keyed messages is kept (`send_with(
        partition_key=...)`): `PREFIX order:KEY` lists the ids of the key not finished, in
        send order; `PREFIX turn:KEY` holds (id -> body) those read before their turn.
        Empty for topics (events have no per-key order)."""
        return "" if self.topic is not None else f"{self.namespace}:{{{self.name}}}:"

    @property
    def workers(self) -> str:
        """A sorted set beside `stats`: the worker processes (consumer names) serving the
        queue or subscriber group, each scored by when its last heartbeat lapses (Unix ms).
        Live workers are those scored after now, whether or not anything came to read."""
        return f"{self.stats.rpartition(':')[0]}:workers"

    @property
    def events(self) -> str:
        """The event stream of the queue, or of the topic's subscriber group (written only
        when `events_max_len` > 0)."""
        return events_stream(self.namespace, self.name)

    def status(self, task_id: str) -> str | None:
        """The status hash of message `task_id` read from this source (None for topics:
        events have no per-message status; and when the app does not track status)."""
        if self.topic is not None or not self.tracks_status:
            return None
        return f"{self.namespace}:{{{self.name}}}:status:{task_id}"

    def result(self, task_id: str) -> str:
        """The result list of message `task_id` read from this queue (store_result tasks),
        in the queue's slot: wherever the message was sent, its result is where it ran."""
        return f"{self.namespace}:{{{self.name}}}:result:{task_id}"

    def limit(self, kind: str, task: str) -> str:
        """A flow-control key of the task (or of the subscriber group) read from here:
        `rate` (GCRA: when the next start is allowed), `slots` (a set: the entries running
        under a concurrency limit), `held` (a list: messages waiting for a slot). Both
        sources of a subscriber group share them."""
        if self.topic is not None:
            return TopicKeys(self.namespace, self.topic).group(self.group, kind)
        return f"{self.namespace}:{{{self.name}}}:{kind}:{task}"

    def __hash__(self) -> int:
        return self._hash

    def __setstate__(self, state: dict[str, Any]) -> None:
        # unpickled in another process: str hashes differ there, so hash again
        self.__dict__.update(state)
        object.__setattr__(self, "_hash", hash((self.stream, self.group)))


def queue_source(
    namespace: str,
    queue: str,
    *,
    tracks_status: bool = True,
    events_max_len: int = 0,
    band: str | None = None,
    partition: int | None = None,
) -> Source:
    """How workers read `queue` — or one priority band of it, or one partition (`queue` is
    then the partition's internal name): its own stream and delayed set, the queue's dead
    letters, stats, statuses and events."""
    keys = QueueKeys(namespace, queue)
    stream = keys.band_stream(band or "default")
    return Source(
        tracks_status=tracks_status,
        events_max_len=events_max_len if tracks_status else 0,
        name=queue,
        stream=stream,
        group=QUEUE_GROUP,
        delayed=keys.band_delayed(band or "default"),
        dead_letters=keys.dead_letters,
        stats=keys.stats,
        ready=stream,
        namespace=namespace,
        band=band,
        partition=partition,
    )


def topic_sources(
    namespace: str,
    topic: str,
    group: str,
    *,
    from_beginning: bool = False,
    events_max_len: int = 0,
) -> tuple[Source, Source]:
    """The topic stream and the group's retry stream, as subscriber group `group` reads them.

    A group created now starts with new events, or `from_beginning` with the oldest kept.
    """
    keys = TopicKeys(namespace, topic)
    retry = keys.group(group, "retry")
    shared: dict[str, Any] = {
        "name": f"{topic}/{group}",
        "group": group,
        "delayed": keys.group(group, "delayed"),
        "dead_letters": keys.group(group, "dlq"),
        "stats": keys.group(group, "stats"),
        "ready": retry,
        "topic": topic,
        "namespace": namespace,
        "events_max_len": events_max_len,
    }
    return (
        Source(
            stream=keys.stream,
            deletes_on_ack=False,
            start="0" if from_beginning else "$",
            **shared,
        ),
        Source(stream=retry, deletes_on_ack=True, **shared),
    )


def registry_of(namespace: str, source: Source) -> str:
    """The registry set that lists the source's queue or topic."""
    return topic_registry(namespace) if source.topic else queue_registry(namespace)
