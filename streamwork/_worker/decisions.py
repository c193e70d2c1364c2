"""The decisions of a run that call no handler: preparing a delivery (decode it, find its
handler; bad input becomes a dead letter with a clear reason), the outcome of a return
value, a failure (retry with backoff, or a dead letter), a cancel, a hold-back, and the row
of the start step. The Runner (execution.py) runs the handlers and uses these.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import msgpack

from .._base import ids, metrics, protocol
from .._base.handler import Handler, Rate
from .._base.keys import QueueKeys, Source
from .._redis.rows import StartRow
from .._workflows.recorder import failure_of, step_of
from ..errors import DecodeError, EncodeError, HandlerTimeout, Reject, Retry
from .runs import UNKNOWN_TASK, Delivery, Outcome, Run

log = logging.getLogger("streamwork.execution")


class Decisions:
    """The Runner's decisions (a base class of Runner); what they need of it is declared
    here."""

    tasks: Mapping[str, Handler]
    subscribers: Mapping[tuple[str, str], Handler]
    consumer: str

    def prepare(self, delivery: Delivery) -> Run | Outcome:
        """The Run for `delivery`, or the dead-letter Outcome of an entry that cannot run."""
        try:
            body = protocol.entry_body(delivery.fields)
            envelope = protocol.decode(body)
        except DecodeError as exc:
            return self._reject_entry(delivery, f"undecodable message: {exc}")
        by_entry, source = not envelope.id, delivery.source  # a first attempt sent by entry
        ids.named(envelope, source.name, source.band, delivery.entry_id)  # is named by it
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
        deadline = _deadline(envelope)
        if deadline and protocol.now_ms() > deadline:
            expired = _expired(delivery, envelope, task, deadline)
            if not task.options.dead_letter_expired:
                return expired
            outcome = self._dead(delivery, envelope, task, f"expired: {expired.error}")
            metrics.expired(*metrics.labels_of(delivery.source), task.name)
            return replace(outcome, state="expired", error=expired.error)
        return Run(
            delivery, envelope, task, status_key=source.status(envelope.id), by_entry=by_entry
        )

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
        entry_id, name = delivery.entry_id.decode(), delivery.source.name
        log.error("entry %s on %s set aside: %s", entry_id, name, reason)
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
            record=run.recorded and run.progress is None,
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
            outcome.result_key = run.delivery.source.result(envelope.id)
            outcome.result = protocol.pack_value({"ok": True, "value": value})
        return outcome

    def _failure(self, run: Run, exc: BaseException, trace: str) -> Outcome:
        task, envelope = run.task, run.envelope
        retry = exc if isinstance(exc, Retry) else None
        if retry is not None and retry.exc is not None:  # recorded as if it had been raised
            exc, trace = retry.exc, _traceback_of(retry.exc)
        if isinstance(exc, Reject):
            return self._dead(run.delivery, envelope, task, f"rejected: {exc.reason}", exc, trace)
        is_retryable = retry is not None or isinstance(exc, task.options.retry_on)
        if not is_retryable:
            return self._dead(run.delivery, envelope, task, "not retryable", exc, trace)
        if envelope.attempt > task.options.max_retries:
            attempts = f"{envelope.attempt} attempt{'s' if envelope.attempt != 1 else ''}"
            reason = f"failed {attempts} (max_retries={task.options.max_retries})"
            return self._dead(run.delivery, envelope, task, reason, exc, trace)
        if isinstance(exc, HandlerTimeout) and not _names_timeouts(task.options.retry_on):
            reason = "ran past its timeout: not retried (retry_on does not name HandlerTimeout)"
            return self._dead(run.delivery, envelope, task, reason, exc, trace)
        if retry is not None and retry.delay is not None:
            delay = retry.delay
        elif task.options.retry_delay is not None:
            delay = task.options.retry_delay
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
        next_attempt = protocol.encode(envelope.next_attempt(failed_ms, due_ms))
        return Outcome(
            "retry",
            run.delivery.entry_id,
            next_attempt,
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
            outcome.result_key = delivery.source.result(envelope.id)
            outcome.result = _error_result(error_type, error, trace)
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


def _deadline(envelope: protocol.Envelope) -> int:
    """The message's deadline (Unix ms, its `expires` header), 0 when it has none."""
    deadline = envelope.headers.get(protocol.EXPIRES) if envelope.headers else None
    if isinstance(deadline, bool) or not isinstance(deadline, int):
        return 0
    return deadline


