"""Running delivered messages: call each handler (sync in pool threads, in chunks; async on
the loop), with its timeout, its cancel and its trace, and decide its outcome.

The Runner owns the decision for every run — done, retry (with backoff) or dead letter —
including bad input (undecodable entries, unknown tasks, arguments that don't fit), which
becomes a dead letter with a clear reason instead of crashing the worker (the decisions that
call no handler are in decisions.py; what a run is, in runs.py). It returns `Outcome`s; it
never writes them (the Settler does) and never fetches.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._base import metrics, protocol, tracing
from .._base.handler import Handler
from .._base.message import Message
from .._lifecycle.lifecycle import ProgressReporter
from ..errors import HandlerTimeout, RateLimited, Reject, Retry, StreamworkError
from .decisions import (
    Decisions,
    _call_each,
    _describe,
    _event,
    _left_pending,
    _timed,
    _undecided,
    _within,
    cancelled_outcome,
    held_back,
)
from .runs import Outcome, Run, Submit, WriteProgress

log = logging.getLogger("streamwork.execution")


CHUNK_SECONDS = 0.002
"""A chunk of sync runs handed to one pool thread takes about this long, at most."""
ASYNC_CHUNK_BELOW = 0.00005
"""An async handler whose runs take less than this on average (it does not wait on I/O)
runs in chunks; one that takes longer gets an asyncio task per run, so that they overlap."""
MAX_CHUNK = 32
"""The most runs of an async handler in one asyncio task (more: settles overlap less)."""
MAX_SYNC_CHUNK = 128
"""The most runs of a sync handler per pool thread hand-off (~90 µs each; 128 drains 12%
faster than 32: benchmarks/README.md); CHUNK_SECONDS bounds slower handlers' chunks."""


