"""The asyncio clients pack commands with hiredis: byte for byte what redis-py's own packer
sends, and redis-py's error for what neither can send."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio.connection
import redis.exceptions

from streamwork._redis import connection

COMMANDS: list[tuple[Any, ...]] = [
    ("XADD", "sw:{q}:stream", "*", "m", b"\x81\xa2id\xa3abc"),
    ("EVALSHA", "0123abcd", 2, "sw:{q}:status:01J", "sw:{q}:events", 1.5, -7, 10**20),
    ("CONFIG GET", "maxmemory"),  # a two-word command name
    ("HSET", "k", "é", "日本", 0.1, 1e-9),
    ("SET", "big", b"x" * 100_000),  # redis-py sends large values in chunks
    ("SET", "view", memoryview(b"bytes")),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_packed_bytes_equal_redis_py(command: tuple[Any, ...]) -> None:
    packed_class = connection.packed_by_hiredis(redis.asyncio.connection.Connection)
    assert packed_class is not redis.asyncio.connection.Connection
    ours = b"".join(packed_class(host="localhost").pack_command(*command))
    theirs = b"".join(redis.asyncio.connection.Connection(host="localhost").pack_command(*command))
    assert ours == theirs


@pytest.mark.parametrize("value", [True, None, [1, 2]])
def test_a_value_neither_packs_is_redis_pys_error(value: Any) -> None:
    packed_class = connection.packed_by_hiredis(redis.asyncio.connection.Connection)
    with pytest.raises(redis.exceptions.DataError, match="Invalid input of type"):
        packed_class(host="localhost").pack_command("SET", "k", value)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:1/0", redis.asyncio.connection.Connection),
        ("rediss://127.0.0.1:1/0", redis.asyncio.connection.SSLConnection),
        ("unix:///tmp/none.sock", redis.asyncio.connection.UnixDomainSocketConnection),
    ],
)
def test_every_scheme_keeps_its_connection_class(url: str, kind: type) -> None:
    used = connection.async_client(url).connection_pool.connection_class
    assert issubclass(used, kind)
    assert used is connection.packed_by_hiredis(kind)
    assert used.pack_command is not kind.pack_command


def test_another_encoding_is_packed_by_redis_py() -> None:
    packed_class = connection.packed_by_hiredis(redis.asyncio.connection.Connection)
    packed = b"".join(packed_class(host="localhost", encoding="latin-1").pack_command("SET", "é"))
    assert packed.endswith(b"$1\r\n\xe9\r\n")
