"""Message ids: a random one, or one read off the stream entry a send wrote.

Owns the two shapes of a message id, 32 lowercase hex digits either way. A random id
(`protocol.new_id`) is made before the send, travels in the message and names the status
hash the send writes. An *entry id* is made after it, from the entry a plain send wrote:
the entry's milliseconds (12 digits) and sequence (8), its priority band (1) and a hash of
its queue's name (11). A message sent that way carries no id in its first attempt: its
worker reads the id off the entry, and `status()`, `cancel()` and `app.handle()` find
the message from its id alone (the queue by the hash, then the entry, then the pending
entries list), so the send writes the entry and nothing else. A retry, a dead letter and
a replay carry the id in the message. It never talks to Redis.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from .protocol import Envelope, with_id

BANDS = ("default", "high", "low")
"""A priority band's digit in an entry id is its index here (no bands: "default")."""
_HASH_DIGITS = 11
_ENTRY_ID = re.compile(r"[0-9a-f]{20}[012][0-9a-f]{11}")


@lru_cache(maxsize=4096)
def queue_hash(queue: str) -> str:
    """The last 11 digits of the entry ids of `queue` (a queue's name, or a partition's)."""
    # SHA-256: in every language's standard library, so any producer can name its messages
    return hashlib.sha256(queue.encode()).hexdigest()[:_HASH_DIGITS]


def from_entry(queue: str, band: str | None, entry_id: bytes | str) -> str:
    """The message id of the first attempt at `entry_id` in `queue`'s stream of `band`."""
    ms, _, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
    return f"{int(ms):012x}{int(seq):08x}{_tail(queue, band)}"


def from_entries(queue: str, band: str | None, entry_ids: list[bytes]) -> list[str]:
    """`from_entry` of each of a batch's entries (most share their milliseconds)."""
    tail, last, head, found = _tail(queue, band), b"", "", []
    for entry_id in entry_ids:
        ms, _, seq = entry_id.partition(b"-")
        if ms != last:
            last, head = ms, f"{int(ms):012x}"
        found.append(f"{head}{int(seq):08x}{tail}")
    return found


@lru_cache(maxsize=4096)
def _tail(queue: str, band: str | None) -> str:
    """The last 12 digits of an entry id: its band's, then its queue's hash."""
    return f"{BANDS.index(band or 'default')}{queue_hash(queue)}"


def entry_of(message_id: str, queue: str) -> str | None:
    """Where the first attempt of `message_id` waits in `queue`, as a status's `entry` says
    it (lua/_recorded.lua: the entry id, after "high|" or "low|" in a band's stream); None
    when `message_id` is not an entry id of `queue`."""
    if not _ENTRY_ID.fullmatch(message_id) or not message_id.endswith(queue_hash(queue)):
        return None
    ms, seq = int(message_id[:12], 16), int(message_id[12:20], 16)
    band = BANDS[int(message_id[20])]
    return f"{ms}-{seq}" if band == "default" else f"{band}|{ms}-{seq}"


def named(envelope: Envelope, queue: str, band: str | None, entry_id: bytes | str) -> Envelope:
    """`envelope` decoded from `entry_id` of `queue`'s stream of `band`, with its id: the
    one it carries, else the entry's (a first attempt sent by entry)."""
    if envelope.id or not entry_id:
        return envelope
    return with_id(envelope, from_entry(queue, band, entry_id))
