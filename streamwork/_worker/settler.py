"""Settler: writes run outcomes with their XACKs, many per script call.

Outcomes are buffered per source and written by one background flush: while a write is
in flight the next batch gathers, so a busy worker makes one settle call for many
messages and an idle one adds no delay. An outcome the script reports as not owned is
"lost ownership": another worker holds the entry now, or it is in no pending list any more
(another worker finished it, or the stream was wiped), so it is dropped and counted. If
Redis is unreachable, outcomes stay buffered and are retried; their entries stay pending
in Redis meanwhile, so a crash loses nothing (they are delivered again). The outcome of a
workflow child is recorded in its workflow before its XACK is written (_workflows/recorder.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .._base import metrics, protocol, tracing
from .._base.keys import Source
from .._redis.errors import Outage
from .._redis.scripts import Scripts
from .runs import Outcome

log = logging.getLogger("streamwork.settler")

COUNTED_WHEN_DECIDED = frozenset(("cancelled", "held", "wait", "turn"))
"""Outcomes whose metrics are counted when decided, not when written."""

MAX_PER_CALL = 500
"""The most outcomes one settle script call writes (keeps each call short for Redis)."""


class Settler:
    """Buffers the outcomes of one worker process and writes them, with their XACKs, in
    batches of at most MAX_PER_CALL per source; `stop()` writes what is left."""

    def __init__(
        self,
        client: Any,
        scripts: Scripts,
        consumer: str,
        result_ttl: float,
        on_retry: Callable[[int], None] = lambda due_ms: None,
        on_written: Callable[[Source, Outcome], None] | None = None,
        status_ttl_ms: int = 86_400_000,
        record: Callable[[Sequence[Outcome]], Awaitable[None]] | None = None,
        after_write: Callable[[Source, Sequence[Outcome]], Awaitable[None]] | None = None,
        outage: Outage | None = None,
        server: Mapping[str, Any] | None = None,
    ) -> None:
        self._server = server or {}
        """server.address/port for the settle spans."""
        self._outage = outage or Outage("")
        """Where a lost Redis is told (one warning per process, not one per retry)."""
        self._record = record
        """Records the steps of workflow children, before their outcomes are written."""
        self._after_write = after_write
        """Told of outcomes written (frees concurrency slots); its errors are logged only."""
        self._on_written = on_written
        self._status_ttl_ms = status_ttl_ms
        self._client = client
        self._on_retry = on_retry
        self._scripts = scripts
        self._consumer = consumer
        self._result_ttl_ms = int(result_ttl * 1000)
        self._buffer: dict[tuple[Source, bool], list[Outcome]] = defaultdict(list)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._is_stopping = False
        self.written = 0
        self.lost_ownership = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="streamwork-settler")

    def submit(self, source: Source, outcome: Outcome, is_pending: bool) -> None:
        """Buffer `outcome` for the next write (call on the event loop's thread)."""
        self._buffer[(source, is_pending)].append(outcome)
        self._idle.clear()
        self._wake.set()

    @property
    def is_idle(self) -> bool:
        return self._idle.is_set()

    async def drain(self) -> None:
        """Return once every submitted outcome is written (or dropped as lost)."""
        await self._idle.wait()

    async def stop(self, timeout: float = 10.0) -> None:
        """Write what is buffered (for at most `timeout` seconds), then stop the flush.

        Outcomes still unwritten then (Redis unreachable) are given up: their entries stay
        pending in Redis and are delivered again after the visibility timeout.
        """
        if self._buffer:
            self._wake.set()
            try:
                await asyncio.wait_for(self.drain(), timeout)
            except TimeoutError:
                log.error(
                    "gave up writing %d outcome(s); their entries run again after the "
                    "visibility timeout",
                    sum(len(outcomes) for outcomes in self._buffer.values()),
                )
        self._is_stopping = True
        self._wake.set()
        if self._task is not None:
            _, stuck = await asyncio.wait([self._task], timeout=timeout)
            for task in stuck:
                task.cancel()

    async def write(self, source: Source, outcomes: Sequence[Outcome], is_pending: bool) -> int:
        """Write up to MAX_PER_CALL `outcomes` in one call; returns how many were still owned."""
        if self._record is not None:
            await self._record(outcomes)  # before the XACK: see _workflows/__init__.py
        with tracing.settle_span(source, len(outcomes), self._server):
            flags = await self._scripts.settle(
                source,
                self._consumer,
                outcomes,
                is_pending=is_pending,
                result_ttl_ms=self._result_ttl_ms,
                status_ttl_ms=self._status_ttl_ms,
                now_ms=protocol.now_ms(),
            )
        owned = 0
        for outcome, flag in zip(outcomes, flags, strict=True):
            if flag == 1:
                owned += 1
                if outcome.kind in ("retry", "held"):
                    self._on_retry(outcome.due_ms)
                if outcome.kind != "ack":
                    if outcome.kind not in COUNTED_WHEN_DECIDED:
                        metrics.outcome_written(source, outcome.task, outcome.kind)
                    if self._on_written is not None:
                        self._on_written(source, outcome)
                continue
            self.lost_ownership += 1
            metrics.count_lost_ownership(source.name)
            if flag == -1:
                # Not pending at all: nothing in Redis says whether another worker finished
                # it after claiming it, or the stream was wiped; say both.
                log.warning(
                    "lost ownership of entry %s on %s: it disappeared from the pending list "
                    "(another worker claimed and finished it, or its stream or group was "
                    "deleted: FLUSHALL, DEL?), so this outcome (%s) is dropped",
                    outcome.entry_id.decode(),
                    source.name,
                    outcome.kind,
                )
                continue
            log.warning(
                "lost ownership of entry %s on %s: another worker claimed it, so this "
                "outcome (%s) is dropped",
                outcome.entry_id.decode(),
                source.name,
                outcome.kind,
            )
        self.written += owned
        metrics.flush()
        if self._after_write is not None:
            try:
                await self._after_write(source, outcomes)
            except Exception as exc:  # written already: never write them twice for this
                log.warning(
                    "after writing %d outcome(s) on %s: %s", len(outcomes), source.name, exc
                )
        return owned

    async def _flush_forever(self) -> None:
        failures = 0
        while not self._is_stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                key, outcomes = next(iter(self._buffer.items()))
                chunk, rest = outcomes[:MAX_PER_CALL], outcomes[MAX_PER_CALL:]
                if rest:
                    self._buffer[key] = rest
                else:
                    del self._buffer[key]
                try:
                    await self.write(key[0], chunk, key[1])
                    failures = 0
                    self._outage.back()
                except Exception as exc:
                    # Keep the outcomes: their entries stay pending in Redis until written.
                    self._buffer[key][:0] = chunk
                    failures += 1
                    delay = min(5.0, 0.05 * 2**failures)
                    writing = f"writing {len(chunk)} outcome(s) on {key[0].name}"
                    self._outage.failed(exc, writing, delay)
                    if self._is_stopping:
                        return
                    await asyncio.sleep(delay)
            self._idle.set()