class Runner(Decisions):
    """Decides and runs deliveries for one worker process.

    `tasks` maps task names to their handlers, `subscribers` (topic, group) pairs to theirs:
    the registries of the App, which the Runner only reads.
    """

    def __init__(
        self,
        tasks: Mapping[str, Handler],
        subscribers: Mapping[tuple[str, str], Handler],
        consumer: str,
        threads: ThreadPoolExecutor,
        on_error: Callable[[str, str, BaseException], None] | None = None,
        write_progress: WriteProgress | None = None,
        server: Mapping[str, Any] | None = None,
    ) -> None:
        self.server = server or {}
        """server.address/port for the process spans."""
        self.write_progress = write_progress
        """Writes a run's progress to its status (None: progress is not recorded)."""
        self.tasks = tasks
        self.subscribers = subscribers
        self.on_error = on_error
        """Told (task, message id, exception) of every exception a handler raised other
        than Retry and Reject (tests)."""
        self.consumer = consumer
        self.threads = threads
        self.timed_out_threads = 0
        self._run_times: dict[str, float] = {}
        """Sync handlers still running after their timeout: the process should be recycled."""

    # -- running -------------------------------------------------------------------------

    def run(self, run: Run, submit: Submit) -> Coroutine[Any, Any, Outcome | None]:
        """Run the handler once; the Outcome to write, or None when a manual ack decides.
        (The untraced run is awaited directly: no extra coroutine per message.)"""
        if tracing.active():
            return self._run_traced(run, submit)
        return self._run_once(run, submit)

    async def _run_traced(self, run: Run, submit: Submit) -> Outcome | None:
        with tracing.run_span([run], self.server) as span:
            outcome = await self._run_once(run, submit)
            tracing.record(span, run, outcome)
            return outcome

    async def _run_once(self, run: Run, submit: Submit) -> Outcome | None:
        ready = self._prologue(run, submit)
        if isinstance(ready, Outcome):
            return ready
        args, kwargs = ready
        try:
            try:
                value = await self._call(run, args, kwargs)
            finally:
                if run.progress is not None:
                    await run.progress.drain()  # its last progress lands before its outcome
        except asyncio.CancelledError:
            if run.cancel_reason is None:
                raise  # the worker is stopping: the entry stays pending
            seconds = time.monotonic() - run.started
            metrics.run_ended(run.delivery.source, run.task.name, seconds, False)
            return run.timed(self._cancelled(run))
        except Exception as exc:
            trace = traceback.format_exc()
            return self._epilogue(run, None, exc, trace, time.monotonic() - run.started)
        return self._epilogue(run, value, None, "", time.monotonic() - run.started)

    def _prologue(
        self, run: Run, submit: Submit
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | Outcome:
        """Check the arguments, make the Message if the handler sees it, note the start:
        the handler's (args, kwargs), or the dead-letter Outcome of arguments that don't fit."""
        task, envelope = run.task, run.envelope
        options = task.options
        try:
            task.check_arguments(envelope.args, envelope.kwargs)
        except StreamworkError as exc:
            return self._dead(run.delivery, envelope, task, f"bad arguments: {exc}")
        # The Message is made only for a handler that can see it (bind, a batch of one) or
        # decide with it (manual ack): the others never could, and it costs per message.
        kwargs = envelope.kwargs
        if options.batch is not None:
            args, kwargs = ([self._message(run, submit)],), {}  # a batch of one
        elif options.bind:
            args = (self._message(run, submit), *envelope.args)
        else:
            args = envelope.args
            if options.ack_mode == "manual":
                self._message(run, submit)
        # ts 0 (absent: other producers may leave it out) means the wait is unknown: -1,
        # never the whole Unix epoch added to the queue's wait.
        if envelope.enqueued_ms > 0:
            run.wait_ms = max(0, protocol.now_ms() - envelope.enqueued_ms)
        else:
            run.wait_ms = -1
        run.started = time.monotonic()
        wait = run.wait_ms / 1000 if run.wait_ms >= 0 else None
        metrics.run_started(run.delivery.source, task.name, wait)
        return args, kwargs

    def _epilogue(
        self, run: Run, value: Any, exc: BaseException | None, trace: str, seconds: float
    ) -> Outcome | None:
        """The Outcome of a run that returned `value` or raised `exc` (a CancelledError of
        a cancelled run: `exc` None and `run.cancel_reason` set), after `seconds`."""
        task, envelope = run.task, run.envelope
        source, options = run.delivery.source, task.options
        run.started = time.monotonic() - seconds  # its run time, whatever ran before it
        decision = None if run.message is None else run.message.decision
        if exc is not None:
            if run.cancel_reason is not None and decision is None:
                metrics.run_ended(source, task.name, seconds, False)
                return run.timed(self._cancelled(run))
            if isinstance(exc, RateLimited) and decision is None:
                metrics.run_ended(source, task.name, seconds, False)
                due = protocol.now_ms() + int(exc.retry_after * 1000)
                return run.timed(held_back(run, due, None, "rate_limited"))
            metrics.run_ended(source, task.name, seconds, True)
            if self.on_error is not None and not isinstance(exc, (Retry, Reject)):
                self.on_error(task.name, envelope.id, exc)
            if decision is not None:
                log.error(
                    "task %s id %s raised after it was %sed: %s",
                    task.name,
                    envelope.id,
                    decision,
                    _describe(exc),
                    extra=_event(task.name, envelope.id, "error"),
                )
                return None
            return run.timed(self._failure(run, exc, trace))
        metrics.run_ended(source, task.name, seconds, decision == "nack")
        if run.cancel_reason is not None and decision is None:
            return run.timed(self._cancelled(run))  # it saw message.cancelled, or finished
        if decision is not None and options.ack_mode != "manual":
            return None  # a batch handler acked or nacked it: that outcome is written
        if options.ack_mode == "manual":
            if decision is None:
                _left_pending(run)
            return None
        outcome = run.timed(self._done(run, value))
        if outcome.kind != "done":
            return outcome  # its result could not be stored: dead-lettered, logged
        if log.isEnabledFor(logging.INFO):
            log.info(
                "task %s id %s done in %.3fs",
                task.name,
                envelope.id,
                outcome.run_ms / 1000,
                extra=_event(task.name, envelope.id, "done"),
            )
        return outcome

    async def run_chunk(self, runs: list[Run], submit: Submit) -> list[tuple[Run, Outcome | None]]:
        """Run the handlers of `runs` one after another: sync ones in one pool thread, async
        ones in this asyncio task (short handlers: one hand-off, one task for several
        messages); each run's Outcome, decided exactly as for a run of its own. A run
        cancelled before its turn never starts."""
        if runs[0].task.is_async:
            return await self._run_async_chunk(runs, submit)
        outcomes: dict[int, Outcome | None] = {}
        calls: list[tuple[Run, Any]] = []
        for n, run in enumerate(runs):
            ready = self._prologue(run, submit)
            if isinstance(ready, Outcome):
                outcomes[n] = ready
            else:
                calls.append((run, functools.partial(run.task.fn, *ready[0], **ready[1])))
        if calls:
            loop = asyncio.get_running_loop()
            done = iter(await loop.run_in_executor(self.threads, _call_each, calls))
            for n, run in enumerate(runs):
                if n in outcomes:
                    continue
                value, exc, trace, seconds = next(done)
                self.observe_time(run.task.name, seconds)
                if run.progress is not None:
                    await run.progress.drain()  # its last progress lands before its outcome
                outcomes[n] = self._epilogue(run, value, exc, trace, seconds)
        return [(run, outcomes[n]) for n, run in enumerate(runs)]

    async def _run_async_chunk(
        self, runs: list[Run], submit: Submit
    ) -> list[tuple[Run, Outcome | None]]:
        """Short async handlers' runs in turn, in this task. Cancelling a run cancels this
        task while that run's handler runs (as for a run alone): its outcome is
        "cancelled" and the next run goes on."""
        current = asyncio.current_task()
        done: list[tuple[Run, Outcome | None]] = []
        for run in runs:
            if run.cancel_reason is not None:  # cancelled before its turn: never started
                run.started = time.monotonic()
                done.append((run, run.timed(self._cancelled(run))))
                continue
            done.append((run, await self._run_once(run, submit)))
            if run.cancel_reason is not None and current is not None and current.cancelling():
                current.uncancel()  # that cancellation was the run's, not this task's
        return done

    def observe_time(self, task: str, seconds: float) -> None:
        """Keep a moving average of how long `task`'s handler runs (see `chunk_size`)."""
        average = self._run_times.get(task)
        self._run_times[task] = seconds if average is None else 0.8 * average + 0.2 * seconds

    def chunk_size(self, run: Run) -> int:
        """How many messages of `run`'s task may run in a row (a sync handler's in one pool
        thread, an async one's in one asyncio task): 1 for batch, traced and time-limited
        handlers, and until the handler's time is known; 1 for an async handler that takes
        ASYNC_CHUNK_BELOW or more (it awaits something: its runs must overlap); else as
        many as take about CHUNK_SECONDS, at most MAX_CHUNK (async) or MAX_SYNC_CHUNK (sync;
        0 s: that most)."""
        task = run.task
        options = task.options
        if options.batch is not None or options.timeout is not None:
            return 1
        average = self._run_times.get(task.name)
        below = ASYNC_CHUNK_BELOW if task.is_async else CHUNK_SECONDS
        if average is None or average >= below or tracing.active():
            return 1
        most = MAX_CHUNK if task.is_async else MAX_SYNC_CHUNK
        return max(1, min(most, int(CHUNK_SECONDS / max(average, 1e-6))))

    async def run_batch(self, runs: list[Run], submit: Submit) -> list[tuple[Run, Outcome | None]]:
        """Run a batch handler once on the messages of `runs`; each run's Outcome (None
        where the handler acked or nacked it, or a manual-mode message stays pending).

        Returned: every message it did not decide is done. Raised: if it decided them all
        but one, that one failed; else the batch is split and each message it did not
        decide is run again alone (a batch of one), so one bad message fails (is retried,
        dead-lettered) on its own and the good ones of its batch succeed.
        """
        results: list[tuple[Run, Outcome | None]] = []
        ready = []
        for run in runs:
            if run.cancel_reason is not None:  # cancelled while it waited for its batch
                run.started = time.monotonic()
                results.append((run, run.timed(self._cancelled(run))))
            else:
                ready.append(run)
        if not ready:
            return results
        task = ready[0].task
        now, started = protocol.now_ms(), time.monotonic()
        messages = []
        for run in ready:
            enqueued = run.envelope.enqueued_ms
            run.wait_ms = max(0, now - enqueued) if enqueued > 0 else -1
            run.started = started
            messages.append(self._message(run, submit))
            wait = run.wait_ms / 1000 if run.wait_ms >= 0 else None
            metrics.run_started(run.delivery.source, task.name, wait)
        metrics.batch_ran(ready[0].delivery.source, task.name, len(ready))
        try:
            with tracing.run_span(ready, self.server) as span:
                try:
                    await self._call(ready[0], (messages,), {}, whole=False)
                except Exception as exc:
                    tracing.failed(span, exc)
                    raise
        except asyncio.CancelledError:
            raise  # the worker is stopping: the entries stay pending
        except Exception as exc:
            trace = traceback.format_exc()
            return await self._batch_failed(ready, exc, trace, started, submit, results)
        return self._batch_done(ready, started, results)

    async def _batch_failed(
        self,
        ready: list[Run],
        exc: Exception,
        trace: str,
        started: float,
        submit: Submit,
        results: list[tuple[Run, Outcome | None]],
    ) -> list[tuple[Run, Outcome | None]]:
        """The outcomes of a batch whose handler raised (see run_batch)."""
        task = ready[0].task
        for run in ready:
            metrics.run_ended(run.delivery.source, task.name, time.monotonic() - started, True)
        if self.on_error is not None and not isinstance(exc, (Retry, Reject)):
            for run in ready:
                self.on_error(task.name, run.envelope.id, exc)
        undecided = [run for run in ready if _undecided(run)]
        results += [(run, None) for run in ready if not _undecided(run)]
        if not undecided:
            return results
        if len(undecided) == 1:
            (run,) = undecided
            failed = self._cancelled(run) if run.cancel_reason else self._failure(run, exc, trace)
            return [*results, (run, run.timed(failed))]
        log.warning(
            "batch of %d %s message(s) raised %s: running the %d it did not settle one by one",
            len(ready),
            task.name,
            _describe(exc),
            len(undecided),
        )
        for run in undecided:
            if run.cancel_reason is not None:
                results.append((run, run.timed(self._cancelled(run))))
            else:
                results.append((run, await self.run(run, submit)))
        return results

    def _batch_done(
        self, ready: list[Run], started: float, results: list[tuple[Run, Outcome | None]]
    ) -> list[tuple[Run, Outcome | None]]:
        """The outcomes of a batch whose handler returned: done, unless it decided them."""
        task = ready[0].task
        elapsed = time.monotonic() - started
        for run in ready:
            assert run.message is not None
            decided = run.message.decision is not None
            metrics.run_ended(
                run.delivery.source, task.name, elapsed, run.message.decision == "nack"
            )
            if decided:
                results.append((run, None))
            elif run.cancel_reason is not None:
                results.append((run, run.timed(self._cancelled(run))))
            elif task.options.ack_mode == "manual":
                _left_pending(run)
                results.append((run, None))
            else:
                results.append((run, run.timed(self._done(run, None))))
        log.info(
            "task %s ran a batch of %d in %.3fs",
            task.name,
            len(ready),
            elapsed,
            extra=_event(task.name, ready[0].envelope.id, "done"),
        )
        return results

    def _cancelled(self, run: Run) -> Outcome:
        return cancelled_outcome(run, run.status_key, run.cancel_reason or "")

    async def _call(
        self, run: Run, args: tuple[Any, ...], kwargs: dict[str, Any], whole: bool = True
    ) -> Any:
        """Call the handler (in the thread pool if it is sync), within its timeout. `whole`:
        a cancellation of `run` may cancel the call (not for a batch: the others go on)."""
        task = run.task
        timeout = task.options.timeout
        if task.is_async:
            if not whole:
                return await _within(task.fn(*args, **kwargs), timeout)
            # A cancellation stops this asyncio task (no task of its own per handler: that
            # would cost every run); Runner.run turns it into the "cancelled" outcome.
            run.handler = asyncio.current_task()
            try:
                if timeout is None:
                    started = time.monotonic()
                    value = await task.fn(*args, **kwargs)
                    self.observe_time(task.name, time.monotonic() - started)
                    return value
                return await _within(task.fn(*args, **kwargs), timeout)
            finally:
                run.handler = None
        call = functools.partial(task.fn, *args, **kwargs)
        if tracing.active():  # the run's span is current in the handler's thread too
            call = functools.partial(contextvars.copy_context().run, call)
        if timeout is None:
            # Timed in its thread: the wait for a free thread and for the loop to see the
            # result is not the handler's time (under load it would hide a short handler).
            loop = asyncio.get_running_loop()
            value, seconds = await loop.run_in_executor(self.threads, _timed, call)
            self.observe_time(task.name, seconds)
            return value
        future = asyncio.get_running_loop().run_in_executor(self.threads, call)
        try:
            return await _within(asyncio.shield(future), timeout)
        except HandlerTimeout:  # (a TimeoutError the handler raised itself ended its run)
            self.timed_out_threads += 1
            log.error(
                "sync task %s is still running after its %ss timeout; its thread cannot be "
                "stopped, so this worker process should be recycled",
                task.name,
                timeout,
            )
            raise

    def _message(self, run: Run, submit: Submit) -> Message:
        envelope = run.envelope
        decide = None
        if run.task.options.ack_mode == "manual" or run.task.options.batch is not None:
            decide = functools.partial(self._decide, run, submit, asyncio.get_running_loop())
        progress = None
        if run.status_key is not None and self.write_progress is not None:
            progress = functools.partial(
                self._report_progress, run, asyncio.get_running_loop(), self.write_progress
            )
        run.message = Message(
            id=envelope.id,
            entry_id=run.delivery.entry_id.decode(),
            queue=run.delivery.source.name,
            task=envelope.task,
            args=envelope.args,
            kwargs=envelope.kwargs,
            headers=envelope.headers,
            attempt=envelope.attempt,
            delivery_count=run.delivery.delivery_count,
            enqueued_ms=envelope.enqueued_ms,
            payload=envelope.payload,
            topic=run.delivery.source.topic,
            group=run.delivery.source.group if run.delivery.source.topic else None,
            decide=decide,
            progress=progress,
        )
        return run.message

    @staticmethod
    def _report_progress(
        run: Run,
        loop: asyncio.AbstractEventLoop,
        write: WriteProgress,
        fraction: float,
        note: str | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        if run.progress is None:  # made on first use: most handlers never report progress
            run.progress = ProgressReporter(loop, functools.partial(write, run))
        run.progress.report(fraction, note, data)

    def _decide(
        self,
        run: Run,
        submit: Submit,
        loop: asyncio.AbstractEventLoop,
        message: Message,
        decision: str,
        requeue: bool,
        reason: str,
    ) -> None:
        if decision == "ack":
            outcome = self._done(run, None)
        elif requeue:
            outcome = self._failure(run, Retry(reason=reason), "")
        else:
            outcome = self._dead(run.delivery, run.envelope, run.task, reason)
        outcome = run.timed(outcome)
        loop.call_soon_threadsafe(submit, run.delivery.source, outcome, run.is_pending)
