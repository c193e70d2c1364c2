"""Encode and decode the versioned msgpack wire format (the contract is docs/PROTOCOL.md).

A stream entry has one field, `m`, whose value is a msgpack map. This module turns
`Envelope` and `DeadLetter` values into those bytes and back, and never touches Redis.
Only plain data crosses the wire (nil, bool, int, float, str, bytes, arrays, maps): never
pickle, so a message can neither run code on a worker nor be made by Python alone.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from ..errors import DecodeError, EncodeError
from .keys import NAME, NAME_RULE

VERSION = 1
FIELD = b"m"
"""The one stream-entry field that carries the message."""
RECORDED = b"r"
"""An entry field ("1") a producer adds when the message's status records the entry
(`entry`: its entry id, "high|ID" or "low|ID" in a band's stream): a worker runs it without
a start step, since a cancel deletes it from the stream before any worker reads it, and
"running" is read from the pending entries list. An entry without it (another producer, a
retry, a tick) goes through the start step."""


ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
ID_RULE = "1-64 ASCII letters, digits, '_' or '-' (streamwork makes 32 lowercase hex digits)"


# -- reserved header names: streamwork's own metadata in `headers` (docs/PROTOCOL.md) ------

PARTITION_KEY = "partition_key"
"""The header carrying a message's partition key: the messages of one key run one at a
time, in send order (see the partitions guide)."""
FAIR_KEY = "fair_key"
"""The header carrying a fair task's key (the customer, tenant... its messages take turns by)."""
RATE_SLOT = "rate_slot"
"""The start a rate limit reserved for a message it held back (Unix ms, Redis's clock)."""
WORKFLOW = "workflow"
NODE = "node"
"""A workflow child's headers: the workflow's id and the child's node index."""
EXPIRES = "expires"
"""The header carrying a message's deadline (Unix ms): not started by then, it never runs."""
SCHEDULE = "schedule"
SCHEDULED_FOR = "scheduled_for"
"""A schedule tick's headers: the schedule's id and the tick's due time (Unix ms)."""
RESERVED_HEADERS = frozenset(
    {PARTITION_KEY, FAIR_KEY, RATE_SLOT, WORKFLOW, NODE, SCHEDULE, SCHEDULED_FOR, EXPIRES}
)


def partition_key_of(envelope: Envelope) -> str:
    """The message's partition key, "" when it has none."""
    headers = envelope.headers
    key = headers.get(PARTITION_KEY) if headers else None
    return key if isinstance(key, str) else ""


def new_id() -> str:
    """A fresh task id: 32 lowercase hex digits (128 random bits)."""
    return os.urandom(16).hex()


_clock_offset_ms = 0
"""Added to the wall clock by `now_ms`: testing.run_until_idle(advance_time=True) moves it so
delayed messages and retries fall due without real sleeping. Always 0 outside such tests."""


def now_ms() -> int:
    """Unix time in ms, as every due time, `ts` and delayed-set score is written and read."""
    return int(time.time() * 1000) + _clock_offset_ms


def clock_offset_ms() -> int:
    """How far `now_ms` is ahead of the wall clock (0 outside tests that advance time)."""
    return _clock_offset_ms


def advance_clock(ms: int) -> None:
    """Move `now_ms` forward by `ms` (tests only: see testing.run_until_idle)."""
    global _clock_offset_ms
    _clock_offset_ms += max(0, int(ms))


def reset_clock() -> None:
    global _clock_offset_ms
    _clock_offset_ms = 0


@dataclass(frozen=True)
class Envelope:
    """One message as it travels: a task to run with its arguments, or an event published
    to a topic with its payload; and its history so far."""

    id: str
    task: str = ""
    """The task to run ("" for an event published to a topic)."""
    topic: str = ""
    """The topic it was published to ("" for a task)."""
    payload: Any = None
    """An event's data (topics)."""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    enqueued_ms: int = 0
    attempt: int = 1
    first_failure_ms: int | None = None

    def next_attempt(self, failed_ms: int, due_ms: int) -> Envelope:
        """The envelope of the retry, due at `due_ms`, after a failure at `failed_ms`."""
        return replace(
            self,
            attempt=self.attempt + 1,
            enqueued_ms=due_ms,
            first_failure_ms=self.first_failure_ms or failed_ms,
        )


def made(**fields: Any) -> Envelope:
    """An Envelope of all ten `fields`, made without the frozen dataclass's `__setattr__`
    per field (decode and a plain send make one per message)."""
    envelope = object.__new__(Envelope)
    envelope.__dict__.update(fields)
    return envelope


def with_id(envelope: Envelope, message_id: str) -> Envelope:
    """`envelope`, named `message_id` (one decoded without an id: read off its entry)."""
    object.__setattr__(envelope, "id", message_id)  # frozen, and fresh from decode
    return envelope


def check_plain(value: Any, where: str) -> None:
    """Raise EncodeError if `value` holds a map with a key that is not a string, at any depth.

    msgpack would encode such a map, but no worker (and no other language's decoder set to
    strict keys) could read it back: the message would be dead-lettered as undecodable.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                raise EncodeError(
                    f"cannot encode {where}: it has a map key {key!r} of type "
                    f"{type(key).__name__} — map keys must be strings at every depth"
                )
            if isinstance(item, _CONTAINERS):
                check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if isinstance(item, _CONTAINERS):
                check_plain(item, f"{where}[{index}]")


_CONTAINERS = (dict, list, tuple)


MAX_MESSAGE_BYTES = 64 * 2**20
"""The default bound on one encoded message: 64 MiB, well under Redis's 512 MB per value."""
REDIS_MAX_BULK = 512 * 2**20


def size_text(count: int) -> str:
    """A byte count as people read it: "900 bytes", "12.5 KiB", "64 MiB"."""
    if count < 1024:
        return f"{count} byte{'s' if count != 1 else ''}"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"  # unreachable: 1024 bytes and up have a unit


def check_size(body: bytes, limit: int, what: str) -> bytes:
    """`body`, unless it is over `limit` bytes: then EncodeError saying what to do."""
    if len(body) > limit:
        raise EncodeError(
            f"{what} is {size_text(len(body))} encoded, over max_message_bytes "
            f"({size_text(limit)}): pass large data by reference (a URL or a key), or "
            "raise App(max_message_bytes=...) (Redis refuses values over 512 MB)"
        )
    return body


@dataclass(frozen=True)
class ChildFailed:
    """In a workflow, the value a failed child leaves in place of its result: a chord with
    on_failure="continue" passes it to its callback among the results of the others."""

    task: str
    error_type: str
    """"Cancelled" for a child that was cancelled; else the exception's type."""
    error: str


CHILD_FAILED_EXT = 1
"""The msgpack ext type code of a ChildFailed: an array [task, error type, error]."""


def _ext_default(value: Any) -> Any:
    if isinstance(value, ChildFailed):
        data = msgpack.packb([value.task, value.error_type, value.error], use_bin_type=True)
        return msgpack.ExtType(CHILD_FAILED_EXT, data)
    raise TypeError(f"can not serialize {type(value).__name__!r} object")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == CHILD_FAILED_EXT:
        task, error_type, error = msgpack.unpackb(data, raw=False)
        return ChildFailed(task, error_type, error)
    return msgpack.ExtType(code, data)


def pack_value(value: Any) -> bytes:
    """A result (or any value) as msgpack, ChildFailed values included; TypeError or
    ValueError if it is not plain data."""
    packed: bytes = msgpack.packb(value, use_bin_type=True, default=_ext_default)
    return packed


def unpack_value(raw: bytes) -> Any:
    """The value `pack_value` packed."""
    return msgpack.unpackb(raw, raw=False, ext_hook=_ext_hook)


INT_RANGE = (-(2**63), 2**64 - 1)
"""The integers msgpack can carry."""


def _unpackable(value: Any, where: str) -> str | None:
    """Where in `value` (found under `where`) msgpack fails, and why, or None."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes, float)):
        return None
    if isinstance(value, int):
        if INT_RANGE[0] <= value <= INT_RANGE[1]:
            return None
        return (
            f"{where} is the int {value}, out of msgpack's range (-2**63 to 2**64-1): send "
            "it as a string"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unpackable(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _unpackable(item, f"{where}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, ChildFailed):
        return None
    return f"{where} is a {type(value).__name__}, which is not plain data"


def _pack(value: dict[str, Any]) -> bytes:
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True, default=_ext_default)
    except (TypeError, ValueError, OverflowError) as exc:
        where = next(
            (
                found
                for name in ("args", "kwargs", "payload", "headers")
                if name in value and (found := _unpackable(value[name], name))
            ),
            str(exc),
        )
        raise EncodeError(
            f"cannot encode message: {where} — only None, bool, int, float, str, bytes, "
            "lists, tuples and dicts with string keys can be sent"
        ) from None
    return packed


def encode(envelope: Envelope, with_id: bool = True) -> bytes:
    """The msgpack bytes of `envelope`; raise EncodeError if an argument is not plain data.
    `with_id=False` leaves the id out: the first attempt of a message whose id is read off
    its stream entry (ids.py)."""
    body: dict[str, Any] = {"v": VERSION, "id": envelope.id} if with_id else {"v": VERSION}
    # Checked only where a map can hide (this runs for every message sent).
    for item in envelope.args:
        if isinstance(item, _CONTAINERS):
            check_plain(envelope.args, "args")
            break
    if envelope.kwargs:
        check_plain(envelope.kwargs, "kwargs")
    if envelope.headers:
        check_plain(envelope.headers, "headers")
    if envelope.topic:
        check_plain(envelope.payload, "payload")
        body["topic"] = envelope.topic
        body["payload"] = envelope.payload
    else:
        body["task"] = envelope.task
        body["args"] = list(envelope.args)
    body["ts"] = envelope.enqueued_ms
    if envelope.kwargs:
        body["kwargs"] = envelope.kwargs
    if envelope.headers:
        body["headers"] = envelope.headers
    if envelope.attempt != 1:
        body["attempt"] = envelope.attempt
    if envelope.first_failure_ms is not None:
        body["ff"] = envelope.first_failure_ms
    return _pack(body)


def _unpack(raw: Any) -> Any:
    if not isinstance(raw, (bytes, bytearray)):
        raise DecodeError(f"expected msgpack bytes, got {type(raw).__name__}")
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_ext_hook)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DecodeError(
            f"not valid msgpack ({detail}; {size_text(len(raw))} starting {bytes(raw[:16])!r})"
        ) from None


_FIELDS: dict[str, tuple[type, Any]] = {
    "id": (str, ""),
    "task": (str, ""),
    "topic": (str, ""),
    "args": (list, list),
    "kwargs": (dict, dict),
    "headers": (dict, dict),
    "ts": (int, 0),
    "attempt": (int, 1),
    "ff": (int, None),
}
"""Each wire field's type and its default when absent (list and dict: a fresh one)."""


_NAMES_SEEN: set[str] = set()
"""Task and topic names that passed the NAME check (a few per app): checked once, not per
message. Bounded: past 10,000 distinct names every message is checked again."""


def decode(raw: Any) -> Envelope:
    """The Envelope in `raw` (an entry's `m` value); raise DecodeError if it is not one.
    A message without an id (the first attempt of one sent by entry, ids.py) has id "":
    its reader names it with `with_id`.

    The usual message — every field present has its type, valid names — takes the fast
    path; anything else goes through `_decode_checked`, which says what is wrong."""
    body = _unpack(raw)
    if type(body) is dict and body.get("v") == VERSION:
        get = body.get
        id_, task, topic = get("id"), get("task", ""), get("topic", "")
        args, kwargs, headers = get("args", ()), get("kwargs"), get("headers")
        ts, attempt, ff = get("ts", 0), get("attempt", 1), get("ff")
        if (
            (id_ is None or (type(id_) is str and ID.fullmatch(id_)))
            and type(task) is str
            and type(topic) is str
            and (task or topic)
            and (not task or task in _NAMES_SEEN)
            and (not topic or topic in _NAMES_SEEN)
            and type(args) in (list, tuple)
            and (kwargs is None or type(kwargs) is dict)
            and (headers is None or type(headers) is dict)
            and type(ts) is int
            and type(attempt) is int
            and (ff is None or type(ff) is int)
        ):
            return made(
                id=id_ or "",
                task=task,
                topic=topic,
                payload=get("payload"),
                args=tuple(args),
                kwargs={} if kwargs is None else kwargs,
                headers={} if headers is None else headers,
                enqueued_ms=ts,
                attempt=attempt,
                first_failure_ms=ff,
            )
    envelope = _decode_checked(body)
    if len(_NAMES_SEEN) < 10_000:
        _NAMES_SEEN.update(name for name in (envelope.task, envelope.topic) if name)
    return envelope


def _decode_checked(body: Any) -> Envelope:
    if not isinstance(body, dict):
        raise DecodeError(f"message is a msgpack {type(body).__name__}, not a map")
    version = body.get("v")
    if version != VERSION:
        raise DecodeError(f"unsupported message version {version!r} (this worker reads {VERSION})")
    if "task" not in body and "topic" not in body:
        raise DecodeError("message has neither a 'task' nor a 'topic' field")
    fields = {
        name: body[name] if name in body else (default() if default in (list, dict) else default)
        for name, (_, default) in _FIELDS.items()
    }
    # What a worker logs must be safe to log: names and ids are checked, never printed raw.
    if "id" in body and (not isinstance(fields["id"], str) or not ID.fullmatch(fields["id"])):
        raise DecodeError(f"invalid id {fields['id']!r}: {ID_RULE}")
    for name in ("task", "topic"):
        value = fields[name]
        if isinstance(value, str) and value and not NAME.fullmatch(value):
            raise DecodeError(f"invalid {name} name {value!r}: {NAME_RULE}")
    for name, value in fields.items():
        kind = _FIELDS[name][0]
        # bool is an int in Python, never a count or a time on the wire
        if type(value) is not kind and not (
            isinstance(value, kind) and not isinstance(value, bool)
        ):
            if value is None and name == "ff":
                continue
            raise DecodeError(f"field {name!r} has the wrong type: {type(value).__name__}")
    return Envelope(
        id=fields["id"],
        task=fields["task"],
        topic=fields["topic"],
        payload=body.get("payload"),
        args=tuple(fields["args"]),
        kwargs=fields["kwargs"],
        headers=fields["headers"],
        enqueued_ms=fields["ts"],
        attempt=fields["attempt"],
        first_failure_ms=fields["ff"],
    )


def entry_body(fields: dict[bytes, Any]) -> Any:
    """The `m` value of a stream entry's fields, or raise DecodeError naming what is there."""
    if FIELD not in fields:
        names = ", ".join(repr(k) for k in list(fields)[:5]) or "none"
        raise DecodeError(f"entry has no 'm' field (fields: {names})")
    return fields[FIELD]


@dataclass(frozen=True)
class DeadLetter:
    """A message set aside for people: the original entry and why it failed."""

    message: bytes | dict[Any, Any]
    """The original `m` bytes, or the entry's raw fields when it had no `m`."""
    reason: str
    queue: str
    original_id: str
    error_type: str = ""
    error: str = ""
    traceback: str = ""
    attempts: int = 0
    first_failure_ms: int = 0
    last_failure_ms: int = 0
    worker: str = ""
    task: str = ""
    task_id: str = ""


def encode_dead_letter(letter: DeadLetter) -> bytes:
    message = letter.message
    if isinstance(message, dict):
        message = {_text(k): v for k, v in message.items()}
    return _pack(
        {
            "v": VERSION,
            "message": message,
            "reason": letter.reason,
            "queue": letter.queue,
            "original_id": letter.original_id,
            "error_type": letter.error_type,
            "error": letter.error,
            "traceback": letter.traceback,
            "attempts": letter.attempts,
            "first_failure_ms": letter.first_failure_ms,
            "last_failure_ms": letter.last_failure_ms,
            "worker": letter.worker,
            "task": letter.task,
            "task_id": letter.task_id,
        }
    )


def decode_dead_letter(raw: Any) -> DeadLetter:
    body = _unpack(raw)
    if not isinstance(body, dict) or "reason" not in body:
        raise DecodeError("not a streamwork dead letter")
    body.pop("v", None)
    known = DeadLetter.__dataclass_fields__
    return DeadLetter(**{k: v for k, v in body.items() if k in known})


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
