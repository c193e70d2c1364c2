"""InFlight: what one worker process is running now, and the bound on it.

Owns the asyncio tasks of running messages, the entries held under a lease (late and manual
ack modes; the scanner renews them), the redelivered runs waiting to run alone, the messages
of batch handlers (gathering in a buffer, or running as one batch: each counts as a message
in flight), and the event that wakes whoever waits for a free slot (fetch loops, the
isolated runner) or for a stop.
The fetcher and the scanner read it instead of calling back into the worker. It never
starts a run (the worker does) and never talks to Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._base.keys import Source

if TYPE_CHECKING:
    from .runs import Run

log = logging.getLogger("streamwork.in_flight")


class InFlight:
    """The running messages of one worker process, at most `concurrency` at once."""

    def __init__(self, concurrency: int, batch_room: int = 0) -> None:
        self.concurrency = concurrency
        self.batch_room = batch_room
        """Room for the messages of batch handlers on top of `concurrency`: one full batch
        per batch handler served (so a batch can fill whatever the concurrency)."""
        self.tasks: set[asyncio.Task[None]] = set()
        self.runs: dict[asyncio.Task[None], Run] = {}
        """The run each task runs (the scanner checks them for cancellations)."""
        self.batch_runs: dict[asyncio.Task[None], list[Run]] = {}
        """The runs of each task that runs several messages: a batch handler's batch, or a
        chunk of short sync handlers' messages run one after another in one pool thread."""
        self.buffers: dict[str, list[Run]] = {}
        """Per batch handler, the runs gathering for its next batch."""
        self.batched = 0
        """Messages in flight in a batch handler's buffer or running batch, or in a chunk."""
        self.flush_batches: Callable[[], None] | None = None
        """Starts every gathered batch now (a burst worker that drained its queues)."""
        self.leased: dict[Source, set[bytes]] = defaultdict(set)
        """Entries running (or waiting to run alone) under a lease, per source."""
        self.isolated: deque[Run] = deque()
        """Redelivered runs waiting to run alone (see Worker._isolate)."""
        self.is_isolating = False
        """A redelivered run is running alone: nothing else may start."""
        self.is_stopping = False
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        """Messages in flight (a running batch counts its messages)."""
        return len(self.tasks) - len(self.batch_runs) + self.batched

    def free_slots(self) -> int:
        """How many more messages may start now (0 while stopping or isolating)."""
        if self.is_stopping or self.isolated or self.is_isolating:
            return 0
        return self.concurrency + self.batch_room - len(self)

    def all_runs(self) -> list[Run]:
        """Every run in flight: running alone, in a running batch, or gathering for one."""
        found = list(self.runs.values())
        for runs in (*self.batch_runs.values(), *self.buffers.values()):
            found += runs
        return found

    @property
    def gathering(self) -> int:
        """Messages waiting in batch buffers (not running yet)."""
        return sum(len(runs) for runs in self.buffers.values())

    @property
    def in_isolation(self) -> bool:
        """Whether a redelivered message runs alone, or waits to."""
        return bool(self.isolated) or self.is_isolating

    def lease(self, source: Source, entry_id: bytes) -> None:
        self.leased[source].add(entry_id)

    def release(self, source: Source, entry_id: bytes) -> None:
        self.leased[source].discard(entry_id)

    def running(self, source: Source) -> list[bytes]:
        """The entries of `source` whose lease the scanner must renew."""
        return list(self.leased[source])

    def lose(self, source: Source, entry_ids: list[bytes]) -> None:
        """Entries the scanner found no longer ours: their outcomes will be dropped."""
        for entry_id in entry_ids:
            if entry_id in self.leased[source]:
                self.leased[source].discard(entry_id)
                log.warning(
                    "lost the lease on entry %s on %s while running it (another worker "
                    "claimed it after this one paused past the visibility timeout, or the "
                    "entry was deleted); its outcome will be dropped",
                    entry_id.decode(),
                    source.name,
                )

    def wake(self) -> None:
        """A slot was freed, or a stop asked for: wake everyone waiting."""
        self._changed.set()

    async def wait(self) -> None:
        """Until the next `wake()`."""
        self._changed.clear()
        await self._changed.wait()
