"""Running an app's work in this process until nothing is left: `run_until_idle` and its twin.

Owns the loop a test uses instead of worker processes: a burst `Worker` in the caller's
thread (or, for `run_until_idle_async`, its event loop) runs every ready message of the
app's tasks and subscribers through the real worker code — decode, run, retry, dead-letter,
the same Lua scripts. With `advance_time`, the clock that due times are written and read
with (`protocol.now_ms`) then jumps to the next delayed message or retry and another round
runs: no real sleeping. It works on memory:// and on a real Redis alike. It never starts a
process and never changes what a message means.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._base import protocol
from .._base.keys import Source, TopicKeys
from .._base.settings import Duration, WorkerSettings, to_seconds
from .._redis import commands, memory
from .._schedules.ticker import Ticker
from .runs import Outcome
from .worker import Worker

if TYPE_CHECKING:
    from .._app.app import App

DEFAULT_MAX_ROUNDS = 100


@dataclass
class RunSummary:
    """What a `run_until_idle` ran: outcomes written, in total and per task."""

    done: int = 0
    retried: int = 0
    dead: int = 0
    by_task: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per task (or "topic/group"): {"done": n, "retry": n, "dead": n}."""
    rounds: int = 0
    """Burst runs made: one, plus one per jump of the clock."""
    ran: int = 0
    """Handler runs started (manual acks and messages still running at the end included)."""
    errors: list[BaseException] = field(default_factory=list, repr=False)
    """Exceptions handlers raised (other than Retry and Reject), in order: those of
    attempts that were retried included."""
    failures: list[BaseException] = field(default_factory=list, repr=False)
    """The exceptions that ended a message for good (dead-lettered or failed: no retry
    left, or not retryable), in order; what `raise_errors` raises the first of."""
    _raised: dict[str, BaseException] = field(default_factory=dict, repr=False)
    """The last exception of each message whose outcome is not written yet."""

    def _written(self, source: Source, outcome: Outcome) -> None:
        counts = self.by_task.setdefault(outcome.task, {"done": 0, "retry": 0, "dead": 0})
        counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
        if outcome.kind == "done":
            self.done += 1
        elif outcome.kind == "retry":
            self.retried += 1
        elif outcome.kind == "dead":
            self.dead += 1
        raised = self._raised.pop(outcome.message_id, None)
        if raised is not None and outcome.kind == "dead":
            self.failures.append(raised)

    def _failed(self, task: str, message_id: str, exc: BaseException) -> None:
        self.errors.append(exc)
        self._raised[message_id] = exc


def _worker(
    app: App,
    queues: Sequence[str] | None,
    topics: Sequence[str] | None,
    settings: WorkerSettings | None,
    summary: RunSummary,
) -> Worker:
    return Worker(
        app,
        queues,
        settings or WorkerSettings(block=0.05),
        topics,
        on_written=summary._written,
        on_error=summary._failed,
    )


def _delayed_sets(worker: Worker) -> list[str]:
    """Every delayed set the worker moves from: its sources' and their topics'."""
    keys = {source.delayed for source in worker.sources}
    for source in worker.sources:
        if source.topic is not None:
            keys.add(TopicKeys(source.namespace, source.topic).delayed)
    return sorted(keys)


def _earliest(replies: list[Any]) -> int | None:
    scores = [int(reply[0][1]) for reply in replies if reply]
    return min(scores) if scores else None


def _advance_to(due_ms: int) -> None:
    protocol.advance_clock(due_ms - protocol.now_ms() + 1)


def _finish(summary: RunSummary, raise_errors: bool) -> RunSummary:
    if raise_errors and summary.failures:
        raise summary.failures[0]  # with its original traceback
    return summary


def _too_many(max_rounds: int) -> RuntimeError:
    return RuntimeError(
        f"still not idle after {max_rounds} rounds: a task keeps scheduling more work "
        "(raise max_rounds, or send less)"
    )


