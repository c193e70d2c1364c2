"""Worker: one process, one asyncio loop — fetch in batches, run within a bound, settle.

Owns what a run of one worker process is made of (a `Session`: the client, the thread pool
for sync handlers, the Runner, Settler, Scanner and Fetcher, and what is in flight), the
start of each message's run (alone, for a redelivered one), and a clean stop: stop fetching,
let running messages finish within the grace period, write their outcomes, leave the groups.
Fetching (fetcher.py), deciding outcomes (execution.py), writing them (settler.py), recovery
timers (scanner.py), what is in flight (in_flight.py), recycling (recycling.py) and the
checks on Redis (preflight.py) live in their own modules. Starting several processes and
handling signals belongs to the CLI and the supervisor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis.exceptions

from .._base import metrics, tracing
from .._base.handler import Handler
from .._base.keys import Source, partition_name, partitions_registry, registry_of
from .._base.settings import WorkerSettings
from .._redis import commands, connection, memory, reads
from .._redis.errors import Outage, translate_errors
from .._redis.lanes import Lane
from .._redis.preflight import check_durability, preflight
from .._redis.scripts import Scripts
from .._schedules.ticker import Ticker
from .._workflows.canvas import Sender
from .._workflows.recorder import Recorder
from .batching import Batches
from .execution import Runner
from .fetcher import Fetcher
from .in_flight import InFlight
from .launching import Launching, Session, write_progress
from .overrides import RateOverrides
from .recycling import RecyclePolicy
from .runs import Delivery, Outcome
from .scanner import Scanner
from .settler import Settler
from .sources import chosen_sources, consumer_name

if TYPE_CHECKING:
    from .._app.app import App

log = logging.getLogger("streamwork.worker")


PREPARE_TRIES = 4
"""How many times a worker checks Redis at start (0.2, 0.4, 0.8 s apart) before giving up."""


class Worker(Launching):
    """Runs the tasks and subscribers of `app`.

    By default it serves every queue the app's tasks use and every topic its subscribers
    read; given `queues` or `topics`, only those. `on_written` is told of every outcome
    written (done, retry, dead), `on_error` of every exception a handler raised other than
    Retry and Reject: testing.run_until_idle counts and re-raises with them.
    """

    def __init__(
        self,
        app: App,
        queues: Sequence[str] | None = None,
        settings: WorkerSettings | None = None,
        topics: Sequence[str] | None = None,
        *,
        on_written: Callable[[Source, Outcome], None] | None = None,
        on_error: Callable[[str, str, BaseException], None] | None = None,
    ) -> None:
        self.app = app
        self._on_written = on_written
        self._on_error = on_error
        self._outage = Outage(app.url)
        """How this process tells of a lost Redis: one warning, reminders, one "back"."""
        self.settings = settings or WorkerSettings()
        self.sources, self.topics = chosen_sources(app, queues, topics)
        self.consumer = consumer_name()
        self.session: Session | None = None
        """The collaborators of the current (or last) run; None before the first."""
        self._limited: list[tuple[Source, str, int]] = []
        """The concurrency-limited handlers served here (set per session)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recycling = RecyclePolicy(self.settings.max_tasks, self.settings.max_memory_mb)
        self._is_stop_asked = False
        self._stop_asked_at: float | None = None
        """time.monotonic() of the first stop request: the grace period counts from it."""
        self._cut_off_timer: asyncio.TimerHandle | None = None
        self.processed = 0
        self.recycle_reason: str | None = None
        """Why the worker stopped itself to be restarted (max tasks, memory, stuck thread)."""
        self._left_behind = ""

    @property
    def in_flight(self) -> int:
        """Messages running now."""
        return 0 if self.session is None else len(self.session.in_flight)

    @property
    def is_stopping(self) -> bool:
        return self._is_stop_asked

    @property
    def queues(self) -> list[str]:
        """The queues served (a partitioned queue once)."""
        return list(dict.fromkeys(s.queue for s in self.sources if s.topic is None))

    @property
    def queue_names(self) -> list[str]:
        """The names whose keys the worker reads: each queue, or each partition's
        (`orders~3`), where schedules and delayed messages wait."""
        return list(dict.fromkeys(s.name for s in self.sources if s.topic is None))

    @property
    def groups(self) -> list[str]:
        """The subscriber groups served, as "topic/group"."""
        return list(dict.fromkeys(s.name for s in self.sources if s.topic is not None))

    def stop(self) -> None:
        """Ask the worker to stop: no new fetches; running messages finish. Thread-safe."""
        if self._stop_asked_at is None:
            self._stop_asked_at = time.monotonic()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._request_stop)
        else:
            self._is_stop_asked = True

    def recycle(self, reason: str) -> None:
        """Stop gracefully so that the supervisor starts a fresh process (call on the loop)."""
        if self.recycle_reason is None:
            self.recycle_reason = reason
            log.info("worker %s recycling: %s", self.consumer, reason)
        self._request_stop()

    def _request_stop(self) -> None:
        if self._stop_asked_at is None:
            self._stop_asked_at = time.monotonic()
        if not self._is_stop_asked:
            log.info(
                "worker %s stopping: finishing %d running message(s)",
                self.consumer,
                self.in_flight,
            )
        self._is_stop_asked = True
        if self.session is not None and self._loop is not None and self._cut_off_timer is None:
            # Cut running messages off `grace` after the request, even while a fetch loop
            # still waits in a blocking read (the worker's own stop steps come after it).
            delay = max(0.0, self._grace_deadline() - time.monotonic())
            self._cut_off_timer = self._loop.call_later(delay, self._cut_off_running)
        if self.session is not None:
            self.session.in_flight.is_stopping = True
            if self.session.batches is not None:
                self.session.batches.flush_all()  # gathered messages run now, then it stops
            self.session.in_flight.wake()  # fetch loops waiting for a slot see the stop

    async def preflight(self) -> None:
        """Check Redis before starting processes: reachable, not evicting (raise if not)."""
        await preflight(self.app.url, self.settings.allow_evicting_redis)

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
        self._loop = asyncio.get_running_loop()
        session = self.session = self._session()
        session.in_flight.is_stopping = self._is_stop_asked
        is_started = False
        try:
            with translate_errors(self.app.url):
                await self._prepare_retrying(session, warn_persistence)
            is_started = True
            session.settler.start()
            session.scanner.start()
            log.info("worker %s serving %s", self.consumer, ", ".join(self.queues))
            if on_ready is not None:
                on_ready()
            await session.fetcher.run(burst)
            self._left_behind = session.fetcher.left_behind
        finally:
            await self._finish(session, is_started)

    def _session(self) -> Session:
        settings = self.settings
        tracing.refresh()  # a TracerProvider set before the worker starts traces its runs
        self._limited = self._concurrency_limited()
        client = connection.async_client(self.app.url)
        scripts = Scripts(client)
        threads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="streamwork")
        in_flight = InFlight(settings.concurrency, self._batch_room())

        async def dispatch(deliveries: list[Delivery]) -> None:
            await self._dispatch(session, deliveries)  # `session` is bound below

        ticker = Ticker(
            client,
            scripts,
            self.app.namespace,
            self.app.max_message_bytes,
            self.queue_names,
            status_ttl_ms=self.app.status_ttl_ms,
            events_cap=self.app.events_cap,
        )
        overrides = RateOverrides(client, self.app.namespace, self.app.tasks)
        scanner = Scanner(
            client,
            scripts,
            self.consumer,
            self.sources,
            settings,
            in_flight=in_flight,
            dispatch=dispatch,
            retention=self.app.retention_of,
            ticker=ticker if settings.schedules else None,
            release=functools.partial(self._release_all, scripts) if self._limited else None,
            outage=self._outage,
            overrides=overrides.refresh,
        )
        settler = self._settler(client, scripts, scanner)
        fetcher = Fetcher(
            client,
            self.app.url,
            self.consumer,
            self.sources,
            settings,
            in_flight,
            dispatch,
            (settler, scanner),
            self._fair_tasks(),
            self._outage,
        )
        session = Session(
            client=client,
            threads=threads,
            in_flight=in_flight,
            runner=Runner(
                self.app.tasks,
                self.app.subscribers,
                self.consumer,
                threads,
                self._on_error,
                write_progress=functools.partial(
                    write_progress, scripts, self.app.status_ttl_ms, self.consumer
                ),
                server=self.app.connection.server,
            ),
            settler=settler,
            scanner=scanner,
            fetcher=fetcher,
            ticker=ticker,
            overrides=overrides,
            scripts=scripts,
            start_scripts=scripts.on_lane(Lane.of(client)),
        )
        session.batches = Batches(in_flight, functools.partial(self._start_batch, session))
        in_flight.flush_batches = session.batches.flush_all
        return session

    def _settler(self, client: Any, scripts: Scripts, scanner: Scanner) -> Settler:
        """The session's settler: outcomes with their XACKs on a lane of their own, a
        workflow child's recorded (and what it releases sent) before its XACK."""
        app = self.app
        sender = Sender(
            app.namespace,
            app.status_ttl_ms if app.track_status else 0,
            app.events_cap,
            app.workflow_ttl_ms,
        )
        return Settler(
            client,
            scripts.on_lane(Lane.of(client)),
            self.consumer,
            self.settings.result_ttl,
            scanner.expect_due,
            self._on_written,
            status_ttl_ms=app.status_ttl_ms,
            record=Recorder(client, scripts, sender).record,
            after_write=functools.partial(self._released_by, scripts),
            outage=self._outage,
            server=app.connection.server,
        )

    def _batch_room(self) -> int:
        """One full batch per batch handler served: room on top of the concurrency."""
        handlers: list[Handler] = [
            task for task in self.app.tasks.values() if task.options.queue in self.queues
        ]
        handlers += [
            subscriber
            for (topic, _), subscriber in self.app.subscribers.items()
            if topic in self.topics
        ]
        return sum(h.options.batch.size for h in handlers if h.options.batch is not None)

    def _fair_tasks(self) -> dict[str, list[tuple[str, int]]]:
        """Per queue stream served here, its fair tasks: (key prefix, per-key concurrency)."""
        fair: dict[str, list[tuple[str, int]]] = {}
        streams = {source.stream for source in self.sources}
        for task in self.app.tasks.values():
            spec = task.destination.fair
            if spec is not None and task.destination.stream in streams:
                fair.setdefault(task.destination.stream, []).append(spec)
        return fair

    def _concurrency_limited(self) -> list[tuple[Source, str, int]]:
        """(source, handler name, limit) of each concurrency-limited handler served here
        (a subscriber group once: its two sources share the slots)."""
        found: dict[str, tuple[Source, str, int]] = {}
        for source in self.sources:
            if source.topic is None:
                handlers: list[Any] = [
                    t for t in self.app.tasks.values() if t.options.queue == source.queue
                ]
            else:
                subscriber = self.app.subscribers.get((source.topic, source.group))
                handlers = [] if subscriber is None else [subscriber]
            for handler in handlers:
                limit = handler.options.concurrency_limit
                if limit is not None:
                    found[source.limit("slots", handler.name)] = (source, handler.name, limit)
        return list(found.values())

    async def _release(self, scripts: Scripts, source: Source, name: str, limit: int) -> int:
        moved: int = await scripts.release_held(
            source,
            source.limit("slots", name),
            source.limit("held", name),
            limit,
            int(self.settings.visibility_timeout * 1000),
        )
        return moved

    async def _release_all(self, scripts: Scripts) -> int:
        """Send back held messages of every concurrency-limited handler with free slots."""
        moved = 0
        for source, name, limit in self._limited:
            moved += await self._release(scripts, source, name, limit)
        return moved

    async def _released_by(
        self, scripts: Scripts, source: Source, outcomes: Sequence[Outcome]
    ) -> None:
        """After outcomes of concurrency-limited handlers are written (each frees a slot,
        or adds a held message), send back as many held messages as slots are free."""
        if not self._limited:
            return
        names = {outcome.task for outcome in outcomes if outcome.kind != "ack"}
        for limited, name, limit in self._limited:
            if name in names and limited.limit("slots", name) == source.limit("slots", name):
                await self._release(scripts, source, name, limit)

    async def _prepare_retrying(self, session: Session, warn_persistence: bool) -> None:
        """`_prepare`, made again after a lost connection (one dropped or stale as the
        worker starts), up to PREPARE_TRIES times; a Redis still unreachable then ends the
        run with its error (a supervisor starts the process again)."""
        for tries in range(1, PREPARE_TRIES + 1):
            try:
                await self._prepare(session, warn_persistence)
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                if tries == PREPARE_TRIES or self._is_stop_asked:
                    raise
                pause = 0.1 * 2**tries
                self._outage.failed(exc, "checking Redis at start", pause)
                await asyncio.sleep(pause)

    async def _prepare(self, session: Session, warn_persistence: bool) -> None:
        client = session.client
        await reads.ping(client)
        if not memory.is_memory(self.app.url):  # in-process: never persists, never evicts
            await check_durability(client, self.settings.allow_evicting_redis, warn_persistence)
        for source in self.sources:
            await commands.ensure_group(client, source)
            registry = registry_of(self.app.namespace, source)
            await commands.register(client, registry, source.topic or source.queue)
        await session.overrides.refresh()  # before the first fetch: no run under a stale rate
        app = self.app
        partitioned = {q: app.partitions(q) for q in self.queues if app.partitions(q) > 1}
        if partitioned:  # for tools that read the queues without the app's code
            await commands.register_partitions(
                client, partitions_registry(app.namespace), partitioned
            )
        if self.settings.schedules:
            home = [partition_name(q, 0) for q in app.queues() if app.partitions(q) > 1]
            declared = list(app.declared_schedules.values())
            paused = {d.id: app.starts_paused(d.id) for d in declared}
            await session.ticker.reconcile(declared, [*app.queues(), *home], paused)

    def _grace_deadline(self) -> float:
        """When running messages are cut off: `grace` seconds after the stop request (or
        from now, for a burst worker that drained its queues)."""
        return (self._stop_asked_at or time.monotonic()) + self.settings.grace

    def _cut_off_running(self) -> list[asyncio.Task[None]]:
        """Cancel the runs still going at the end of the grace period; their entries stay
        pending and run again elsewhere after the visibility timeout."""
        if self.session is None:
            return []
        running = [task for task in self.session.in_flight.tasks if not task.done()]
        if running:
            log.warning(
                "%d message(s) still running after the %gs grace period were cut off; "
                "they stay pending and run again after the visibility timeout",
                len(running),
                self.settings.grace,
            )
            for task in running:
                task.cancel()
        return running

    async def _finish(self, session: Session, is_started: bool) -> None:
        deadline = self._grace_deadline()
        if session.batches is not None:
            session.batches.flush_all()
        if session.isolation is not None:
            await asyncio.wait([session.isolation], timeout=max(0.0, deadline - time.monotonic()))
        if session.in_flight.tasks:
            await asyncio.wait(
                set(session.in_flight.tasks), timeout=max(0.0, deadline - time.monotonic())
            )
            cut_off = self._cut_off_running()
            if cut_off:
                await asyncio.wait(cut_off, timeout=1)
        if self._cut_off_timer is not None:
            self._cut_off_timer.cancel()
            self._cut_off_timer = None
        try:
            if is_started:
                await session.settler.stop()
                await session.scanner.stop()
                await self._leave_groups(session.client)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.error(
                "worker %s stopped without settling everything: %s (its entries stay "
                "pending and are recovered after the visibility timeout)",
                self.consumer,
                exc,
            )
        finally:
            metrics.flush()
            session.threads.shutdown(wait=False, cancel_futures=True)
            await session.client.aclose()
        log.info(
            "worker %s stopped after %d message(s)%s",
            self.consumer,
            self.processed,
            self._left_behind,
        )

    async def _leave_groups(self, client: Any) -> None:
        """Stop saying it serves its sources (its heartbeat); remove this consumer from its
        groups when it holds nothing pending."""
        await commands.leave(client, sorted({s.workers for s in self.sources}), self.consumer)
        for source in self.sources:
            try:
                if not await commands.pending_of(client, source, self.consumer):
                    await commands.remove_consumer(client, source, self.consumer)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The group is gone (FLUSHALL): nothing of this consumer is left to remove.
