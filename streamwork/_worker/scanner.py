"""Scanner: the timers that keep delivery whole — claims, leases and delayed messages.

Five loops (six with schedules), each on its own timer, for every source a worker serves:
- claim: XAUTOCLAIM entries idle past the visibility timeout (their worker died or froze)
  and hand them to the worker to run again; entries deleted while pending are counted lost;
  consumers long idle with nothing pending (dead workers, emptied) leave the group.
- lease: renew the claim on entries this worker is still running, so a long task is never
  taken from a live worker (it renews only entries it still owns); and write the worker's
  heartbeat, which says which queues and groups it serves (stats count live workers by it).
- move: move due delayed messages and retries into the stream (one Lua step each time).
- trim: apply each served topic's retention, never dropping what a group has not read.
- cancel: every half second, look whether a running queue message was cancelled
  (`handle.cancel()`), and stop its run.
- tick: enqueue due schedule ticks (ticker.py), when the worker runs schedules.
It never runs a handler and never writes an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis.exceptions

from .._base import metrics, protocol
from .._base.keys import Source, TopicKeys
from .._base.settings import WorkerSettings
from .._redis import commands
from .._redis.errors import Outage
from .._redis.scripts import Scripts
from .in_flight import InFlight
from .runs import Delivery

if TYPE_CHECKING:
    from .._app.topic import Retention
    from .._schedules.ticker import Ticker

log = logging.getLogger("streamwork.scanner")

CANCEL_CHECK = 0.5
"""Seconds between two looks for cancellations of running messages: a cancelled async
handler stops within about this long."""
MOVE_LIMIT = 500
"""The most delayed messages one mover call moves."""
MAX_MOVE_WAIT = 0.5
"""The longest the mover sleeps: another process may add an earlier delayed message any time,
so a delayed message runs at most about this late."""


class Scanner:
    """Runs the claim, lease, move and trim loops of one worker process until `stop()`.

    A step that fails (Redis away, a group deleted) is logged and retried with backoff; a
    missing group is created again. Loops stop on a flag, never by cancellation.
    """

    def __init__(
        self,
        client: Any,
        scripts: Scripts,
        consumer: str,
        sources: Sequence[Source],
        settings: WorkerSettings,
        *,
        in_flight: InFlight,
        dispatch: Callable[[list[Delivery]], Awaitable[None]],
        retention: Callable[[str], Retention] | None = None,
        ticker: Ticker | None = None,
        release: Callable[[], Awaitable[int]] | None = None,
        outage: Outage | None = None,
        overrides: Callable[[], Awaitable[float]] | None = None,
    ) -> None:
        self._overrides = overrides
        """Reads the rate limit overrides again (streamwork limits); seconds to the next."""
        self._outage = outage or Outage("")
        """Where a lost Redis is told (one warning per process, not one per retry)."""
        self._release = release
        """Sends messages held for a concurrency slot back once slots are free."""
        self._client = client
        self._scripts = scripts
        self._consumer = consumer
        self._sources = sources
        self._settings = settings
        self._in_flight = in_flight
        self._dispatch = dispatch
        self._retention = retention
        self._ticker = ticker
        # Each delayed set once (a topic group's two sources share one), and for each topic
        # its delayed events, which go to the topic stream for every group.
        movers = {(s.delayed, s.ready) for s in sources}
        for source in sources:
            if source.topic is not None and not source.deletes_on_ack:
                movers.add((TopicKeys(source.namespace, source.topic).delayed, source.stream))
        self._movers = sorted(movers)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._wakes: dict[str, asyncio.Event] = {}
        self._next_move_ms = 0
        self._move_soon = asyncio.Event()
        self.claimed = 0
        self.requeued = 0
        """Entries this scanner put into the streams (due delayed messages, released held
        ones): a burst worker is drained only if none came since its reads found nothing."""
        self.deleted_while_pending = 0
        self.workers_keys = sorted({source.workers for source in sources})
        """The `workers` sets of the sources served: the lease loop's heartbeat goes there."""
        self.beats = 0

    def expect_due(self, due_ms: int) -> None:
        """Note a delayed message this process just wrote, so the mover wakes in time for it."""
        if due_ms < self._next_move_ms:
            self._move_soon.set()

    def start(self) -> None:
        self._stopping = False
        loops: dict[str, Callable[[], Awaitable[float]]] = {
            "move": self.move_due,
            "lease": self.renew_leases,
            "claim": self.claim_stale,
            "trim": self.trim_topics,
            "cancel": self.check_cancellations,
            "metrics": self.flush_metrics,
        }
        if self._ticker is not None:
            loops["tick"] = self._ticker.tick
        if self._release is not None:
            loops["release"] = self.release_held
        if self._overrides is not None:
            loops["limits"] = self._overrides
        self._wakes = {what: asyncio.Event() for what in loops}
        self._move_soon = self._wakes["move"]
        self._tasks = [
            asyncio.create_task(self._forever(step, what), name=f"streamwork-{what}")
            for what, step in loops.items()
        ]

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the loops after their current step (a step is not cut off mid-command)."""
        self._stopping = True
        for wake in self._wakes.values():
            wake.set()
        if not self._tasks:
            return
        _, stuck = await asyncio.wait(self._tasks, timeout=timeout)
        for task in stuck:
            task.cancel()
        self._tasks = []

    async def _forever(self, step: Callable[[], Any], what: str) -> None:
        # Stopped by a flag and an event, not by cancellation: a cancel that lands inside a
        # Redis client call can be lost, and the loop would then never end.
        wake = self._wakes[what]
        failures = 0
        is_group_missing = False
        while not self._stopping:
            wake.clear()  # before the step: a nudge during the step is kept
            try:
                if is_group_missing:  # deleted under us (FLUSHALL?): make the groups again
                    for source in self._sources:
                        await commands.ensure_group(self._client, source)
                    is_group_missing = False
                pause = await step()
                failures = 0  # (not "Redis is back": some steps may not have asked Redis)
            except Exception as exc:
                if isinstance(exc, redis.exceptions.ResponseError) and "NOGROUP" in str(exc):
                    log.warning("scanner %s: a consumer group is missing; creating it again", what)
                    is_group_missing = True
                    pause = 0.0
                else:
                    failures += 1
                    pause = min(10.0, 0.1 * 2**failures)
                    self._outage.failed(exc, f"running the scanner's {what} step", pause)
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), pause)

    async def flush_metrics(self) -> float:
        """Write the run counts not written yet by a dispatch or a settle (a run that ended
        without an outcome to write, say), once a second."""
        metrics.flush()
        return 1.0

    async def release_held(self) -> float:
        """Send back messages held for concurrency slots whose holders died (their entries
        idle past the visibility timeout); outcomes release the others at once."""
        await self.release_held_now()
        return self._settings.scan_seconds

    async def release_held_now(self) -> int:
        """How many held messages went back to be run (0 without concurrency limits)."""
        released = 0 if self._release is None else await self._release()
        self.requeued += released
        return released

    async def move_due(self) -> float:
        """Move due delayed messages of every source; returns seconds until the next is due."""
        return (await self.move_due_now())[1]

    async def move_due_now(self) -> tuple[int, float]:
        """Move due delayed messages of every source: (how many moved, seconds to the next)."""
        now = protocol.now_ms()
        wait = MAX_MOVE_WAIT
        total = 0
        for delayed, ready in self._movers:
            moved, next_due = await self._scripts.move_due(delayed, ready, now, MOVE_LIMIT)
            total += moved
            self.requeued += moved
            if moved >= MOVE_LIMIT:
                wait = 0.0
            elif next_due >= 0:
                wait = min(wait, max(0.005, (next_due - now) / 1000))
        self._next_move_ms = now + int(wait * 1000)
        return total, wait

    async def check_cancellations(self) -> float:
        """Stop the runs whose message was cancelled while running; seconds to the next look."""
        runs = [
            (run.status_key, run)
            for run in self._in_flight.all_runs()
            if run.cancel_reason is None and run.status_key is not None
        ]
        if runs:
            keys = [key for key, _ in runs if key is not None]
            replies = await commands.cancel_flags(self._client, keys)
            for (_, run), (flag, reason) in zip(runs, replies, strict=True):
                if flag == b"1":
                    run.request_cancel(reason.decode(errors="replace") if reason else "")
        return CANCEL_CHECK

    async def renew_leases(self) -> float:
        """Renew the lease of every entry this worker runs, report the ones it lost, and
        write its heartbeat (it serves its sources for one visibility timeout more: stats
        count it live, whether or not anything came to read). Leases first: a heartbeat
        that fails never keeps a lease from being renewed."""
        for source in self._sources:
            ids = self._in_flight.running(source)
            if not ids:
                continue
            lost = await self._scripts.renew_lease(source, self._consumer, ids)
            if lost:
                self._in_flight.lose(source, list(lost))
        now = protocol.now_ms()
        lapses = now + int(self._settings.visibility_timeout * 1000)
        await commands.beat(self._client, self.workers_keys, self._consumer, now, lapses)
        self.beats += 1
        return self._settings.lease_interval

    async def claim_stale(self) -> float:
        """Claim entries idle past the visibility timeout, as many as there are free slots."""
        min_idle_ms = int(self._settings.visibility_timeout * 1000)
        for source in self._sources:
            start = b"0-0"
            while (free := self._in_flight.free_slots()) > 0:
                start, entries, deleted = await commands.claim_stale(
                    self._client, source, self._consumer, min_idle_ms, start, free
                )
                if deleted:
                    self.deleted_while_pending += len(deleted)
                    metrics.count_lost_entries(source.name, len(deleted))
                    log.error(
                        "%d entr%s on %s were deleted from the stream while pending "
                        "(trimmed or XDEL'd outside streamwork): lost",
                        len(deleted),
                        "y" if len(deleted) == 1 else "ies",
                        source.name,
                    )
                entries = [(entry_id, fields) for entry_id, fields in entries if fields]
                if entries:
                    await self._hand_over(source, entries)
                if start in (b"0-0", "0-0"):
                    break
            removed = await self._scripts.remove_idle_consumers(
                source, int(self._settings.consumer_idle_seconds * 1000)
            )
            if removed:
                log.info(
                    "removed %d idle consumer(s) with nothing pending from %s: %s",
                    len(removed),
                    source.name,
                    ", ".join(n.decode() for n in removed),
                )
        return self._settings.scan_seconds

    async def trim_topics(self) -> float:
        """Apply each served topic's retention, never dropping what a group still needs."""
        if self._retention is None:
            return self._settings.scan_seconds
        topics = {s.topic: s.stream for s in self._sources if s.topic and not s.deletes_on_ack}
        for topic, stream in topics.items():
            retention = self._retention(topic)
            oldest_ms = None
            if retention.max_age is not None:
                oldest_ms = protocol.now_ms() - int(retention.max_age * 1000)
            trimmed, held, dropped = await self._scripts.trim_topic(
                stream, retention.max_len, oldest_ms, retention.drop_unread
            )
            metrics.record_retention(topic, held, dropped)
            if held:
                log.warning(
                    "topic %s: %d event(s) past retention are kept because a subscriber group "
                    "has not read or acknowledged them (is a group stopped or slow?)",
                    topic,
                    held,
                )
            if dropped:
                log.warning(
                    "topic %s: retention dropped %d event(s) not yet read by every group "
                    "(drop_unread=True)",
                    topic,
                    dropped,
                )
            if trimmed:
                log.debug("topic %s: retention trimmed %d event(s)", topic, trimmed)
        return self._settings.scan_seconds

    async def _hand_over(self, source: Source, entries: list[tuple[bytes, Any]]) -> None:
        counts = {
            row["message_id"]: row["times_delivered"]
            for row in await commands.pending_of(
                self._client, source, self._consumer, entries[0][0], entries[-1][0], len(entries)
            )
        }
        self.claimed += len(entries)
        log.warning(
            "claimed %d abandoned entr%s on %s (idle past the %gs visibility timeout)",
            len(entries),
            "y" if len(entries) == 1 else "ies",
            source.name,
            self._settings.visibility_timeout,
        )
        await self._dispatch(
            [
                Delivery(source, entry_id, fields, counts.get(entry_id, 2))
                for entry_id, fields in entries
            ]
        )
