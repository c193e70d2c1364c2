"""Batches: gathering the messages of batch handlers (`batch_size=N, batch_wait=S`) into lists.

Owns the timing of each batch handler's buffer in one worker process: a run (already
admitted by the start step, its entry pending and leased) joins its handler's buffer; the
buffer is handed to `start` as one batch when it holds `batch_size` runs, when `batch_wait`
has passed since its first run joined, or at once when the worker stops or, in burst mode,
has drained its queues. Messages from several streams of one handler (priority bands, a
subscriber group's retries) share a buffer: each is settled on its own source.

It never runs a handler and never writes an outcome (the worker and the Runner do); the
buffers themselves are in InFlight, so the scanner renews their leases and sees their
cancellations like those of any message in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .in_flight import InFlight

if TYPE_CHECKING:
    from .runs import Run


def handler_key(run: Run) -> str:
    """Which buffer a run joins: its task, or its subscriber ("topic/group")."""
    source = run.delivery.source
    return source.name if source.topic is not None else f"task:{run.task.name}"


class Batches:
    def __init__(self, in_flight: InFlight, start: Callable[[list[Run]], None]) -> None:
        self._in_flight = in_flight
        self._start = start
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, run: Run) -> None:
        """Put `run` in its handler's buffer; start the batch if that fills it."""
        batch = run.task.options.batch
        assert batch is not None
        key = handler_key(run)
        buffer = self._in_flight.buffers.setdefault(key, [])
        buffer.append(run)
        self._in_flight.batched += 1
        if run.is_pending:
            self._in_flight.lease(run.delivery.source, run.delivery.entry_id)
        if len(buffer) >= batch.size or self._in_flight.is_stopping:
            self.flush(key)
        elif len(buffer) == 1:
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(batch.wait, self.flush, key)

    def flush(self, key: str) -> None:
        """Start the batch gathered in buffer `key` now (if it holds any run)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        runs = self._in_flight.buffers.pop(key, [])
        if runs:
            self._start(runs)

    def flush_all(self) -> None:
        """Start every gathered batch now: the worker stops, or a burst worker drained."""
        for key in list(self._in_flight.buffers):
            self.flush(key)
