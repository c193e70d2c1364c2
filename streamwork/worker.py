"""Worker: one process, one asyncio loop — fetch in batches, run within a bound, settle.

Owns the fetch loop (XREADGROUP BLOCK, one call per consumer group for all its streams),
the bound on messages in flight (`concurrency`), the thread pool for sync handlers, and a
clean stop: stop fetching, let running messages finish, write their outcomes. Deciding
outcomes (Runner), writing them (Settler) and recovery timers (Scanner) live in their own
modules. Starting several processes and handling signals belongs to the CLI/supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis.asyncio.cluster
import redis.exceptions
from redis.crc import key_slot

from . import connection, redis_ops
from .errors import ConfigurationError
from .execution import Delivery, Outcome, Run, Runner
from .keys import Source, registry_of
from .redis_ops import Scripts
from .scanner import Scanner
from .settings import WorkerSettings
from .settler import Settler

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger(__name__)

TRANSIENT = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # A cluster resharding or failing over: redis-py retried already; wait and read again.
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.AskError,
)
"""Errors a fetch loop waits out with backoff instead of stopping the worker."""

BURST_BLOCK = 0.1
"""How long a burst worker's reads wait: it exits soon after the queues are found drained."""


def resident_memory_mb() -> float:
    """This process's resident memory in MiB (Linux /proc; elsewhere the peak from rusage)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _choose(
    kind: str, asked: Sequence[str] | None, declared: list[str], is_everything: bool, verb: str
) -> list[str]:
    if is_everything:
        return declared
    chosen = list(dict.fromkeys(asked or ()))
    unknown = [name for name in chosen if name not in declared]
    if unknown:
        raise ConfigurationError(
            f"unknown {kind} {unknown[0]!r}: this app's {verb} {', '.join(declared) or 'none'}"
        )
    return chosen


def consumer_name() -> str:
    """A name unique to this process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Worker:
    """Runs the tasks and subscribers of `app`.

    By default it serves every queue the app's tasks use and every topic its subscribers
    read; given `queues` or `topics`, only those.
    """

    def __init__(
        self,
        app: App,
        queues: Sequence[str] | None = None,
        settings: WorkerSettings | None = None,
        topics: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or WorkerSettings()
        is_everything = not queues and not topics
        chosen_queues = _choose("queue", queues, app.queues(), is_everything, "tasks use")
        chosen_topics = _choose("topic", topics, app.topics(), is_everything, "subscribers read")
        if not chosen_queues and not chosen_topics:
            raise ConfigurationError(
                "the app declares no tasks or subscribers, so there is nothing to serve"
            )
        self.sources = [app.queue_source(q) for q in chosen_queues]
        for (topic, _), subscriber in app.subscribers.items():
            if topic in chosen_topics:
                self.sources += subscriber.sources
        self.topics = chosen_topics
        self.consumer = consumer_name()
        self._leased: dict[Source, set[bytes]] = defaultdict(set)
        """Entries running under a lease (late and manual ack modes), renewed by the scanner."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._isolated: deque[Run] = deque()
        """Redelivered runs waiting to run alone (see `_isolate`)."""
        self._isolation: asyncio.Task[None] | None = None
        self._slot_free: asyncio.Event | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.settler: Settler | None = None
        self.scanner: Scanner | None = None
        self.runner: Runner | None = None
        self.processed = 0
        self._memory_checked = 0.0
        self.recycle_reason: str | None = None
        self._warn_persistence = True
        self._left_behind = ""
        """Why the worker stopped itself to be restarted (max tasks, memory, stuck thread)."""

    @property
    def in_flight(self) -> int:
        """Messages running now."""
        return len(self._tasks)

    @property
    def is_stopping(self) -> bool:
        return self._stopping

    @property
    def queues(self) -> list[str]:
        return [s.name for s in self.sources if s.topic is None]

    @property
    def groups(self) -> list[str]:
        """The subscriber groups served, as "topic/group"."""
        return list(dict.fromkeys(s.name for s in self.sources if s.topic is not None))

    def stop(self) -> None:
        """Ask the worker to stop: no new fetches; running messages finish. Thread-safe."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._request_stop)
        else:
            self._stopping = True

    def recycle(self, reason: str) -> None:
        """Stop gracefully so that the supervisor starts a fresh process (call on the loop)."""
        if self.recycle_reason is None:
            self.recycle_reason = reason
            log.info("worker %s recycling: %s", self.consumer, reason)
        self._request_stop()

    def _request_stop(self) -> None:
        if self._slot_free is not None:
            self._slot_free.set()  # wake fetch loops waiting for a free slot
        if not self._stopping:
            log.info(
                "worker %s stopping: finishing %d running message(s)",
                self.consumer,
                self.in_flight,
            )
        self._stopping = True

    async def run(
        self,
        *,
        burst: bool = False,
        on_ready: Callable[[], Any] | None = None,
        warn_persistence: bool = True,
    ) -> None:
        """Fetch and run messages until `stop()` (or, with `burst`, until the queues drain).

        `on_ready` is called once the worker has checked Redis and starts fetching.
        `warn_persistence=False`: a supervisor warned already that Redis persists nothing.
        """
        self._warn_persistence = warn_persistence
        self._loop = asyncio.get_running_loop()
        self._slot_free = asyncio.Event()
        settings = self.settings
        is_started = False
        client = connection.async_client(self.app.url)
        scripts = Scripts(client)
        threads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="streamwork")
        self.runner = Runner(self.app.tasks, self.app.subscribers, self.consumer, threads)
        self.scanner = Scanner(
            client,
            scripts,
            self.consumer,
            self.sources,
            settings,
            running=lambda source: list(self._leased[source]),
            free_slots=self._free_slots,
            dispatch=self._dispatch,
            on_lost=self._on_lost,
            retention=self.app.retention_of,
        )
        self.settler = Settler(
            client, scripts, self.consumer, settings.result_ttl, self.scanner.expect_due
        )
        try:
            with connection.translate_errors(self.app.url):
                await self._prepare(client)
            is_started = True
            self.settler.start()
            self.scanner.start()
            log.info("worker %s serving %s", self.consumer, ", ".join(self.queues))
            if on_ready is not None:
                on_ready()
            await self._fetch_forever(client, burst)
        finally:
            await self._finish(client, threads, is_started)

    async def _prepare(self, client: Any) -> None:
        await client.ping()
        await self._check_durability(client)
        for source in self.sources:
            await redis_ops.ensure_group(client, source)
            registry = registry_of(self.app.namespace, source)
            await redis_ops.register(client, registry, source.topic or source.name)

    async def preflight(self) -> None:
        """Check Redis before starting processes: reachable, not evicting (raise if not)."""
        client = connection.async_client(self.app.url)
        try:
            with connection.translate_errors(self.app.url):
                await client.ping()
                await self._check_durability(client)
        finally:
            await client.aclose()

    async def _check_durability(self, client: Any) -> None:
        """Refuse a Redis that may evict queues; warn about one that persists nothing."""
        policy, persists = await redis_ops.durability(client)
        if policy != "noeviction":
            if not self.settings.allow_evicting_redis:
                raise ConfigurationError(
                    f"Redis maxmemory-policy is {policy}: under memory pressure Redis may "
                    "evict a queue's keys and lose work — set maxmemory-policy noeviction "
                    "(or start anyway with --allow-evicting-redis)"
                )
            log.warning("Redis maxmemory-policy is %s: queues may be evicted", policy)
        if persists is False and self._warn_persistence:
            log.warning(
                "Redis persists nothing (no AOF, no RDB snapshots): a Redis restart loses "
                "every queued message; enable appendonly yes with appendfsync everysec"
            )

    async def _finish(self, client: Any, threads: ThreadPoolExecutor, is_started: bool) -> None:
        if self._isolation is not None:
            await asyncio.wait([self._isolation], timeout=self.settings.grace)
        if self._tasks:
            _, cut_off = await asyncio.wait(set(self._tasks), timeout=self.settings.grace)
            if cut_off:
                log.warning(
                    "%d message(s) still running after the %.0fs grace period were cut off; "
                    "they stay pending and run again after the visibility timeout",
                    len(cut_off),
                    self.settings.grace,
                )
                for task in cut_off:
                    task.cancel()
                await asyncio.wait(cut_off, timeout=1)
        try:
            if is_started:
                assert self.settler is not None and self.scanner is not None
                await self.settler.stop()
                await self.scanner.stop()
                await self._leave_groups(client)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.error(
                "worker %s stopped without settling everything: %s (its entries stay "
                "pending and are recovered after the visibility timeout)",
                self.consumer,
                exc,
            )
        finally:
            threads.shutdown(wait=False, cancel_futures=True)
            await client.aclose()
        log.info(
            "worker %s stopped after %d message(s)%s",
            self.consumer,
            self.processed,
            self._left_behind,
        )

    async def _pending_elsewhere(self, client: Any) -> str:
        """What a drained burst worker leaves behind: entries pending in other consumers'
        hands (running elsewhere, or a dead worker's, not yet idle past the visibility
        timeout, so not claimable yet), as the end of its last log line."""
        count, longest_ms = 0, 0
        for source in self.sources:
            rows = await redis_ops.pending_entries(client, source, 100)
            others = [row for row in rows if row["consumer"].decode() != self.consumer]
            count += len(others)
            longest_ms = max([longest_ms, *(int(row["time_since_delivered"]) for row in others)])
        if not count:
            return "; nothing left pending"
        return (
            f"; left {count}{'+' if count >= 100 else ''} entr{'y' if count == 1 else 'ies'} "
            f"pending with other consumers (longest idle {longest_ms / 1000:.1f}s): running "
            "elsewhere, or a dead worker's, claimed by a worker once idle past the "
            f"{self.settings.visibility_timeout:g}s visibility timeout"
        )

    async def _leave_groups(self, client: Any) -> None:
        """Remove this consumer from its groups when it holds nothing pending."""
        for source in self.sources:
            try:
                if not await redis_ops.pending_of(client, source, self.consumer):
                    await redis_ops.remove_consumer(client, source, self.consumer)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The group is gone (FLUSHALL): nothing of this consumer is left to remove.

    # -- fetching ------------------------------------------------------------------------

    def _free_slots(self) -> int:
        if self._stopping or self._isolated or self.in_isolation:
            return 0
        return self.settings.concurrency - self.in_flight

    @property
    def in_isolation(self) -> bool:
        """Whether a redelivered message is running alone (or waiting to) in this process."""
        return bool(self._isolated) or (self._isolation is not None and not self._isolation.done())

    async def _fetch_forever(self, client: Any, burst: bool) -> None:
        """One fetch loop per consumer group (all queues share one), until stopped.

        On Redis Cluster, one XREADGROUP may only name streams of one slot, so there the
        loops are per group and slot (a queue's stream, or a topic and its group's retries).
        """
        is_cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        reads: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
        for source in self.sources:
            slot = key_slot(source.stream.encode()) if is_cluster else 0
            reads[(source.group, slot)][source.stream] = ">"
        self._idle_groups: set[tuple[str, int]] = set()
        self._is_done = False
        await asyncio.gather(
            *(
                self._fetch_group(client, read, streams, burst, len(reads))
                for read, streams in reads.items()
            )
        )

    async def _fetch_group(
        self,
        client: Any,
        read: tuple[str, int],
        streams: dict[str, str],
        burst: bool,
        n_groups: int,
    ) -> None:
        assert self._slot_free is not None  # set in run()
        group = read[0]
        by_stream = {
            s.stream.encode(): s for s in self.sources if s.group == group and s.stream in streams
        }
        # Never block past connection.MAX_BLOCK: the reply must come within the socket timeout.
        block = min(self.settings.block, BURST_BLOCK if burst else connection.MAX_BLOCK)
        block_ms = int(1000 * block)
        failures = 0
        while not self._stopping and not self._is_done:
            count = min(self.settings.batch_size, self._free_slots())
            if count <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                reply = await redis_ops.read(client, group, self.consumer, streams, count, block_ms)
                failures = 0
            except TRANSIENT as exc:
                failures += 1
                pause = min(10.0, 0.1 * 2**failures)
                log.error("%s; retrying in %.1fs", connection.describe(exc, self.app.url), pause)
                await asyncio.sleep(pause)
                continue
            except redis.exceptions.ResponseError as exc:
                # NOGROUP: the group is gone; UNBLOCKED: the stream was deleted while this
                # read waited on it (FLUSHALL, DEL). Either way: make them again, go on.
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                log.warning(
                    "consumer group %s or its stream is missing (deleted, FLUSHALL?); "
                    "creating it again",
                    group,
                )
                for source in by_stream.values():
                    await redis_ops.ensure_group(client, source)
                continue
            got_any = False
            for stream, entries in reply or ():
                got_any = got_any or bool(entries)
                source = by_stream[stream]
                await self._dispatch([Delivery(source, i, f) for i, f in entries])
            if not burst:
                continue
            if got_any:
                self._idle_groups.discard(read)
                continue
            self._idle_groups.add(read)
            if len(self._idle_groups) == n_groups and await self._is_drained():
                log.info("queues drained; burst worker exits")
                self._left_behind = await self._pending_elsewhere(client)
                self._is_done = True

    async def _is_drained(self) -> bool:
        """Nothing running, nothing to write, nothing due, nothing abandoned to claim."""
        assert self.settler is not None and self.scanner is not None
        if self.in_flight or self.in_isolation or not self.settler.is_idle:
            return False
        moved, _ = await self.scanner.move_due_now()
        claimed_before = self.scanner.claimed
        await self.scanner.claim_stale()
        return (
            moved == 0
            and self.scanner.claimed == claimed_before
            and self.in_flight == 0
            and self.settler.is_idle
        )

    # -- running -------------------------------------------------------------------------

    async def _dispatch(self, deliveries: list[Delivery]) -> None:
        """Start a run for each delivery; entries that cannot run are dead-lettered."""
        assert self.runner is not None and self.settler is not None
        runs: list[Run] = []
        acked_on_receipt: dict[Source, list[Run]] = defaultdict(list)
        for delivery in deliveries:
            prepared = self.runner.prepare(delivery)
            if isinstance(prepared, Outcome):
                self.settler.submit(delivery.source, prepared, True)
            elif prepared.task.options.ack_mode == "auto":
                acked_on_receipt[delivery.source].append(prepared)
            else:
                runs.append(prepared)
        for source, auto_runs in acked_on_receipt.items():
            # At-most-once: the XACK is written before any of these handlers starts.
            await self.settler.write(
                source, [Outcome("ack", r.delivery.entry_id) for r in auto_runs], True
            )
            for run in auto_runs:
                run.is_pending = False
            runs += auto_runs
        for run in runs:
            if run.delivery.delivery_count > 1:
                self._isolate(run)
            else:
                self._start(run)

    def _start(self, run: Run) -> asyncio.Task[None]:
        task = asyncio.create_task(self._execute(run))
        self._tasks.add(task)
        if run.is_pending:
            self._leased[run.delivery.source].add(run.delivery.entry_id)
        return task

    def _isolate(self, run: Run) -> None:
        """Queue a redelivered run to run alone in this process.

        A redelivered entry's last delivery ended without an outcome: its worker died (a
        crash, an OOM kill, os._exit) or froze. If the message itself is what kills
        workers, running it alone means it takes no neighbour down with it: a poison
        message costs the messages running beside it at most one re-run (the first crash).
        """
        self._isolated.append(run)
        self._leased[run.delivery.source].add(run.delivery.entry_id)  # keep its lease meanwhile
        if self._isolation is None or self._isolation.done():
            self._isolation = asyncio.create_task(self._run_isolated(), name="streamwork-isolated")

    async def _run_isolated(self) -> None:
        assert self._slot_free is not None  # set in run()
        while self._isolated and not self._stopping:
            run = self._isolated[0]
            while self.in_flight and not self._stopping:  # no fetch starts more meanwhile
                self._slot_free.clear()
                await self._slot_free.wait()
            if self._stopping:
                break
            self._isolated.popleft()
            log.warning(
                "running redelivered entry %s on %s (task %s, delivery %d) alone: its last "
                "delivery ended without an outcome (its worker died?)",
                run.delivery.entry_id.decode(),
                run.delivery.source.name,
                run.envelope.task or run.delivery.source.name,
                run.delivery.delivery_count,
            )
            await asyncio.wait([self._start(run)])
        for left in self._isolated:  # stopping: they stay pending, claimed again later
            self._leased[left.delivery.source].discard(left.delivery.entry_id)
        self._isolated.clear()
        self._slot_free.set()

    async def _execute(self, run: Run) -> None:
        assert self.runner is not None and self.settler is not None
        source = run.delivery.source
        try:
            outcome = await self.runner.run(run, self.settler.submit)
            if outcome is not None:
                self.settler.submit(source, outcome, run.is_pending)
        except Exception:
            log.exception(
                "internal error running task %s id %s; its entry stays pending and is "
                "delivered again after the visibility timeout",
                run.envelope.task,
                run.envelope.id,
            )
        finally:
            self.processed += 1
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            self._leased[source].discard(run.delivery.entry_id)
            if self._slot_free is not None:
                self._slot_free.set()
            self._check_recycle()

    def _check_recycle(self) -> None:
        """After a message: recycle past max_tasks, max memory, or a stuck sync handler."""
        limit = self.settings.max_tasks
        if limit is not None and self.processed >= limit:
            self.recycle(f"ran {self.processed} messages (max_tasks={limit})")
        elif self.runner is not None and self.runner.timed_out_threads:
            self.recycle("a sync handler is still running past its timeout")
        elif self.settings.max_memory_mb is not None:
            now = time.monotonic()
            if now - self._memory_checked < 1.0:  # reading /proc per message costs too much
                return
            self._memory_checked = now
            rss = resident_memory_mb()
            if rss > self.settings.max_memory_mb:
                self.recycle(
                    f"resident memory {rss:.0f} MiB is over "
                    f"max_memory_mb={self.settings.max_memory_mb:g}"
                )

    def _on_lost(self, source: Source, entry_ids: list[bytes]) -> None:
        for entry_id in entry_ids:
            if entry_id in self._leased[source]:
                self._leased[source].discard(entry_id)
                log.warning(
                    "lost the lease on entry %s on %s while running it (another worker "
                    "claimed it after this one paused past the visibility timeout, or the "
                    "entry was deleted); its outcome will be dropped",
                    entry_id.decode(),
                    source.name,
                )
