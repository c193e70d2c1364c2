"""Where a task's messages go: its queue's keys, the band a priority picks, the partition a
partition key (or the round robin) picks, the key a fair task's message waits under,
which partition a message id names, and a plain `send`'s message, sent by entry (a base
class of Task; what it needs of the Task is declared here).
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from .._base import protocol, tracing
from .._base.handler import HandlerOptions, check_priority
from .._base.keys import QueueKeys, check_queue, partition_name, partition_of_id, queue_registry
from .._send.producer import Destination, Producer
from ..errors import BadArguments, ConfigurationError


class Routing:
    """A task's destinations (a base class of Task)."""

    name: str
    options: HandlerOptions
    producer: Producer
    keys: QueueKeys
    destination: Destination
    _has_bands: Callable[[str], bool]
    _bands: dict[str, Destination]
    _partitions: Callable[[str], int]
    signature: inspect.Signature
    _queues: Callable[[], list[str]]
    _routes: dict[str, Destination]
    _partition_destinations: list[Destination]
    _turns: Iterator[int]

    def _destination_of(self, keys: QueueKeys, name: str | None = None) -> Destination:
        options = self.options
        return Destination(
            name=name or options.queue,  # a partition's sends count as its queue's
            registry=queue_registry(keys.namespace),
            stream=keys.stream,
            delayed=keys.delayed,
            dedupe_prefix=keys.dedupe(""),
            status_prefix=keys.status("") if self.producer.track_status else None,
            fair=None
            if options.fair is None
            else (keys.fair(self.name), options.fair.concurrency or 0),
            task=self.name,
            events=keys.events,
            order_prefix=keys.order_prefix,
            queue=keys.queue,
        )

    @property
    def partitions(self) -> int:
        """How many partitions the task's queue has (1: a plain queue)."""
        return self._partitions(self.options.queue)

    @property
    def home_queue(self) -> str:
        """Where messages that pick no partition go (a workflow's steps, a schedule's
        ticks): the task's queue, or partition 0 of a partitioned one."""
        if self.partitions == 1:
            return self.options.queue
        return partition_name(self.options.queue, 0)

    def partition_of(self, message_id: str) -> int | None:
        """The partition a message of this task was sent to, from its id (a message id on a
        partitioned queue ends in `-pN`; one without, e.g. a workflow's child, went to
        partition 0); None on a plain queue."""
        if self.partitions == 1:
            return None
        return partition_of_id(message_id)

    def keys_for(self, message_id: str) -> QueueKeys:
        """The keys of the queue (or partition) holding message `message_id`."""
        partition = self.partition_of(message_id)
        if partition is None:
            return self.keys
        return QueueKeys(self.keys.namespace, partition_name(self.options.queue, partition))

    def _partition_destination(self, partition: int) -> Destination:
        """Where a send to partition `partition` of the task's queue goes."""
        count = self.partitions
        if len(self._partition_destinations) != count:
            self._partition_destinations = [
                self._destination_of(
                    QueueKeys(self.keys.namespace, partition_name(self.options.queue, k))
                )
                for k in range(count)
            ]
        return self._partition_destinations[partition]

    def _choose_partition(self, partition_key: str | None) -> int | None:
        """The partition of a send: the key's (crc32), or the next round-robin; None on a
        plain queue."""
        count = self.partitions
        if count == 1:
            return None
        if partition_key is not None:
            return zlib.crc32(partition_key.encode()) % count
        return next(self._turns) % count

    def envelope(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> protocol.Envelope:
        raise NotImplementedError  # Task's: the envelope of one call, its arguments checked

    def plain_send(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Destination, bytes] | None:
        """`send(*args, **kwargs)` as a plain send by entry (ids.py) with nothing to plan —
        no fair key, deadline, partition or trace span to make: where it goes and its
        message (no id; checked); None: it takes the general path (`send_with`)."""
        options = self.options
        if options.fair or options.expires is not None or self.partitions > 1 or tracing.active():
            return None
        destination = self.destination_for(None)
        if not self.producer.sends_by_entry(destination):
            return None
        body = protocol.encode(self.envelope(args, kwargs), with_id=False)  # the entry's id
        limit = self.producer.max_message_bytes
        if len(body) > limit:
            protocol.check_size(body, limit, f"a message of task {self.name!r}")
        return destination, body

    def destination_for(self, priority: str | None, partition: int | None = None) -> Destination:
        """Where a send goes: the stream of its priority band (the task's own by default),
        or of partition `partition` of a partitioned queue."""
        if partition is not None:
            return self._partition_destination(partition)
        band = self.options.priority if priority is None else check_priority(priority)
        if band is None or band == "default":
            return self.destination
        found = self._bands.get(band)
        if found is None:
            if not self._has_bands(self.options.queue):
                raise ConfigurationError(
                    f"queue {self.options.queue!r} has no priority bands: declare a task on "
                    "it with priority= (e.g. priority='default') so workers read its bands"
                )
            found = self._bands[band] = replace(
                self.destination,
                stream=self.keys.band_stream(band),
                delayed=self.keys.band_delayed(band),
                band=band,
            )
        return found

    def routed_to(self, queue: str, priority: str | None) -> Destination | None:
        """Where a send with `queue=` goes (None: the task's own queue): another queue the
        app's workers serve, plain; a task with limits or fair_by keeps its own queue."""
        check_queue(queue)
        if queue == self.options.queue:
            return None
        known = self._queues()
        if queue not in known:
            raise ConfigurationError(
                f"unknown queue {queue!r}: this app's workers serve {', '.join(known)}; "
                f"declare it with app.queue({queue!r}) so they can serve it"
            )
        if priority is not None or self._partitions(queue) > 1 or self._has_bands(queue):
            raise ConfigurationError(
                f"send_with(queue={queue!r}) routes to a plain queue: not with priority=, and "
                "not to a partitioned queue or one with priority bands"
            )
        if self.options.is_limited or self.options.fair is not None:
            raise ConfigurationError(
                f"task {self.name!r} has a rate or concurrency limit or fair_by, kept on its "
                f"queue {self.options.queue!r}: its messages cannot be routed to another"
            )
        found = self._routes.get(queue)
        if found is None:
            keys = QueueKeys(self.keys.namespace, queue)
            found = self._routes[queue] = self._destination_of(keys, queue)
        return found

    def fair_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key a fair task's message waits under: its `fair_by` argument's value (or
        what the `fair_by` callable returns), as a string."""
        assert self.options.fair is not None
        by = self.options.fair.by
        if callable(by):
            value = by(*args, **kwargs)
        else:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            value = bound.arguments[by]
        key = value if isinstance(value, str) else str(value)
        if not key or len(key) > 200:
            raise BadArguments(
                f"{self.name}(): the fair_by key must be 1-200 characters, got {key!r}"
            )
        return key

    def _keyed(self, envelope: protocol.Envelope) -> tuple[protocol.Envelope, str]:
        """A fair task's checked envelope with its key in its headers, and the key."""
        key = self.fair_key(envelope.args, envelope.kwargs)
        return replace(envelope, headers={**envelope.headers, protocol.FAIR_KEY: key}), key
