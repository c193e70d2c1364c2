"""Running one delivered message: decode it, find its handler, call it, decide the outcome.

Owns the decision for every run — done, retry (with backoff) or dead letter — including
bad input (undecodable entries, unknown tasks, arguments that don't fit), which becomes a
dead letter with a clear reason instead of crashing the worker. It returns `Outcome`s; it
never writes them (the Settler does) and never fetches.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from .._base import metrics, protocol, tracing
from .._base.handler import Handler
from .._base.keys import QueueKeys, Source
from .._base.message import Message
from .._lifecycle.lifecycle import ProgressReporter
from .._redis.rows import OutcomeKind, StartRow
from .._workflows.recorder import Step, failure_of, step_of
from ..errors import DecodeError, EncodeError, RateLimited, Reject, Retry, StreamworkError

log = logging.getLogger("streamwork.execution")

UNKNOWN_TASK = "(unknown)"
"""The task label of entries that name no handler: bad input must not add label values."""


@dataclass(slots=True)
class Outcome:
    """What one run of a message decided, to be written together with its XACK."""

    kind: OutcomeKind
    """See OutcomeKind."""
    entry_id: bytes
    data: bytes = b""
    """For "retry", the next attempt's message; for "dead", the dead letter."""
    due_ms: int = 0
    result_key: str | None = None
    result: bytes = b""
    wait_ms: int = 0
    """How long the message waited in the queue before its handler started."""
    run_ms: int = -1
    """How long the handler ran; -1 when no handler ran (bad input, poison message)."""
    task: str = UNKNOWN_TASK
    """The handler's name, for metrics (never sent to Redis)."""
    status_key: str | None = None
    """The message's status hash (queue messages with a known id), written with the outcome."""
    state: str = ""
    """The status state the outcome sets: done, retrying, failed, dead or cancelled."""
    error: str = ""
    """For the status: what failed ("ErrorType: message"), or why it was cancelled."""
    message_id: str = ""
    """The message's id and attempt, for its lifecycle event."""
    attempt: int = 0
    workflow: Step | None = None
    """A workflow child's final outcome: recorded in its workflow before the XACK."""
    held_key: str | None = None
    """For "wait": the held list the message waits in for a concurrency slot."""
    partition_key: str = ""
    """The message's partition key: once it is done, dead or cancelled, the next message
    of its key may run; for "turn", the key whose turn it waits for."""


WriteProgress = Callable[["Run", float, str], Coroutine[Any, Any, Any]]
"""Writes (run, fraction, note) to a running message's status (and event stream)."""

Submit = Callable[[Source, Outcome, bool], None]
"""Hands an outcome to the settler: (source, outcome, is_pending)."""


@dataclass(slots=True)
class Delivery:
    """One entry as XREADGROUP or XAUTOCLAIM handed it to this worker."""

    source: Source
    entry_id: bytes
    fields: dict[bytes, Any]
    delivery_count: int = 1


@dataclass(slots=True)
class Run:
    """A delivery that decoded and names a known task: ready to be run."""

    delivery: Delivery
    envelope: protocol.Envelope
    task: Handler
    is_pending: bool = True
    """False once the entry was acknowledged on receipt (ack mode auto)."""
    started: float = 0.0
    """time.monotonic() when the handler started."""
    wait_ms: int = 0
    """How long the message waited to be run, from its `ts` (ready time); -1 if unknown."""
    cancel_reason: str | None = None
    """Set when a cancellation reached the message while it ran."""
    handler: asyncio.Task[Any] | None = None
    """The asyncio task awaiting an async handler, while it runs (cancelled to stop it)."""
    message: Message | None = None
    progress: ProgressReporter | None = None
    status_key: str | None = None
    """The message's status hash (None for a topic's events)."""

    def request_cancel(self, reason: str) -> None:
        """Stop this run: an async handler is cancelled; a sync one sees message.cancelled."""
        if self.cancel_reason is not None:
            return
        self.cancel_reason = reason
        if self.message is not None:
            self.message._cancelled = True
        if self.handler is not None and not self.handler.done():
            self.handler.cancel()

    def admitted(self) -> Run:
        """This run, once the start step let it start: the rate slot reserved when it was
        held back is used up (a retry or a hand-back must be admitted afresh)."""
        if protocol.RATE_SLOT in self.envelope.headers:
            headers = {k: v for k, v in self.envelope.headers.items() if k != protocol.RATE_SLOT}
            self.envelope = replace(self.envelope, headers=headers)
        return self

    def timed(self, outcome: Outcome) -> Outcome:
        """`outcome` with this run's wait and run times, for the queue's stats."""
        outcome.wait_ms = self.wait_ms
        outcome.run_ms = int((time.monotonic() - self.started) * 1000)
        return outcome


