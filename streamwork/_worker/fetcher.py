"""Fetcher: the fetch loops of one worker process — XREADGROUP BLOCK, in batches.

One loop per consumer group, all its streams in one read; on Redis Cluster one per group and
slot, since one read may only name streams of one slot. A loop asks for no more entries than
there are free slots, waits out transient errors (Redis away, a cluster failing over) with
backoff, makes a deleted group or stream again (NOGROUP; UNBLOCKED after a FLUSHALL), and in
burst mode ends once every loop found nothing new and nothing is running, unwritten, due or
claimable, then says what other consumers still hold. It hands what it reads to
`dispatch`; it never runs a message and never writes an outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import redis.asyncio.cluster
import redis.exceptions
from redis.crc import key_slot

from .._base.handler import BANDS
from .._base.keys import Source
from .._base.settings import WorkerSettings
from .._redis import commands
from .._redis.connection import MAX_BLOCK
from .._redis.errors import CLUSTER_CHANGING, Outage, is_client_race, is_slot_moving
from .._redis.lanes import Lane, fields_of
from .._redis.scripts import Scripts
from .in_flight import InFlight
from .runs import Delivery
from .scanner import Scanner
from .settler import Settler

log = logging.getLogger("streamwork.fetcher")

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, *CLUSTER_CHANGING)
"""Errors a fetch loop waits out with backoff instead of stopping the worker."""


def is_missing_group(exc: BaseException) -> bool:
    """NOGROUP: the group is gone; UNBLOCKED: the stream was deleted while a read waited on
    it (FLUSHALL, DEL). Either way a fetch loop makes them again and reads on."""
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(
        ("NOGROUP", "UNBLOCKED")
    )


BURST_BLOCK = 0.1
"""How long a burst worker's reads wait: it exits soon after the queues are found drained."""


def _band_order(source: Source) -> int:
    return BANDS.index(source.band) if source.band is not None else 0


