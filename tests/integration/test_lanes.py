"""Lanes (the worker's hot path sent straight on a connection) against a real Redis: the
same replies as redis-py's client, scripts loaded again when Redis forgot them, a broken
connection reported once and made again, and no lane where one cannot serve."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions

from streamwork._redis import connection, memory
from streamwork._redis.lanes import Lane, packed_by_hiredis


async def _with_client(url: str, body: Any) -> Any:
    client = connection.async_client(url)
    try:
        return await body(client)
    finally:
        await client.aclose()


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_read_on_a_lane_is_what_xreadgroup_gives(
    redis_url: str, client: redis.Redis, protocol: int
) -> None:
    streams = {"lane:{a}": ">", "lane:{b}": ">"}
    for stream in streams:
        for n in range(3):
            client.xadd(stream, {"m": f"{stream}-{n}".encode(), "x": b"\x00\xff"})
        for group in ("lane", "redis-py"):
            client.xgroup_create(stream, group, id="0")

    async def compare(async_client: Any) -> None:
        lane = Lane.of(async_client)
        assert lane is not None
        assert f"resp={protocol}" in (await lane.execute("CLIENT", "INFO")).decode()
        for _ in range(2):  # two entries of each stream, then the last one of each
            ours = await lane.read("lane", "c", streams, 2, None)
            theirs = await async_client.xreadgroup("redis-py", "c", streams, count=2)
            if isinstance(theirs, dict):  # protocol=3 asked for: {stream: [entries]}
                theirs = [[stream, entries] for stream, (entries,) in theirs.items()]
            assert ours == theirs
            assert ours[0][1][0][1][b"x"] == b"\x00\xff"
        # nothing new, with a short block: nothing (redis-py says [] or None by protocol)
        assert await lane.read("lane", "c", streams, 2, 10) is None
        assert not await async_client.xreadgroup("redis-py", "c", streams, count=2, block=10)

    async def on_protocol() -> None:  # as connection.async_client makes it, on that protocol
        async_client = redis.asyncio.Redis.from_url(redis_url, protocol=protocol)
        pool = async_client.connection_pool
        pool.connection_class = packed_by_hiredis(pool.connection_class)
        try:
            await compare(async_client)
        finally:
            await async_client.aclose()

    asyncio.run(on_protocol())


def test_a_script_redis_forgot_is_loaded_again(redis_url: str, client: redis.Redis) -> None:
    async def run(async_client: Any) -> None:
        lane = Lane.of(async_client)
        assert lane is not None
        script = async_client.register_script("return {KEYS[1], ARGV[1]}")
        assert await lane.evalsha(script, ["k"], [7]) == [b"k", b"7"]
        client.script_flush()
        assert await lane.evalsha(script, ["k"], ["again"]) == [b"k", b"again"]

    asyncio.run(_with_client(redis_url, run))


def test_a_broken_connection_fails_one_command_and_the_next_connects(
    redis_url: str, client: redis.Redis
) -> None:
    client.set("lane:key", "value")

    async def run(async_client: Any) -> None:
        lane = Lane.of(async_client)
        assert lane is not None
        lane_id = await lane.execute("CLIENT", "ID")
        client.client_kill_filter(_id=lane_id)
        with pytest.raises(redis.exceptions.ConnectionError):
            await lane.execute("GET", "lane:key")
        assert await lane.execute("GET", "lane:key") == b"value"
        assert await lane.execute("CLIENT", "ID") != lane_id

    asyncio.run(_with_client(redis_url, run))


def test_commands_sent_at_once_each_get_their_own_reply(
    redis_url: str, client: redis.Redis
) -> None:
    client.mset({f"lane:{n}": n for n in range(100)})

    async def run(async_client: Any) -> None:
        lane = Lane.of(async_client)
        assert lane is not None
        replies = await asyncio.gather(*(lane.execute("GET", f"lane:{n}") for n in range(100)))
        assert replies == [str(n).encode() for n in range(100)]

    asyncio.run(_with_client(redis_url, run))


def test_no_lane_where_one_cannot_serve(cluster: Any, redis_url: str) -> None:
    async def run() -> None:
        assert Lane.of(connection.async_client(cluster.url)) is None
        assert Lane.of(memory.async_client("memory://lanes")) is None
        own = redis.asyncio.Redis.from_url(redis_url)  # a caller's own client: left alone
        assert Lane.of(own) is None
        await own.aclose()

    asyncio.run(run())