class Runner:
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
    ) -> None:
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

    # -- preparing -----------------------------------------------------------------------

    def prepare(self, delivery: Delivery) -> Run | Outcome:
        """The Run for `delivery`, or the dead-letter Outcome of an entry that cannot run."""
        try:
            body = protocol.entry_body(delivery.fields)
            envelope = protocol.decode(body)
        except DecodeError as exc:
            return self._reject_entry(delivery, f"undecodable message: {exc}")
        task = self._handler(delivery.source, envelope)
        if isinstance(task, str):
            return self._dead(delivery, envelope, None, task)
        limit = task.options.max_deliveries
        if delivery.delivery_count > limit:
            reason = (
                f"delivered {delivery.delivery_count} times without an outcome "
                f"(max_deliveries={limit}): it may be killing its worker"
            )
            return self._dead(delivery, envelope, task, reason)
        return Run(delivery, envelope, task, status_key=delivery.source.status(envelope.id))

    def _handler(self, source: Source, envelope: protocol.Envelope) -> Handler | str:
        """The task or subscriber that runs `envelope` from `source`, or why there is none."""
        if source.topic is not None:
            subscriber = self.subscribers.get((source.topic, source.group))
            if subscriber is None:
                return f"no subscriber for topic {source.topic!r} group {source.group!r}"
            if not envelope.topic:
                return f"task message {envelope.task!r} found on topic {source.topic!r}"
            return subscriber
        if envelope.topic:
            return f"event of topic {envelope.topic!r} found on queue {source.name!r}"
        task = self.tasks.get(envelope.task)
        if task is None:
            known = ", ".join(sorted(self.tasks)) or "none"
            return f"unknown task {envelope.task!r} (this worker knows: {known})"
        return task

    def _reject_entry(self, delivery: Delivery, reason: str) -> Outcome:
        log.error(
            "entry %s on %s set aside: %s",
            delivery.entry_id.decode(),
            delivery.source.name,
            reason,
        )
        body = delivery.fields.get(protocol.FIELD)
        failed_ms = protocol.now_ms()
        letter = protocol.DeadLetter(
            message=body if isinstance(body, bytes) else dict(delivery.fields),
            reason=reason,
            queue=delivery.source.name,
            original_id=delivery.entry_id.decode(),
            error_type="DecodeError",
            error=reason,
            attempts=0,
            first_failure_ms=failed_ms,
            last_failure_ms=failed_ms,
            worker=self.consumer,
        )
        return Outcome("dead", delivery.entry_id, protocol.encode_dead_letter(letter))

    # -- running -------------------------------------------------------------------------

    def run(self, run: Run, submit: Submit) -> Coroutine[Any, Any, Outcome | None]:
        """Run the handler once; the Outcome to write, or None when a manual ack decides.
        (The untraced run is awaited directly: no extra coroutine per message.)"""
        if tracing.active():
            return self._run_traced(run, submit)
        return self._run_once(run, submit)

    async def _run_traced(self, run: Run, submit: Submit) -> Outcome | None:
        with tracing.run_span([run]) as span:
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
        many as take about CHUNK_SECONDS, at most MAX_CHUNK (0 s: MAX_CHUNK)."""
        task = run.task
        options = task.options
        if options.batch is not None or options.timeout is not None:
            return 1
        average = self._run_times.get(task.name)
        below = ASYNC_CHUNK_BELOW if task.is_async else CHUNK_SECONDS
        if average is None or average >= below or tracing.active():
            return 1
        return max(1, min(MAX_CHUNK, int(CHUNK_SECONDS / max(average, 1e-6))))

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
            with tracing.run_span(ready) as span:
                try:
                    await self._call(ready[0], (messages,), {}, whole=False)
                except Exception as exc:
                    tracing.failed(span, exc)
                    raise
        except asyncio.CancelledError:
            raise  # the worker is stopping: the entries stay pending
        except Exception as exc:
            trace = traceback.format_exc()
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
                failed = (
                    self._cancelled(run) if run.cancel_reason else self._failure(run, exc, trace)
                )
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
        except TimeoutError:
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
    ) -> None:
        if run.progress is None:  # made on first use: most handlers never report progress
            run.progress = ProgressReporter(loop, functools.partial(write, run))
        run.progress.report(fraction, note)

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

    # -- outcomes ------------------------------------------------------------------------

    def _done(self, run: Run, value: Any) -> Outcome:
        task, envelope = run.task, run.envelope
        outcome = Outcome(
            "done",
            run.delivery.entry_id,
            task=task.name,
            status_key=run.status_key,
            state="done",
            message_id=envelope.id,
            attempt=envelope.attempt,
            partition_key=protocol.partition_key_of(envelope),
        )
        is_child = bool(envelope.headers) and protocol.WORKFLOW in envelope.headers
        if not task.options.store_result and not is_child:
            return outcome
        try:
            protocol.check_plain(value, "the result")
            packed = protocol.pack_value(value)
        except (TypeError, ValueError, OverflowError) as exc:
            # The caller (or the next step) could never read it: a failure, not a success.
            error = EncodeError(f"task returned a value that cannot be stored: {exc}")
            reason = "result cannot be encoded"
            return self._dead(run.delivery, envelope, task, reason, error)
        if is_child:
            outcome.workflow = step_of(envelope, packed)
        if task.options.store_result:
            outcome.result_key = task.result_key(envelope.id)
            outcome.result = protocol.pack_value({"ok": True, "value": value})
        return outcome

    def _failure(self, run: Run, exc: BaseException, trace: str) -> Outcome:
        task, envelope = run.task, run.envelope
        if isinstance(exc, Reject):
            return self._dead(run.delivery, envelope, task, f"rejected: {exc.reason}", exc, trace)
        is_retryable = isinstance(exc, (Retry, *task.options.retry_on))
        if not is_retryable:
            return self._dead(run.delivery, envelope, task, "not retryable", exc, trace)
        if envelope.attempt > task.options.max_retries:
            attempts = f"{envelope.attempt} attempt{'s' if envelope.attempt != 1 else ''}"
            reason = f"failed {attempts} (max_retries={task.options.max_retries})"
            return self._dead(run.delivery, envelope, task, reason, exc, trace)
        if isinstance(exc, Retry) and exc.delay is not None:
            delay = exc.delay
        else:
            delay = task.options.backoff.delay(envelope.attempt)
        failed_ms = protocol.now_ms()
        log.warning(
            "task %s id %s attempt %d failed: %s — retry in %.1fs",
            task.name,
            envelope.id,
            envelope.attempt,
            _describe(exc),
            delay,
            extra=_event(task.name, envelope.id, "retry"),
        )
        due_ms = failed_ms + int(delay * 1000)
        retry = protocol.encode(envelope.next_attempt(failed_ms, due_ms))
        return Outcome(
            "retry",
            run.delivery.entry_id,
            retry,
            due_ms,
            task=task.name,
            status_key=run.status_key,
            state="retrying",
            error=_brief(exc),
            message_id=envelope.id,
            attempt=envelope.attempt,
        )

    def _dead(
        self,
        delivery: Delivery,
        envelope: protocol.Envelope,
        task: Handler | None,
        reason: str,
        exc: BaseException | None = None,
        trace: str = "",
    ) -> Outcome:
        failed_ms = protocol.now_ms()
        error_type = type(exc).__name__ if exc is not None else "Rejected"
        error = str(exc) if exc is not None else reason
        log.error(
            "task %s id %s dead-lettered after %d attempt(s): %s%s",
            envelope.task or delivery.source.name,
            envelope.id,
            envelope.attempt,
            reason,
            f" — {_describe(exc)}" if exc is not None else "",
            extra=_event(envelope.task or delivery.source.name, envelope.id, "dead"),
        )
        letter = protocol.DeadLetter(
            message=protocol.entry_body(delivery.fields),
            reason=reason,
            queue=delivery.source.name,
            original_id=delivery.entry_id.decode(),
            error_type=error_type,
            error=error,
            traceback=trace,
            attempts=envelope.attempt,
            first_failure_ms=envelope.first_failure_ms or failed_ms,
            last_failure_ms=failed_ms,
            worker=self.consumer,
            task=envelope.task,
            task_id=envelope.id,
        )
        # "failed": the handler failed for good (not retryable, or out of retries);
        # "dead": set aside without a handler failure (rejected, bad input, poison).
        is_failure = exc is not None and not isinstance(exc, Reject)
        outcome = Outcome(
            "dead",
            delivery.entry_id,
            protocol.encode_dead_letter(letter),
            task=UNKNOWN_TASK if task is None else task.name,
            status_key=delivery.source.status(envelope.id) if envelope.id else None,
            state="failed" if is_failure else "dead",
            error=_brief(exc) if is_failure else reason[:STATUS_ERROR_CHARS],
            message_id=envelope.id,
            attempt=envelope.attempt,
            partition_key=protocol.partition_key_of(envelope),
        )
        if task is not None and task.options.store_result:
            outcome.result_key = task.result_key(envelope.id)
            outcome.result = _error_result(error_type, error)
        outcome.workflow = failure_of(envelope, error_type, error)
        return outcome


def cancelled_outcome(run: Run, status_key: str | None, reason: str) -> Outcome:
    """The outcome of a message cancelled before or while it ran: acknowledged, never
    retried or dead-lettered, its status "cancelled"."""
    metrics.run_cancelled(*metrics.labels_of(run.delivery.source), run.task.name)
    log.info(
        "task %s id %s cancelled%s",
        run.task.name,
        run.envelope.id,
        f": {reason}" if reason else "",
        extra=_event(run.task.name, run.envelope.id, "cancelled"),
    )
    return Outcome(
        "cancelled",
        run.delivery.entry_id,
        task=run.task.name,
        status_key=status_key,
        state="cancelled",
        error=reason[:STATUS_ERROR_CHARS],
        message_id=run.envelope.id,
        attempt=run.envelope.attempt,
        workflow=failure_of(run.envelope, "Cancelled", reason),
        partition_key=protocol.partition_key_of(run.envelope),
    )


"""The header of a message its rate limit held back: the start reserved for it (Unix ms,
Redis's clock). The start step does not charge it again when it comes on time (at most
start.lua's LATE_MS, 100 ms, after it), and charges a later one as a new start."""


def _reserved_start(headers: dict[str, Any]) -> int:
    """The start a rate limit reserved for a message (Unix ms), 0 when it has none."""
    reserved = headers.get(protocol.RATE_SLOT)
    if isinstance(reserved, bool) or not isinstance(reserved, (int, float)):
        return 0
    return int(reserved)


def start_row(source: Source, run: Run) -> StartRow:
    """What the start step needs of one run (see scripts.Scripts.start)."""
    options, name = run.task.options, run.task.name
    rate, limit = options.rate, options.concurrency_limit
    rate_key = None if rate is None else source.limit("rate", name)
    fair, key = options.fair, run.envelope.headers.get(protocol.FAIR_KEY)
    if fair is not None and fair.rate is not None and isinstance(key, str):
        rate = fair.rate  # per key: one GCRA key per fair key
        rate_key = f"{QueueKeys(source.namespace, source.name).fair(name)}rate:{key}"
    return StartRow(
        name,
        run.envelope.attempt,
        run.envelope.id,
        run.delivery.entry_id,
        run.status_key,
        rate_key,
        0 if rate is None else rate.interval_ms,
        0 if rate is None else rate.tolerance_ms,
        None if limit is None else source.limit("slots", name),
        limit or 0,
        _reserved_start(run.envelope.headers),
        protocol.partition_key_of(run.envelope),
    )


WAITS_FOR_SLOT = -1
"""The start step's reply for a message held back by its concurrency limit."""
WAITS_FOR_TURN = -2
"""The start step's reply for a message sent after another of its partition key that has
not finished."""


def held_back(run: Run, due_ms: int, held_key: str | None, reason: str = "") -> Outcome:
    """The outcome of a message held back before (or, for RateLimited, by) its run: by its
    rate limit until `due_ms` (its start reserved), by its concurrency limit (due_ms -1:
    it waits in `held_key`), by its partition key's order (due_ms -2: it waits for its
    turn), or handed back by the handler. Never an attempt."""
    envelope = run.envelope
    source = run.delivery.source
    if due_ms < 0:  # waits in Redis: for a concurrency slot, or for its key's turn
        is_turn = due_ms == WAITS_FOR_TURN
        reason = "order" if is_turn else "concurrency"
        metrics.held_back(*metrics.labels_of(source), run.task.name, reason)
        return Outcome(
            "turn" if is_turn else "wait",
            run.delivery.entry_id,
            protocol.entry_body(run.delivery.fields),
            task=run.task.name,
            status_key=run.status_key,
            state="queued",
            message_id=envelope.id,
            attempt=envelope.attempt,
            held_key=None if is_turn else held_key,
            run_ms=-1,
            wait_ms=-1,
            partition_key=protocol.partition_key_of(envelope),
        )
    if reason:
        log.info(
            "task %s id %s handed back (%s): runs again in %.1fs, not counted as an attempt",
            run.task.name,
            envelope.id,
            reason,
            (due_ms - protocol.now_ms()) / 1000,
            extra=_event(run.task.name, envelope.id, "held"),
        )
        headers = envelope.headers
    else:
        headers = {**envelope.headers, protocol.RATE_SLOT: due_ms}
    metrics.held_back(*metrics.labels_of(source), run.task.name, reason or "rate")
    return Outcome(
        "held",
        run.delivery.entry_id,
        protocol.encode(replace(envelope, headers=headers)),
        due_ms,
        task=run.task.name,
        status_key=run.status_key,
        state="delayed",
        message_id=envelope.id,
        attempt=envelope.attempt,
        run_ms=-1,
        wait_ms=-1,
    )


STATUS_ERROR_CHARS = 500
"""The longest error text a status keeps (the dead letter keeps all of it)."""


CHUNK_SECONDS = 0.002
"""A chunk of sync runs handed to one pool thread takes about this long, at most."""
ASYNC_CHUNK_BELOW = 0.00005
"""An async handler whose runs take less than this on average (it does not wait on I/O)
runs in chunks; one that takes longer gets an asyncio task per run, so that they overlap."""
MAX_CHUNK = 32


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """In a pool thread: the call's value, and how long it took."""
    started = time.monotonic()
    value = call()
    return value, time.monotonic() - started


def _call_each(calls: list[tuple[Run, Any]]) -> list[tuple[Any, BaseException | None, str, float]]:
    """In a pool thread: each call in turn, (value, exception, traceback, seconds) each; a
    run cancelled before its turn is not called."""
    done: list[tuple[Any, BaseException | None, str, float]] = []
    for run, call in calls:
        started = time.monotonic()
        if run.cancel_reason is not None:
            done.append((None, asyncio.CancelledError(), "", 0.0))
            continue
        try:
            done.append((call(), None, "", time.monotonic() - started))
        except Exception as exc:
            done.append((None, exc, traceback.format_exc(), time.monotonic() - started))
    return done


async def _within(awaitable: Awaitable[Any], timeout: float | None) -> Any:
    """`awaitable`'s value, or a TimeoutError that names the handler's limit when it runs
    past `timeout` (asyncio's own has no text: the dead letter would say "TimeoutError: ").
    A TimeoutError the handler raised itself goes through as it is."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError as exc:
        if isinstance(exc.__cause__, asyncio.CancelledError):
            raise TimeoutError(f"the handler ran past its timeout={timeout:g}s") from None
        raise


def _left_pending(run: Run) -> None:
    """A manual-mode handler returned without acking or nacking: say so (no outcome)."""
    name, message_id = run.task.name, run.envelope.id
    log.warning(
        "task %s id %s returned without ack or nack: it stays pending and is delivered "
        "again after the visibility timeout",
        name,
        message_id,
        extra=_event(name, message_id, "pending"),
    )


def _undecided(run: Run) -> bool:
    return run.message is None or run.message.decision is None


def _brief(exc: BaseException | None) -> str:
    """ "ErrorType: message" for a status, cut to STATUS_ERROR_CHARS."""
    if exc is None:
        return ""
    return f"{type(exc).__name__}: {exc}"[:STATUS_ERROR_CHARS]


def _event(task: str, task_id: str, outcome: str) -> dict[str, str]:
    """The fields a log line about one run carries (structured in JSON logs)."""
    return {"task": task, "task_id": task_id, "outcome": outcome}


def _error_result(error_type: str, error: str) -> bytes:
    packed: bytes = msgpack.packb({"ok": False, "error_type": error_type, "error": error})
    return packed


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