class Fetcher:
    """Reads entries for `sources` as `consumer` until stopped (or, in burst, drained)."""

    def __init__(
        self,
        client: Any,
        url: str,
        consumer: str,
        sources: Sequence[Source],
        settings: WorkerSettings,
        in_flight: InFlight,
        dispatch: Callable[[list[Delivery]], Awaitable[None]],
        writers: tuple[Settler, Scanner],
        fair: dict[str, list[tuple[str, int]]] | None = None,
        outage: Outage | None = None,
    ) -> None:
        self._outage = outage or Outage(url)
        """Where a lost Redis is told (one warning per process, not one per retry)."""
        self._fair = fair or {}
        """Per stream, the fair tasks fed into it before each read: (key prefix, limits)."""
        self._client = client
        self._url = url
        self._consumer = consumer
        self._sources = sources
        self._settings = settings
        self._in_flight = in_flight
        self._dispatch = dispatch
        self._settler, self._scanner = writers
        self._idle_reads: dict[tuple[str, int, str], int] = {}
        """The reads that came back empty (burst), each with the scanner's `requeued` count
        when its first empty read began."""
        self._scripts: Scripts | None = None
        self._block_ms = 0
        self.is_done = False
        """Set when a burst fetch found everything drained."""
        self.left_behind = ""
        """After a burst: what other consumers still hold, for the worker's last log line."""

    def reads(self) -> dict[tuple[str, int, str], dict[str, str]]:
        """The streams each loop reads, keyed by (group, slot, queue): slot 0 off a
        cluster; queue "" but for a queue with priority bands, which has a loop of its own
        (its bands are read highest first, in one step)."""
        is_cluster = isinstance(self._client, redis.asyncio.cluster.RedisCluster)
        reads: dict[tuple[str, int, str], dict[str, str]] = defaultdict(dict)
        for source in sorted(self._sources, key=_band_order):
            slot = key_slot(source.stream.encode()) if is_cluster else 0
            queue = source.name if source.band is not None else ""
            reads[(source.group, slot, queue)][source.stream] = ">"
        return reads

    async def run(self, burst: bool) -> None:
        """Every loop, until stopped (or, with `burst`, until the sources are drained)."""
        reads = self.reads()
        self._idle_reads = {}
        self.is_done = False
        await asyncio.gather(
            *(self._loop(read, streams, burst, len(reads)) for read, streams in reads.items())
        )

    async def _read(
        self, read: tuple[str, int, str], streams: dict[str, str], count: int, lane: Lane | None
    ) -> Any:
        """New entries for one loop: [[stream, [(entry id, fields)...]]...] or None."""
        group, _, banded = read
        block_ms = self._block_ms
        await self.feed(streams, count)
        if banded:
            raw = await self._get_scripts().read_bands(
                list(streams),  # highest band first
                group,
                self._consumer,
                count,
                int(self._settings.max_starvation * 1000),
            )
            if raw:
                return [
                    [raw[i], [(entry, fields_of(fields)) for entry, fields in raw[i + 1]]]
                    for i in range(0, len(raw), 2)
                ]
            count = 1  # nothing waits: block until any band has one, then read by band again
        if lane is not None:
            return await lane.read(group, self._consumer, streams, count, block_ms)
        return await commands.read(self._client, group, self._consumer, streams, count, block_ms)

    def _get_scripts(self) -> Scripts:
        if self._scripts is None:
            self._scripts = Scripts(self._client)
        return self._scripts

    async def feed(self, streams: Iterable[str], count: int) -> int:
        """Feed fair tasks' messages into `streams` (round-robin between their keys), as
        many as this worker is about to read; returns how many."""
        fed = 0
        for stream in streams:
            for prefix, concurrency in self._fair.get(stream, ()):
                fed += await self._get_scripts().fair_pull(stream, prefix, count, concurrency)
        return fed

    async def _loop(
        self, read: tuple[str, int, str], streams: dict[str, str], burst: bool, n_reads: int
    ) -> None:
        group = read[0]
        by_stream = {
            s.stream.encode(): s for s in self._sources if s.group == group and s.stream in streams
        }
        # Never block past MAX_BLOCK: the reply must come within the socket timeout.
        self._block_ms = int(1000 * min(self._settings.block, BURST_BLOCK if burst else MAX_BLOCK))
        in_flight = self._in_flight
        # A read asks for at most half the concurrency: the next read (and its start step)
        # goes to Redis while the handlers of this one run, instead of after them.
        per_read = min(self._settings.batch_size, max(1, -(-in_flight.concurrency // 2)))
        failures = 0
        lane = Lane.of(self._client)  # a connection of its own: its reads block
        is_missing = False
        while not in_flight.is_stopping and not self.is_done:
            requeued = self._scanner.requeued  # what the scanner had put back before this read
            count = min(per_read, in_flight.free_slots())
            if count <= 0:
                await in_flight.wait()
                continue
            try:
                if is_missing:  # made again here: a Redis still restarting is waited out
                    for source in by_stream.values():
                        await commands.ensure_group(self._client, source)
                    is_missing = False
                reply = await self._read(read, streams, count, lane)
                failures = 0
                self._outage.back()
            except Exception as exc:
                if is_missing_group(exc):
                    log.warning(
                        "consumer group %s or its stream is missing (deleted, FLUSHALL?); "
                        "creating it again",
                        group,
                    )
                    is_missing = True
                    continue
                if not (isinstance(exc, TRANSIENT) or is_slot_moving(exc) or is_client_race(exc)):
                    raise
                failures += 1
                pause = min(10.0, 0.1 * 2**failures)
                self._outage.failed(exc, "reading", pause)
                await asyncio.sleep(pause)
                continue
            got_any = False
            for stream, entries in reply or ():
                got_any = got_any or bool(entries)
                source = by_stream[stream]
                await self._dispatch([Delivery(source, i, f) for i, f in entries])
            if not burst:
                continue
            if got_any:
                self._idle_reads.pop(read, None)
                continue
            self._idle_reads.setdefault(read, requeued)
            if len(self._idle_reads) == n_reads and await self._is_drained():
                log.info("queues drained; burst worker exits")
                self.left_behind = await self._pending_elsewhere()
                self.is_done = True

    async def _is_drained(self) -> bool:
        """Nothing running, nothing to write, nothing due, nothing abandoned to claim."""
        in_flight, settler, scanner = self._in_flight, self._settler, self._scanner
        if in_flight.gathering and in_flight.flush_batches is not None:
            in_flight.flush_batches()  # nothing more is coming: no batch waits to fill
        if in_flight.tasks or in_flight.in_isolation or not settler.is_idle:
            return False
        since = min(self._idle_reads.values())  # the earliest idle read's start
        moved, _ = await scanner.move_due_now()
        released = await scanner.release_held_now()
        released += await self.feed(list(self._fair), max(1, in_flight.free_slots()))
        claimed_before = scanner.claimed
        await scanner.claim_stale()
        if scanner.requeued != since:  # the scanner put entries back after a read came empty
            self._idle_reads.clear()
            return False
        return (
            moved == 0
            and released == 0
            and scanner.claimed == claimed_before
            and not in_flight.tasks
            and not in_flight.in_isolation
            and settler.is_idle
        )

    async def _pending_elsewhere(self) -> str:
        """What a drained burst worker leaves behind: entries pending in other consumers'
        hands (running elsewhere, or a dead worker's, not yet idle past the visibility
        timeout, so not claimable yet), as the end of its last log line."""
        count, longest_ms = 0, 0
        for source in self._sources:
            rows = await commands.pending_entries(self._client, source, 100)
            others = [row for row in rows if row["consumer"].decode() != self._consumer]
            count += len(others)
            longest_ms = max([longest_ms, *(int(row["time_since_delivered"]) for row in others)])
        if not count:
            return "; nothing left pending"
        return (
            f"; left {count}{'+' if count >= 100 else ''} entr{'y' if count == 1 else 'ies'} "
            f"pending with other consumers (longest idle {longest_ms / 1000:.1f}s): running "
            "elsewhere, or a dead worker's, claimed by a worker once idle past the "
            f"{self._settings.visibility_timeout:g}s visibility timeout"
        )