def run_until_idle(
    app: App,
    *,
    queues: Sequence[str] | None = None,
    topics: Sequence[str] | None = None,
    advance_time: bool | Duration = False,
    raise_errors: bool = False,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    settings: WorkerSettings | None = None,
) -> RunSummary:
    """Run, in this thread, every ready message of the app's tasks and subscribers (or of
    `queues` / `topics`) and what they lead to, until nothing is ready; returns a summary.

    With `advance_time`, delayed messages and retries run too: the clock jumps to each next
    due time (it stays advanced for the rest of the process; the pytest plugin resets it).
    Given a duration instead of True (seconds or a timedelta), schedules tick too, for that
    long from now: each tick is enqueued at its own time, and ticks of schedules with
    overlap allowed are run together once the clock reaches the next delayed message (a
    day of a 5-minute cron takes a fraction of a second).
    With `raise_errors`, once the run is idle, the first exception that ended a message for
    good (dead-lettered or failed: no retries left, or not retryable) is raised again, with
    its traceback; attempts that were retried are only counted (`summary.errors` has them).
    Call it outside an event loop; in asyncio code use `run_until_idle_async`.
    """

    async def run_and_close() -> RunSummary:
        try:
            return await run_until_idle_async(
                app,
                queues=queues,
                topics=topics,
                advance_time=advance_time,
                raise_errors=raise_errors,
                max_rounds=max_rounds,
                settings=settings,
            )
        finally:
            await app.connection.aclose()  # this loop's client: the loop ends here

    return asyncio.run(run_and_close())


async def run_until_idle_async(
    app: App,
    *,
    queues: Sequence[str] | None = None,
    topics: Sequence[str] | None = None,
    advance_time: bool | Duration = False,
    raise_errors: bool = False,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    settings: WorkerSettings | None = None,
) -> RunSummary:
    """Like `run_until_idle`, on the running event loop (for pytest-asyncio tests)."""
    summary = RunSummary()
    horizon = None
    if advance_time is not True and advance_time is not False:
        horizon = protocol.now_ms() + int(to_seconds("advance_time", advance_time) * 1000)
    tickers: list[Ticker] = []
    try:
        await _run_rounds(
            app, queues, topics, advance_time, horizon, max_rounds, settings, summary, tickers
        )
    finally:
        if tickers and not memory.is_memory(app.url):
            await _rewind(app, tickers)
    return _finish(summary, raise_errors)


async def _run_rounds(
    app: App,
    queues: Sequence[str] | None,
    topics: Sequence[str] | None,
    advance_time: bool | Duration,
    horizon: int | None,
    max_rounds: int,
    settings: WorkerSettings | None,
    summary: RunSummary,
    tickers: list[Ticker],
) -> None:
    """Rounds of a burst worker, the clock jumping between them with `advance_time`."""
    jumps = 0
    while True:
        worker = _worker(app, queues, topics, settings, summary)
        await worker.run(burst=True, warn_persistence=False)
        summary.rounds += 1
        summary.ran += worker.processed
        if not advance_time:
            return
        with app.connection.translate_errors():
            client = app.connection.async_redis()
            due = _earliest(await commands.first_due(client, _delayed_sets(worker)))
            if horizon is not None:
                ticker = Ticker(
                    client,
                    app.connection.async_scripts(),
                    app.namespace,
                    app.max_message_bytes,
                    worker.queue_names,
                    status_ttl_ms=app.status_ttl_ms,
                    events_cap=app.events_cap,
                    records_claims=True,
                )
                tickers.append(ticker)
                if await _tick_until(ticker, min(horizon, due or horizon)):
                    continue  # run what the ticks enqueued
        if due is None or (horizon is not None and due > horizon):
            return
        jumps += 1
        if jumps >= max_rounds:
            raise _too_many(max_rounds)
        _advance_to(due)


async def _rewind(app: App, tickers: list[Ticker]) -> None:
    """On a real Redis, workers on the real clock share the schedules a test ticked ahead
    of it: give them back their next ticks from the real clock (Ticker.rewind)."""
    real_now = protocol.now_ms() - protocol.clock_offset_ms()
    claimed = [claim for ticker in tickers for claim in ticker.claimed]
    with app.connection.translate_errors():
        await tickers[-1].rewind(real_now, claimed)


async def _tick_until(ticker: Ticker, until_ms: int) -> bool:
    """Jump the clock from tick to tick of the namespace's schedules up to `until_ms`,
    enqueuing each; stop after a tick of a schedule without overlap (its run must come
    first). Returns whether any tick was enqueued."""
    ticked = False
    while True:
        due = await ticker.next_due()
        if due is None or due > until_ms:
            return ticked
        _advance_to(due)
        ticker.exclusive_enqueued = False
        await ticker.tick()
        ticked = ticked or ticker.enqueued > 0
        if ticker.exclusive_enqueued:
            return ticked