def _expired(
    delivery: Delivery, envelope: protocol.Envelope, task: Handler, deadline: int
) -> Outcome:
    """The outcome of a message not started by its deadline: acknowledged, never run, not
    retried nor dead-lettered, its status "expired" (a stored result says so)."""
    when = datetime.fromtimestamp(deadline / 1000, timezone.utc).isoformat(timespec="seconds")
    why = f"not started by its deadline ({when})"
    log.info(
        "task %s id %s expired: %s",
        task.name,
        envelope.id,
        why,
        extra=_event(task.name, envelope.id, "expired"),
    )
    outcome = Outcome(
        "expired",
        delivery.entry_id,
        task=task.name,
        status_key=delivery.source.status(envelope.id),
        state="expired",
        error=why,
        message_id=envelope.id,
        attempt=envelope.attempt,
        workflow=failure_of(envelope, "Expired", why),
        partition_key=protocol.partition_key_of(envelope),
    )
    if task.options.store_result:
        outcome.result_key = delivery.source.result(envelope.id)
        outcome.result = _error_result("Expired", why)
    return outcome


def _reserved_start(headers: dict[str, Any]) -> int:
    """The start a rate limit reserved for a message (Unix ms), 0 when it has none."""
    reserved = headers.get(protocol.RATE_SLOT)
    if isinstance(reserved, bool) or not isinstance(reserved, (int, float)):
        return 0
    return int(reserved)


def start_row(source: Source, run: Run, rate: Rate | None) -> StartRow:
    """What the start step needs of one run (see scripts.Scripts.start); `rate`: the task's
    rate limit now (its own, or an override)."""
    options, name = run.task.options, run.task.name
    limit = options.concurrency_limit
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
            protocol.encode(envelope),  # with its id (one sent by entry has none: ids.py)
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
    """`awaitable`'s value, or a HandlerTimeout that names the handler's limit when it runs
    past `timeout` (asyncio's own has no text: the dead letter would say "TimeoutError: ").
    A TimeoutError the handler raised itself goes through as it is."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError as exc:
        if isinstance(exc.__cause__, asyncio.CancelledError):
            raise HandlerTimeout(f"the handler ran past its timeout={timeout:g}s") from None
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


def _names_timeouts(retry_on: tuple[type[BaseException], ...]) -> bool:
    """Whether `retry_on` asks for timed-out runs to be retried: it names HandlerTimeout or
    TimeoutError, not only a base of every error (Exception, the default)."""
    return any(
        issubclass(HandlerTimeout, kind) and kind not in (Exception, BaseException)
        for kind in retry_on
    )


def _traceback_of(exc: BaseException) -> str:
    """The traceback text of an exception (only its type and text when it was never raised)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _brief(exc: BaseException | None) -> str:
    """ "ErrorType: message" for a status, cut to STATUS_ERROR_CHARS."""
    if exc is None:
        return ""
    return f"{type(exc).__name__}: {exc}"[:STATUS_ERROR_CHARS]


def _event(task: str, task_id: str, outcome: str) -> dict[str, str]:
    """The fields a log line about one run carries (structured in JSON logs)."""
    return {"task": task, "task_id": task_id, "outcome": outcome}


RESULT_TRACEBACK_CHARS = 8000
"""The most of a handler's traceback a failed result keeps (its end: where it was raised);
the dead letter keeps all of it."""


def _error_result(error_type: str, error: str, trace: str = "") -> bytes:
    failed = {"ok": False, "error_type": error_type, "error": error}
    if trace:
        failed["traceback"] = trace[-RESULT_TRACEBACK_CHARS:]
    packed: bytes = msgpack.packb(failed)
    return packed


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
