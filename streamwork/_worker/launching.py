"""Launching runs: what one worker process does with the messages it fetched — prepare
each (decode, find its handler), admit them through the start step (cancelled, held back by
a rate or concurrency limit, waiting for their partition key's turn, or running), then start
each run: alone when it was redelivered, in batches for batch handlers, in chunks for sync
handlers. The Worker (worker.py) owns the session this works in and the clean stop; the
decisions are the Runner's (execution.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._base import metrics, protocol
from .._base.keys import Source
from .._base.settings import WorkerSettings
from .._redis import commands
from .._redis.errors import Outage, failure
from .._redis.scripts import Scripts
from .._schedules.ticker import Ticker
from .batching import Batches
from .decisions import WAITS_FOR_SLOT, cancelled_outcome, held_back, start_row
from .execution import Runner
from .fetcher import Fetcher
from .in_flight import InFlight
from .overrides import RateOverrides
from .recycling import RecyclePolicy
from .runs import Delivery, Outcome, Run, Submit
from .scanner import Scanner
from .settler import Settler

if TYPE_CHECKING:
    from .._app.app import App

log = logging.getLogger("streamwork.worker")


async def write_progress(
    scripts: Scripts,
    ttl_ms: int,
    worker: str,
    run: Run,
    fraction: float,
    note: str,
    data: bytes = b"",
) -> Any:
    """Write a running message's progress to its status (and its event): the Runner's
    `write_progress`, bound to a session's scripts, the app's status time to live and the
    worker's consumer name."""
    source = run.delivery.source
    assert run.status_key is not None  # progress is reported for queue messages only
    events = (source.events, source.events_max_len, run.envelope.id)
    now = protocol.now_ms()
    made = (run.task.name, worker, run.envelope.attempt)  # its status, if it has none
    return await scripts.progress(run.status_key, fraction, note, now, ttl_ms, events, data, made)


@dataclass
class Session:
    """Everything one `Worker.run` works with, built together when it starts."""

    client: Any
    threads: ThreadPoolExecutor
    in_flight: InFlight
    runner: Runner
    settler: Settler
    scanner: Scanner
    fetcher: Fetcher
    ticker: Ticker
    overrides: RateOverrides
    """The rate limits changed at run time (streamwork limits), read once a second."""
    scripts: Scripts
    start_scripts: Scripts
    """The scripts with the start step on a lane of its own (see lanes.py)."""
    isolation: asyncio.Task[None] | None = field(default=None)
    """The task running redelivered messages alone, while there are any."""
    batches: Batches | None = field(default=None)
    """The buffers of batch handlers (set once the session is built)."""


