"""Lanes: the worker's hot path on a single Redis, without redis-py's per-command layers.

A worker sends three commands per batch of messages — the read (XREADGROUP), the start step
and the settle step (EVALSHA) — and redis-py's asyncio client spends ~60 µs of CPU on each
beyond the bytes on the wire (a pool checkout and return, its retry wrapper, observability
hooks, a task per send for the write timeout, Python command packing). A `Lane` keeps one
connection of the client's own pool for one caller and sends each command straight on it,
packed by hiredis, reading the reply with redis-py's own parser (so its errors, timeouts and
reconnects are redis-py's: a failed send or read disconnects, the next command connects
again).

Owns: that connection, one command on it at a time, and EVALSHA's fallback to SCRIPT LOAD.
Never retries (the fetch loop, the start step and the settler wait out Redis errors
themselves) and never serves a Redis Cluster or memory:// (`Lane.of` says None: those keep
the client). `_HiredisPacking` makes every command of a single Redis's asyncio client
cheaper to pack, lane or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.exceptions

try:
    import hiredis
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    hiredis = None  # type: ignore[assignment]


class _HiredisPacking:
    """Packs commands with hiredis (C) instead of redis-py's asyncio packer (Python, several
    µs more for a command of a hundred arguments: the start and settle steps' keys and rows
    are a worker's largest commands). redis-py's sync client packs with hiredis already; its
    asyncio client never does. A value hiredis does not pack (a bool, None) and a client set
    to an encoding other than strict UTF-8 go to redis-py's packer, with its errors."""

    encoder: Any

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:
            args = (*first.split(), *args[1:])  # "CONFIG GET": two words, as redis-py sends
        if self.encoder.encoding == "utf-8" and self.encoder.encoding_errors == "strict":
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        return super().pack_command(*args)  # type: ignore[misc, no-any-return]


_PACKED: dict[type, type] = {}


def packed_by_hiredis(connection_class: type) -> type:
    """`connection_class` with `_HiredisPacking` (the class itself without hiredis)."""
    if hiredis is None:
        return connection_class
    if connection_class not in _PACKED:
        name = f"Packed{connection_class.__name__}"
        _PACKED[connection_class] = type(name, (_HiredisPacking, connection_class), {})
    return _PACKED[connection_class]


class Lane:
    """One connection of `client`'s pool, for one caller's commands, one at a time."""

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool
        self._connection: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, client: Any) -> Lane | None:
        """A lane on `client`, or None when it is not a single Redis's asyncio client made
        by streamwork (a cluster client, memory://'s, a caller's own)."""
        pool = getattr(client, "connection_pool", None)
        if pool is None or not issubclass(pool.connection_class, _HiredisPacking):
            return None
        return cls(client)

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply, unparsed (RESP2 lists, bytes, ints)."""
        async with self._lock:
            connection = self._connection
            if connection is None:
                connection = self._connection = await self._checkout()
            await connection.send_packed_command(connection.pack_command(*args))
            return await connection.read_response()

    async def _checkout(self) -> Any:
        try:
            return await self._pool.get_connection()
        except TypeError:  # redis-py before 5.3 asks for a command name (and ignores it)
            return await self._pool.get_connection("_")

    async def evalsha(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered script (redis-py's Script: its `sha` and `script`), loading it
        first if this Redis does not know it (restarted, flushed, another server)."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            script.sha = (await self.execute("SCRIPT", "LOAD", script.script)).decode()
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    async def read(
        self, group: str, consumer: str, streams: dict[str, str], count: int, block_ms: int | None
    ) -> Any:
        """XREADGROUP, its reply shaped as redis-py's xreadgroup gives it:
        [[stream, [(entry id, {field: value}), ...]], ...] or None (RESP3 replies with a
        map of streams, RESP2 with a list of pairs)."""
        args: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        reply = await self.execute(*args, "STREAMS", *streams, *streams.values())
        if not reply:
            return None
        pairs = reply.items() if isinstance(reply, dict) else reply
        return [
            [stream, [(entry, fields_of(fields)) for entry, fields in entries]]
            for stream, entries in pairs
        ]


def fields_of(flat: list[Any] | None) -> dict[Any, Any] | None:
    """An entry's fields as redis-py's stream parser gives them, from the flat RESP2 list."""
    if flat is None:  # an entry deleted while pending (only when re-reading pending ids)
        return None
    return dict(zip(flat[::2], flat[1::2], strict=True))
