"""What a worker process runs: a `Delivery` (one entry read from a stream), a `Run` (a
delivery prepared to run: its envelope, handler and status) and an `Outcome` (what its run
decided, written with its XACK by the Settler).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from .._base import protocol
from .._base.handler import Handler
from .._base.keys import Source
from .._base.message import Message
from .._lifecycle.lifecycle import ProgressReporter
from .._redis.rows import OutcomeKind
from .._workflows.recorder import Step

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
    record: bool = False
    """For a plain "done": its status is written as the compact record (a recorded message
    that ran once with no start step and reported no progress: lua/_status.lua)."""


WriteProgress = Callable[["Run", float, str, bytes], Coroutine[Any, Any, Any]]
"""Writes (run, fraction, note, packed data) to a running message's status (and event
stream)."""

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
    recorded: bool = False
    """It runs with no start step: a recorded entry (see lua/enqueue.lua), whose status
    nothing writes until its outcome."""
    by_entry: bool = False
    """Its id was read off its entry (ids.py): sent with nothing but the entry, it is a
    recorded message with no status until a step writes one."""

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
