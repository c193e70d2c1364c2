"""What a send returns: `TaskHandle` — the message's id, its result (`result`, waiting with
a look at its status for a cancel), its status and its cancel; each sync/async pair is one
plan (see _base/plans.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import msgpack

from .._base import metrics, protocol
from .._base.handler import HandlerOptions
from .._base.keys import QueueKeys
from .._base.plans import Plan, run_plan, run_plan_async, step
from .._lifecycle.lifecycle import CancelResult, TaskStatus, decode_cancel, parse_status
from .._redis import commands
from .._redis.connection import MAX_BLOCK, block_for
from .._redis.scripts import as_fields
from .._send.producer import Producer
from ..errors import (
    ConfigurationError,
    DecodeError,
    ResultTimeout,
    TaskCancelled,
    TaskFailed,
)


class HandledTask(Protocol):
    """What a handle needs of its Task."""

    @property
    def name(self) -> str: ...
    @property
    def options(self) -> HandlerOptions: ...
    @property
    def producer(self) -> Producer: ...
    @property
    def keys(self) -> QueueKeys: ...
    def partition_of(self, message_id: str) -> int | None: ...
    def keys_for(self, message_id: str) -> QueueKeys: ...


@dataclass(frozen=True)
class TaskHandle:
    """What a send returns: the message id, and its result when the task stores results."""

    id: str
    task: HandledTask = field(repr=False)
    is_duplicate: bool = False
    """True when a send with an idempotency key found the key held: nothing was queued."""
    queue: str | None = None
    """The queue it was sent to with `send_with(queue=...)` (None: its task's own)."""

    @property
    def _keys(self) -> QueueKeys:
        if self.queue is None:
            return self.task.keys_for(self.id)
        return QueueKeys(self.task.keys.namespace, self.queue)

    @property
    def _key(self) -> str:
        return self._keys.result(self.id)

    @property
    def partition(self) -> int | None:
        """The partition of its queue the message was sent to (None: a plain queue)."""
        return self.task.partition_of(self.id)

    def _check(self) -> None:
        if not self.task.options.store_result:
            raise ConfigurationError(
                f"task {self.task.name!r} does not store results: declare it with store_result=True"
            )

    def result(self, timeout: float | None = 10.0) -> Any:
        """Wait up to `timeout` seconds (None: without limit) for the return value.

        TaskFailed if it ended for good (dead-lettered, failed), TaskCancelled at once if it
        was cancelled (or when it is, while waiting), ResultTimeout past the timeout."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            return run_plan(self._result_plan(timeout), connection.redis)

    async def result_async(self, timeout: float | None = 10.0) -> Any:
        """Like `result`, for asyncio code."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            return await run_plan_async(self._result_plan(timeout), connection.async_redis())

    def _result_plan(self, timeout: float | None) -> Plan[Any]:
        self._check()
        wait = _ResultWait(timeout, self.task.producer.track_status)
        while True:
            key = self._status_key if wait.looks_at_status() else None
            if key and (yield step(commands.hash_field, key, "state")) == CANCELLED:
                self._raise_cancelled((yield step(commands.hash_field, key, "reason")))
            block = wait.block()
            raw = yield step(commands.wait_result, self._key, block)
            if raw is not None or wait.is_over():
                return self._decode(raw, timeout)

    def _raise_cancelled(self, raw_reason: bytes | None) -> NoReturn:
        reason = raw_reason.decode(errors="replace") if raw_reason else None
        why = f": {reason}" if reason else ""
        raise TaskCancelled(f"task {self.task.name} id {self.id} was cancelled{why}", reason)

    # -- lifecycle ------------------------------------------------------------------------

    def _check_tracked(self) -> None:
        if not self.task.producer.track_status:
            raise ConfigurationError(
                "this app does not track message status (App(track_status=False)): there is "
                "no status to read and nothing to cancel"
            )

    @property
    def _status_key(self) -> str:
        self._check_tracked()
        return self._keys.status(self.id)

    def status(self) -> TaskStatus:
        """Where the message is now: queued, delayed, running (with progress), retrying,
        done, failed, dead, cancelled, or unknown (never sent, or its status expired)."""
        connection = self.task.producer.connection
        self._check_tracked()
        with connection.translate_errors():
            raw = as_fields(connection.scripts.status(self._keys, self.id))
        return parse_status(raw, protocol.now_ms())

    async def status_async(self) -> TaskStatus:
        """Like `status`, for asyncio code."""
        connection = self.task.producer.connection
        self._check_tracked()
        with connection.translate_errors():
            raw = as_fields(await connection.async_scripts().status(self._keys, self.id))
        return parse_status(raw, protocol.now_ms())

    def cancel(self, reason: str | None = None) -> CancelResult:
        """Cancel the message; returns what that did: "cancelled" (it was queued or delayed:
        it never runs; or it was cancelled already: a repeated cancel, say after a lost
        reply, answers as the first did), "cancelling" (it is running: its worker stops it —
        an async handler at once, a sync one when it checks `message.cancelled`), "finished"
        (it had already ended: done, failed or dead; nothing changes) or "unknown" (no such
        message, or its status expired)."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            reply = connection.scripts.cancel(*self._cancel_args(reason))
        return self._cancelled(reply)

    async def cancel_async(self, reason: str | None = None) -> CancelResult:
        """Like `cancel`, for asyncio code."""
        connection = self.task.producer.connection
        with connection.translate_errors():
            reply = await connection.async_scripts().cancel(*self._cancel_args(reason))
        return self._cancelled(reply)

    def _cancel_args(self, reason: str | None) -> tuple[QueueKeys, str, str, int, int, int]:
        if reason is not None and not isinstance(reason, str):
            raise ConfigurationError(f"reason must be a string, got {reason!r}")
        self._check_tracked()
        producer = self.task.producer
        return (
            self._keys,
            self.id,
            (reason or "")[:500],
            protocol.now_ms(),
            producer.status_ttl_ms,
            producer.events_cap(self.task.options.queue),
        )

    def _cancelled(self, reply: Any) -> CancelResult:
        what, before = decode_cancel(reply)
        if what == "cancelled" and before not in ("queued", "cancelled"):
            # delayed or waiting to retry: it left the delayed set now, no worker sees it
            metrics.run_cancelled(self.task.options.queue, "", self.task.name)
        return what

    def _decode(self, raw: bytes | None, timeout: float | None) -> Any:
        if raw is None:
            raise ResultTimeout(
                f"no result for task {self.task.name} id {self.id} within {timeout}s — "
                "is a worker running for queue " + repr(self.task.options.queue) + "?"
            )
        try:
            outcome = protocol.unpack_value(raw)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise DecodeError(f"the stored result of {self.id} cannot be read: {exc}") from None
        if not isinstance(outcome, dict):
            raise DecodeError(f"the stored result of {self.id} is not a streamwork result")
        if outcome.get("ok"):
            return outcome.get("value")
        trace = outcome.get("traceback")
        raise TaskFailed(
            outcome.get("error_type", "Error"),
            outcome.get("error", ""),
            trace if isinstance(trace, str) else "",
        )


CANCELLED = b"cancelled"
STATUS_LOOK_EVERY = 0.5
"""Seconds between two looks at a message's status while its result is awaited: a
cancelled message has no result to wait for."""


class _ResultWait:
    """The blocks a result wait is made of: each within the socket timeout, and, when the
    message's status is tracked, short enough to look at it between them."""

    def __init__(self, timeout: float | None, tracks_status: bool) -> None:
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise ConfigurationError(f"timeout must be seconds >= 0 or None, got {timeout!r}")
        self._deadline = math.inf if timeout is None else time.monotonic() + timeout
        self._tracks_status = tracks_status

    def looks_at_status(self) -> bool:
        return self._tracks_status

    def block(self) -> float:
        longest = STATUS_LOOK_EVERY if self._tracks_status else MAX_BLOCK
        if self._deadline == math.inf:
            return longest
        return min(longest, block_for(self._deadline))

    def is_over(self) -> bool:
        return time.monotonic() >= self._deadline


"""The header carrying a fair task's message key (its per-key rate limit reads it)."""
