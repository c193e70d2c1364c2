"""memory://: an in-process Redis (fakeredis, with Lua) for tests that need no redis-server.

Owns one fakeredis server per URL within this process — `memory://` is one default server,
`memory://a` and `memory://b` two others — shared by every sync and asyncio client made for
that URL, so a producer and an in-process worker see the same data. It runs streamwork's Lua
scripts unchanged: fakeredis runs Lua 5.1 as Redis does, and the `cmsgpack` module Redis's
Lua has (the settle script reads its batch with it) is added here, backed by Python's
msgpack. fakeredis answers BLMOVE and XREADGROUP BLOCK at once; the clients made here wait
(polling every 10 ms) as Redis would, so no caller needs a special case. Only this process
sees a memory:// server: a worker started in another process (`streamwork worker`) cannot,
so the CLI refuses memory:// URLs.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import msgpack

SCHEME = "memory://"
_SERVERS: dict[str, Any] = {}
_LOCK = threading.Lock()


def is_memory(url: str) -> bool:
    return url.startswith(SCHEME)


def _name(url: str) -> str:
    return url[len(SCHEME) :].split("/")[0].split("?")[0]


def server(url: str) -> Any:
    """The fakeredis server of `url`, created (with the cmsgpack module) on first use."""
    # Redis runs Lua 5.1 (`unpack`, not `table.unpack`): so must fakeredis, whatever its default.
    os.environ.setdefault("FAKEREDIS_LUA_VERSION", "5.1")
    try:
        import fakeredis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from ..errors import ConfigurationError

        raise ConfigurationError(
            "memory:// needs fakeredis with Lua: pip install 'streamwork[testing]' (fakeredis[lua])"
        ) from exc
    name = _name(url)
    with _LOCK:
        if name not in _SERVERS:
            fake = fakeredis.FakeServer(version=(7,))
            _add_cmsgpack(fake)
            _SERVERS[name] = fake
        return _SERVERS[name]


def forget(url: str | None = None) -> None:
    """Drop the server of `url` (every memory:// server when None): the next client made
    for it starts empty."""
    with _LOCK:
        if url is None:
            _SERVERS.clear()
        else:
            _SERVERS.pop(_name(url), None)


POLL = 0.01
"""How often a blocking command looks again while it waits (fakeredis's never block)."""


def sync_client(url: str) -> Any:
    import fakeredis

    class Blocking(fakeredis.FakeRedis):
        """BLMOVE and XREADGROUP BLOCK wait as on Redis (fakeredis answers them at once)."""

        def blmove(self, first: Any, second: Any, timeout: float, *sides: Any) -> Any:
            deadline = time.monotonic() + float(timeout)
            while True:
                moved = self.lmove(first, second, *sides)
                if moved is not None or (timeout and time.monotonic() >= deadline):
                    return moved
                time.sleep(POLL)

        def xreadgroup(self, *args: Any, block: int | None = None, **kwargs: Any) -> Any:
            deadline = time.monotonic() + (block or 0) / 1000
            while True:
                reply = super().xreadgroup(*args, **kwargs)
                if reply or block is None or (block and time.monotonic() >= deadline):
                    return reply
                time.sleep(POLL)

    return Blocking(server=server(url), version=(7,))


def async_client(url: str) -> Any:
    import fakeredis.aioredis

    class Blocking(fakeredis.aioredis.FakeRedis):
        """BLMOVE and XREADGROUP BLOCK wait as on Redis (fakeredis answers them at once)."""

        async def blmove(self, first: Any, second: Any, timeout: float, *sides: Any) -> Any:
            deadline = time.monotonic() + float(timeout)
            while True:
                moved = await self.lmove(first, second, *sides)
                if moved is not None or (timeout and time.monotonic() >= deadline):
                    return moved
                await asyncio.sleep(POLL)

        async def xreadgroup(self, *args: Any, block: int | None = None, **kwargs: Any) -> Any:
            deadline = time.monotonic() + (block or 0) / 1000
            while True:
                reply = await super().xreadgroup(*args, **kwargs)
                if reply or block is None or (block and time.monotonic() >= deadline):
                    return reply
                await asyncio.sleep(POLL)

    return Blocking(server=server(url), version=(7,))


def _add_cmsgpack(fake: Any) -> None:
    """Give the server's Lua runtime Redis's `cmsgpack.pack` and `cmsgpack.unpack`."""
    import fakeredis

    try:
        fakeredis.FakeRedis(server=fake, version=(7,)).eval("return 1", 0)  # makes the runtime
    except Exception as exc:  # lupa missing: scripts cannot run at all
        from ..errors import ConfigurationError

        raise ConfigurationError(
            f"memory:// needs fakeredis with Lua (pip install 'fakeredis[lua]'): {exc}"
        ) from exc
    runtime = fake._lua_runtime

    def to_lua(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return runtime.table_from([to_lua(item) for item in value])
        if isinstance(value, dict):
            return runtime.table_from({to_lua(k): to_lua(v) for k, v in value.items()})
        return value

    def from_lua(value: Any) -> Any:
        if type(value).__name__ != "_LuaTable":
            return value
        items = dict(value.items())
        if all(isinstance(k, int) for k in items) and sorted(items) == list(
            range(1, len(items) + 1)
        ):
            return [from_lua(items[i]) for i in range(1, len(items) + 1)]
        return {from_lua(k): from_lua(v) for k, v in items.items()}

    def unpack(data: bytes) -> Any:
        return to_lua(msgpack.unpackb(data, raw=True, strict_map_key=False))

    def pack(*values: Any) -> bytes:
        packed = b"".join(msgpack.packb(from_lua(v), use_bin_type=False) for v in values)
        return packed

    runtime.globals()[b"cmsgpack"] = runtime.table_from({b"unpack": unpack, b"pack": pack})
    fake._lua_expected_globals.add(b"cmsgpack")
