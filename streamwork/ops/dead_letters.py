"""Dead letters: list, show, replay and purge the messages a queue set aside.

Reads and moves entries of `NS:{QUEUE}:dlq`; never decides what becomes a dead letter
(execution.py does). Replay puts a message back at the end of its queue with its attempts
reset and its id kept, one atomic Lua step per batch, so an interrupted replay loses and
duplicates nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .._base import protocol
from .._base.keys import Source
from .._redis import reads
from ..errors import DecodeError, UnknownDeadLetter

if TYPE_CHECKING:
    from .._redis.connection import Connection

PAGE = 100


@dataclass(frozen=True)
class DeadLetterEntry:
    """One entry of a dead-letter stream: its id there, and the dead letter."""

    id: str
    letter: protocol.DeadLetter

    def as_dict(self) -> dict[str, Any]:
        letter = asdict(self.letter)
        message = letter.pop("message")
        try:
            decoded = protocol.decode(message)
            letter["message"] = {
                "args": list(decoded.args),
                "kwargs": decoded.kwargs,
                "headers": decoded.headers,
            }
        except DecodeError:
            letter["message"] = repr(message)
        return {"id": self.id, **letter}


def describe(letter: protocol.DeadLetter) -> str:
    """The reason, then the last error (type: message) when it says more than the reason."""
    error = f"{letter.error_type}: {letter.error}" if letter.error_type else letter.error
    if not letter.error or letter.error == letter.reason:
        return letter.reason
    return f"{letter.reason} — {error}"


def _entries(rows: list[tuple[bytes, dict[bytes, Any]]]) -> list[DeadLetterEntry]:
    entries = []
    for entry_id, fields in rows:
        try:
            letter = protocol.decode_dead_letter(fields.get(protocol.FIELD))
        except DecodeError:
            letter = protocol.DeadLetter(
                message=dict(fields),
                reason="(not a streamwork dead letter)",
                queue="",
                original_id="",
            )
        entries.append(DeadLetterEntry(entry_id.decode(), letter))
    return entries


def list_dead_letters(
    connection: Connection, source: Source, limit: int = PAGE
) -> list[DeadLetterEntry]:
    """The oldest `limit` dead letters of a queue or subscriber group."""
    with connection.translate_errors():
        return _entries(reads.entries(connection.redis, source.dead_letters, count=limit))


def count(connection: Connection, source: Source) -> int:
    with connection.translate_errors():
        return int(reads.length(connection.redis, source.dead_letters))


def show(connection: Connection, source: Source, entry_id: str) -> DeadLetterEntry:
    """One dead letter by its id; UnknownDeadLetter if there is none."""
    with connection.translate_errors():
        rows = reads.entries(connection.redis, source.dead_letters, entry_id, entry_id)
    if not rows:
        raise UnknownDeadLetter(f"no dead letter {entry_id} in {source.name!r}")
    return _entries(rows)[0]


SCAN = 2000
"""How many dead letters one search looks at, at most: a page of a filtered search over a
million dead letters reads this many entries, never the whole stream."""


def matcher(task: str | None, text: str | None) -> Callable[[DeadLetterEntry], bool] | None:
    """What a search keeps: letters of task `task` whose reason, error type, error or
    traceback contains `text` (case-insensitive); None when both are empty (keep all)."""
    if not task and not text:
        return None
    needle = (text or "").casefold()

    def matches(entry: DeadLetterEntry) -> bool:
        letter = entry.letter
        if task and letter.task != task:
            return False
        if not needle:
            return True
        where = (letter.reason, letter.error_type, letter.error, letter.traceback)
        return any(needle in (part or "").casefold() for part in where)

    return matches


@dataclass(frozen=True)
class SearchPage:
    """One page of a dead-letter search, newest first."""

    entries: list[DeadLetterEntry]
    next_before: str | None
    """Pass as `before` for the next page (older letters); None when none are left."""
    scanned: int
    """Entries looked at for this page (at most SCAN)."""


def search(
    connection: Connection,
    source: Source,
    *,
    task: str | None = None,
    text: str | None = None,
    before: str | None = None,
    limit: int = 50,
    scan: int = SCAN,
) -> SearchPage:
    """Up to `limit` dead letters older than the id `before` (newest first), kept by
    `matcher(task, text)`; reads at most `scan` entries, so a search over a huge stream
    returns a page (perhaps a short one) and where to go on, never loading everything."""
    match = matcher(task, text)
    end = "+" if before is None else "(" + before
    found: list[DeadLetterEntry] = []
    scanned = 0
    with connection.translate_errors():
        while len(found) < limit and scanned < scan:
            want = limit - len(found) if match is None else min(PAGE * 5, scan - scanned)
            rows = reads.entries_newest_first(
                connection.redis, source.dead_letters, end, count=want
            )
            if not rows:
                return SearchPage(found, None, scanned)
            for entry in _entries(rows):
                scanned += 1
                end = "(" + entry.id
                if match is None or match(entry):
                    found.append(entry)
                    if len(found) == limit:
                        break
            if len(rows) < want and len(found) < limit:
                return SearchPage(found, None, scanned)
    return SearchPage(found, end[1:], scanned)


def _fresh(letter: protocol.DeadLetter) -> bytes | None:
    """The message to enqueue again, its attempts reset; None if it cannot be run."""
    if not isinstance(letter.message, bytes):
        return None
    try:
        envelope = protocol.decode(letter.message)
    except DecodeError:
        return None
    # A first attempt named by its entry (ids.py) carries its id from now on: the replay is
    # a new entry, and its status stays under the id people know.
    return protocol.encode(
        replace(
            envelope,
            id=envelope.id or letter.task_id,
            attempt=1,
            first_failure_ms=None,
            enqueued_ms=protocol.now_ms(),
        )
    )


@dataclass
class ReplayReport:
    replayed: int = 0
    skipped: list[str] = field(default_factory=list)
    """Ids left in place: undecodable messages (replaying would only dead-letter them again)."""
    missing: list[str] = field(default_factory=list)
    """Ids asked for that are not (or no longer) in the dead letters."""


def replay(
    connection: Connection,
    source: Source,
    ids: list[str] | None = None,
    status_ttl_ms: int = 86_400_000,
    match: Callable[[DeadLetterEntry], bool] | None = None,
) -> ReplayReport:
    """Put dead letters back (the given ids, or all, or all that `match` keeps): on their
    queue, or for a subscriber group on that group's retry stream, so other groups do not
    receive them again."""
    report = ReplayReport()
    with connection.translate_errors():
        if ids is None:
            pages = _all_pages(connection, source.dead_letters)
        else:
            pages = [_by_ids(connection, source.dead_letters, ids, report.missing)]
        for page in pages:
            moves = []
            for entry in page:
                if match is not None and not match(entry):
                    continue
                body = _fresh(entry.letter)
                if body is None:
                    report.skipped.append(entry.id)
                else:
                    letter = entry.letter
                    moves.append((entry.id.encode(), body, letter.task_id, letter.task))
            if moves:
                now = protocol.now_ms()
                replayed = connection.scripts.replay(source, moves, now, status_ttl_ms)
                report.replayed += int(replayed)
    return report


def _all_pages(connection: Connection, key: str) -> Any:
    start = "-"
    while True:
        rows = reads.entries(connection.redis, key, start, count=PAGE)
        if not rows:
            return
        yield _entries(rows)
        start = "(" + rows[-1][0].decode()


def _by_ids(
    connection: Connection, key: str, ids: list[str], missing: list[str]
) -> list[DeadLetterEntry]:
    found = []
    for entry_id, rows in zip(ids, reads.entries_by_id(connection.redis, key, ids), strict=True):
        if rows:
            found += _entries(rows)
        else:
            missing.append(entry_id)
    return found


def purge(connection: Connection, source: Source) -> int:
    """Delete every dead letter of a queue or subscriber group; returns how many there were."""
    with connection.translate_errors():
        length, _ = reads.take_all(connection.redis, source.dead_letters)
    return int(length)