class Launching:
    """The Worker's running part (a base class of Worker): what it needs of the worker is
    declared here."""

    app: App
    settings: WorkerSettings
    consumer: str
    processed: int
    _outage: Outage
    _recycling: RecyclePolicy

    def recycle(self, reason: str) -> None:
        raise NotImplementedError  # the Worker's

    async def _dispatch(self, session: Session, deliveries: list[Delivery]) -> None:
        """Start a run for each delivery; entries that cannot run are dead-lettered."""
        prepared_runs: list[Run] = []
        for delivery in deliveries:
            prepared = session.runner.prepare(delivery)
            if isinstance(prepared, Outcome):
                session.settler.submit(delivery.source, prepared, True)
            else:
                prepared_runs.append(prepared)
        runs: list[Run] = []
        acked_on_receipt: dict[Source, list[Run]] = defaultdict(list)
        for run in await self._mark_started(session, prepared_runs):
            if run.task.options.ack_mode == "auto":
                acked_on_receipt[run.delivery.source].append(run)
            else:
                runs.append(run)
        for source, auto_runs in acked_on_receipt.items():
            # At-most-once: the XACK is written before any of these handlers starts.
            await session.settler.write(
                source, [Outcome("ack", r.delivery.entry_id) for r in auto_runs], True
            )
            for run in auto_runs:
                run.is_pending = False
            runs += auto_runs
        chunks: dict[str, list[Run]] = {}
        for run in runs:
            if run.delivery.delivery_count > 1:
                self._isolate(session, run)  # a batch handler's too: a batch of one
            elif run.task.options.batch is not None and session.batches is not None:
                session.batches.add(run)
            elif (size := session.runner.chunk_size(run)) > 1:
                chunk = chunks.setdefault(run.task.name, [])
                chunk.append(run)
                if len(chunk) >= size:
                    self._start_chunk(session, chunks.pop(run.task.name))
            else:
                self._start(session, run)
        for chunk in chunks.values():
            self._start_chunk(session, chunk)
        metrics.flush()

    async def _mark_started(self, session: Session, runs: list[Run]) -> list[Run]:
        """Admit queue messages in one start step per source: mark them running in their
        status (with their "started" event), hold back what a rate or concurrency limit
        does not allow now, settle those cancelled while queued as cancelled, unrun.
        Returns the runs to start, in the order they were read. If Redis fails here, none
        of a source's start: their entries stay pending and are delivered again after the
        visibility timeout."""
        by_source: dict[Source, list[Run]] = defaultdict(list)
        starting: list[Run] = []
        unmarked: dict[Source, list[Run]] = defaultdict(list)
        for run in runs:
            plain = (
                not run.task.options.is_limited
                and not session.overrides.limits(run.task)
                and not (run.envelope.headers and protocol.PARTITION_KEY in run.envelope.headers)
            )
            if plain and run.status_key is None:
                starting.append(run)
                if run.delivery.source.events_max_len:
                    unmarked[run.delivery.source].append(run)
            elif (
                plain
                and (run.by_entry or protocol.RECORDED in run.delivery.fields)
                and not run.delivery.source.events_max_len
                and run.task.options.ack_mode != "auto"  # acked on receipt: not pending
            ):
                run.recorded = True
                starting.append(run)  # recorded: nothing to write until its outcome
            else:
                by_source[run.delivery.source].append(run)
        for source, started in unmarked.items():  # a subscriber group's events: no status
            await self._started_events(session, source, started)
        for source, marked in by_source.items():
            replies = await self._start_step(session, source, marked)
            if replies is None:
                continue  # stopping with Redis away: they stay pending, delivered again
            for run, reply in zip(marked, replies, strict=True):
                if reply == 0:
                    starting.append(run.admitted())
                elif isinstance(reply, int):
                    held = source.limit("held", run.task.name) if reply == WAITS_FOR_SLOT else None
                    session.settler.submit(source, held_back(run, reply, held), True)
                else:
                    reason = reply.decode() if isinstance(reply, bytes) else str(reply)
                    outcome = cancelled_outcome(run, run.status_key, reason)
                    session.settler.submit(source, outcome, True)
        if not by_source:
            return starting  # each admitted as it came
        admitted = {id(run) for run in starting}  # in the order read, start step or not
        return [run for run in runs if id(run) in admitted]

    async def _start_step(self, session: Session, source: Source, runs: list[Run]) -> Any:
        """The start step's replies for `runs`, retried with backoff while Redis is away
        (their entries are this worker's, pending); None if the worker stops first."""
        failures = 0
        rows = [start_row(source, run, session.overrides.rate_of(run.task)) for run in runs]
        while True:
            try:
                return await session.start_scripts.start(
                    source,
                    rows,
                    self.consumer,
                    protocol.now_ms(),
                    self.app.status_ttl_ms,
                    int(self.settings.visibility_timeout * 1000),
                    protocol.clock_offset_ms(),
                )
            except Exception as exc:
                if session.in_flight.is_stopping:
                    log.error(
                        "cannot mark %d message(s) of %s running (%s); stopping: they stay "
                        "pending and are delivered again after the visibility timeout",
                        len(runs),
                        source.name,
                        failure(exc),
                    )
                    return None
                failures += 1
                pause = min(5.0, 0.05 * 2**failures)
                marking = f"marking {len(runs)} message(s) of {source.name} running"
                self._outage.failed(exc, marking, pause)
                await asyncio.sleep(pause)

    async def _started_events(self, session: Session, source: Source, runs: list[Run]) -> None:
        now = protocol.now_ms()
        events = [
            {
                "event": "started",
                "id": run.envelope.id,
                "task": run.task.name,
                "attempt": run.envelope.attempt,
                "time": now,
                "worker": self.consumer,
            }
            for run in runs
        ]
        try:
            await commands.add_events(session.client, source.events, source.events_max_len, events)
        except Exception as exc:  # an event is not worth holding the runs back for
            log.warning("cannot record %d started event(s) on %s: %s", len(runs), source.name, exc)

    def _start(self, session: Session, run: Run) -> asyncio.Task[None]:
        task = asyncio.create_task(self._execute(session, run))
        session.in_flight.tasks.add(task)
        session.in_flight.runs[task] = run
        if run.is_pending:
            session.in_flight.lease(run.delivery.source, run.delivery.entry_id)
        return task

    def _start_batch(self, session: Session, runs: list[Run]) -> None:
        task = asyncio.create_task(self._execute_batch(session, runs, session.runner.run_batch))
        session.in_flight.tasks.add(task)
        session.in_flight.batch_runs[task] = runs

    def _start_chunk(self, session: Session, runs: list[Run]) -> None:
        """Run short handlers' messages one after another — sync ones in one pool thread,
        async ones in one asyncio task: one hand-off for several messages (counted in
        flight like a batch's messages)."""
        in_flight = session.in_flight
        in_flight.batched += len(runs)
        for run in runs:
            if run.is_pending:
                in_flight.lease(run.delivery.source, run.delivery.entry_id)
        task = asyncio.create_task(self._execute_batch(session, runs, session.runner.run_chunk))
        in_flight.tasks.add(task)
        in_flight.batch_runs[task] = runs

    async def _execute_batch(
        self,
        session: Session,
        runs: list[Run],
        execute: Callable[[list[Run], Submit], Awaitable[list[tuple[Run, Outcome | None]]]],
    ) -> None:
        """Run several messages in one asyncio task (a batch handler's batch, or a chunk of
        short sync handlers' messages) and hand each outcome to the settler."""
        in_flight = session.in_flight
        try:
            for run, outcome in await execute(runs, session.settler.submit):
                if outcome is not None:
                    session.settler.submit(run.delivery.source, outcome, run.is_pending)
        except Exception:
            log.exception(
                "internal error running a batch of %d %s message(s); their entries stay "
                "pending and are delivered again after the visibility timeout",
                len(runs),
                runs[0].task.name,
            )
        finally:
            self.processed += len(runs)
            task = asyncio.current_task()
            if task is not None:
                in_flight.tasks.discard(task)
                in_flight.batch_runs.pop(task, None)
            in_flight.batched -= len(runs)
            for run in runs:
                in_flight.release(run.delivery.source, run.delivery.entry_id)
            in_flight.wake()
            reason = self._recycling.reason(self.processed, session.runner.timed_out_threads)
            if reason is not None:
                self.recycle(reason)

    def _isolate(self, session: Session, run: Run) -> None:
        """Queue a redelivered run to run alone in this process.

        A redelivered entry's last delivery ended without an outcome: its worker died (a
        crash, an OOM kill, os._exit) or froze. If the message itself is what kills
        workers, running it alone means it takes no neighbour down with it: a poison
        message costs the messages running beside it at most one re-run (the first crash).
        """
        session.in_flight.isolated.append(run)
        session.in_flight.lease(run.delivery.source, run.delivery.entry_id)  # renewed meanwhile
        if session.isolation is None or session.isolation.done():
            session.isolation = asyncio.create_task(
                self._run_isolated(session), name="streamwork-isolated"
            )

    async def _run_isolated(self, session: Session) -> None:
        in_flight = session.in_flight
        in_flight.is_isolating = True
        try:
            while in_flight.isolated and not in_flight.is_stopping:
                while in_flight.tasks and not in_flight.is_stopping:  # nothing new starts
                    await in_flight.wait()
                if in_flight.is_stopping:
                    break
                run = in_flight.isolated.popleft()
                log.warning(
                    "running redelivered entry %s on %s (task %s, delivery %d) alone: its "
                    "last delivery ended without an outcome (its worker died?)",
                    run.delivery.entry_id.decode(),
                    run.delivery.source.name,
                    run.envelope.task or run.delivery.source.name,
                    run.delivery.delivery_count,
                )
                await asyncio.wait([self._start(session, run)])
            for left in in_flight.isolated:  # stopping: they stay pending, claimed later
                in_flight.release(left.delivery.source, left.delivery.entry_id)
            in_flight.isolated.clear()
        finally:
            in_flight.is_isolating = False
            in_flight.wake()

    async def _execute(self, session: Session, run: Run) -> None:
        source = run.delivery.source
        try:
            outcome = await session.runner.run(run, session.settler.submit)
            if outcome is not None:
                session.settler.submit(source, outcome, run.is_pending)
        except Exception:
            log.exception(
                "internal error running task %s id %s; its entry stays pending and is "
                "delivered again after the visibility timeout",
                run.envelope.task,
                run.envelope.id,
            )
        finally:
            self.processed += 1
            task = asyncio.current_task()
            if task is not None:
                session.in_flight.tasks.discard(task)
                session.in_flight.runs.pop(task, None)
            session.in_flight.release(source, run.delivery.entry_id)
            session.in_flight.wake()
            reason = self._recycling.reason(self.processed, session.runner.timed_out_threads)
            if reason is not None:
                self.recycle(reason)
