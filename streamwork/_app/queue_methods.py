"""The App's queues: declaring partitions, the keys and sources of each queue, purging,
and the connection's ping and close (a base class of App)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._base.handler import BANDS
from .._base.keys import (
    OrderKeys,
    QueueKeys,
    Source,
    check_name,
    check_queue,
    partition_name,
    partition_number,
    queue_source,
    topic_sources,
)
from .._redis import reads
from ..errors import ConfigurationError
from .parts import AppParts
from .task import Task

if TYPE_CHECKING:
    pass

DEFAULT_QUEUE = "default"


class QueueMethods(AppParts):
    """The App's queue calls (a base class of App)."""

    track_status: bool
    _partitions: dict[str, int]

    def queue(self, name: str, *, partitions: int = 1) -> None:
        """Declare queue `name`, which workers serve even when no task is declared on it
        (`send_with(queue=...)` routes single messages there), and how it is laid out:
        `partitions=N` spreads it over N streams,
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
        """The queues this app's tasks are declared on, in declaration order, then those
        declared with `app.queue`."""
        declared = [t.options.queue for t in self.tasks.values()]
        return list(dict.fromkeys([*declared, *self._partitions]))

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
