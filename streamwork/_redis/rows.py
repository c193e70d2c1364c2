"""The rows that cross from Python to the Lua scripts, named: what a send writes with each
message (`SendState`), what the start step needs of one run (`StartRow`), and what the
settle step needs of one outcome (`SettleRow`, with its `OutcomeKind`). The scripts' headers
(lua/*.lua) say where each field goes; scripts.py flattens these into ARGV.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Protocol

OutcomeKind = Literal[
    "ack", "done", "retry", "dead", "cancelled", "expired", "held", "wait", "turn"
]
"""What a run decided: "ack" (on receipt, ack mode auto), "done", "retry", "dead",
"cancelled", "expired" (not started by its deadline: never run), "held" (due later, the same
attempt: a rate limit, or RateLimited), "wait" (for a concurrency slot) or "turn" (for its
partition key's turn)."""


class SendState(NamedTuple):
    """What the status and the "sent" event of each message of a send need."""

    task: str
    now_ms: int
    ttl_ms: int
    """The status's time to live; 0 writes no status."""
    events: str
    """The queue's event stream ("" when it records none)."""
    cap: int
    """The event stream's cap; 0 writes no event."""


NO_STATE = SendState("", 0, 0, "", 0)


class SettleValues(NamedTuple):
    """One outcome as settle.lua reads it (ARGV[6]: seventeen values)."""

    kind: OutcomeKind
    entry_id: bytes
    data: bytes
    score: int
    result_index: int
    """The result list's index in KEYS (0: no result stored)."""
    result: bytes
    wait_ms: int
    run_ms: int
    status_index: int
    """The status hash's index in KEYS (0: no status)."""
    state: str
    error: str
    message_id: str
    task: str
    attempt: int
    held_index: int
    """The held list's index in KEYS (0: none)."""
    partition_key: str
    order_index: int
    """The index in KEYS of the partition key's first order key (0: none)."""


class PlainDoneValues(NamedTuple):
    """A plain "done" outcome as settle.lua reads it (no result, error, held list,
    partition key or event: six values)."""

    entry_id: bytes
    wait_ms: int
    run_ms: int
    status_index: int
    attempt: int
    record_task: str
    """The task, when the status becomes the compact record (lua/_status.lua: a recorded
    message that ran once and reported no progress); "": its hash's fields are written."""


class StartRow(NamedTuple):
    """What the start step (start.lua) needs of one run."""

    task: str
    attempt: int
    message_id: str
    entry_id: bytes
    status_key: str | None
    rate_key: str | None
    interval_ms: float
    """The rate limit's emission interval (0: none)."""
    tolerance_ms: float
    slots_key: str | None
    """The concurrency limit's slot set (None: none)."""
    limit: int
    reserved_ms: int
    """The start a rate limit reserved for it (Unix ms, 0 for none)."""
    partition_key: str


class SettleRow(Protocol):
    """What the settle script needs of one outcome (runs.Outcome is one)."""

    kind: OutcomeKind
    entry_id: bytes
    data: bytes
    due_ms: int
    result_key: str | None
    result: bytes
    wait_ms: int
    run_ms: int
    status_key: str | None
    state: str
    error: str
    message_id: str
    task: str
    attempt: int
    held_key: str | None
    partition_key: str
    record: bool
    """A plain "done" whose status becomes the compact record (PlainDoneValues)."""
