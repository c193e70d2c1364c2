"""The Redis side of an app: `Connection`, and the translation of redis-py errors.

Owns: the clients of one URL (a sync client, one asyncio client per event loop, per-node
clients on a cluster) with explicit socket timeouts (blocking commands block at most
`MAX_BLOCK` per call, well under `SOCKET_TIMEOUT`; a single server's asyncio clients pack
commands with hiredis), the Lua script wrappers on each, the
registry writes a producer makes once per name, hiding passwords in URLs (`redact`), and
the one table (`ERRORS`) that turns every redis-py error into streamwork's hierarchy with
a message that says what to do. It never decides what a key or message means.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions

from .._base.keys import Source
from ..errors import ConfigurationError
from . import commands, memory
from .errors import translate_errors
from .lanes import packed_by_hiredis
from .scripts import Scripts
from .urls import default_replies, redact, resolve_url, seed_nodes

SOCKET_TIMEOUT = 10.0
"""Seconds a reply may take before the connection counts as broken (set explicitly: redis-py's
own default changed between versions, and 8.x's 5 s cut blocking commands short)."""
MAX_BLOCK = 5.0
"""The longest one blocking command (BLMOVE, XREADGROUP BLOCK) blocks: longer waits are made
of several calls, so every reply comes well within SOCKET_TIMEOUT."""


def block_for(deadline: float) -> float:
    """How long the next blocking read may block, to `deadline` (time.monotonic()): what is
    left, at most MAX_BLOCK, and never 0 (which Redis reads as "forever")."""
    return min(MAX_BLOCK, max(0.001, round(deadline - time.monotonic(), 3)))


_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": SOCKET_TIMEOUT,
    "health_check_interval": 30,
}
_CLUSTER_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": SOCKET_TIMEOUT}
_is_cluster: dict[str, bool] = {}


def is_cluster(url: str) -> bool:
    """Whether `url` is a Redis Cluster: `redis+cluster://` says so, else INFO tells
    (`cluster_enabled:1`), asked once per URL. An unreachable server counts as not a cluster
    here; the client made for it then reports the connection error."""
    if memory.is_memory(url):
        return False
    if "+cluster://" in url or len(seed_nodes(url)) > 1:
        return True
    if url not in _is_cluster:
        probe = redis.Redis.from_url(url, socket_connect_timeout=5)  # one node: one seed
        try:
            _is_cluster[url] = bool(probe.info("cluster").get("cluster_enabled"))
        except redis.exceptions.RedisError:
            return False
        finally:
            probe.close()
    return _is_cluster[url]


def _plain(url: str) -> str:
    return url.replace("+cluster://", "://", 1)


def _cluster(url: str, cluster_class: Any, node_class: Any) -> Any:
    """A cluster client from `url`, which may list several seed nodes (h1:p1,h2:p2)."""
    nodes = seed_nodes(url)
    url = default_replies(url)
    first = url.replace(urlsplit(url).netloc.rpartition("@")[2], f"{nodes[0][0]}:{nodes[0][1]}")
    if len(nodes) == 1:
        return cluster_class.from_url(_plain(first), **_CLUSTER_OPTIONS)
    startup = [node_class(host, port) for host, port in nodes]
    return cluster_class.from_url(_plain(first), startup_nodes=startup, **_CLUSTER_OPTIONS)


REFUSALS: list[Callable[[str], str | None]] = []
"""Checks asked before a client is made for a URL; one that returns a reason refuses it
with a ConfigurationError (the pytest plugin refuses real servers during a memory:// test)."""


def _refuse(url: str) -> None:
    for check in REFUSALS:
        reason = check(url)
        if reason:
            raise ConfigurationError(reason)


def sync_client(url: str) -> Any:
    """A client for `url`: redis-py's cluster client when it is a Redis Cluster, an in-process
    server's for memory://. Replies keep redis-py's default shapes (`default_replies`)."""
    _refuse(url)
    if memory.is_memory(url):
        return memory.sync_client(url)
    if is_cluster(url):
        return _cluster(url, redis.cluster.RedisCluster, redis.cluster.ClusterNode)
    return redis.Redis.from_url(default_replies(url), **_OPTIONS)


def async_client(url: str) -> Any:
    """An asyncio client for `url`: the asyncio cluster client when it is a Redis Cluster."""
    _refuse(url)
    if memory.is_memory(url):
        return memory.async_client(url)
    if is_cluster(url):
        return _cluster(url, redis.asyncio.cluster.RedisCluster, redis.asyncio.cluster.ClusterNode)
    return _async_single(url)


def _async_single(url: str) -> Any:
    """An asyncio client of one Redis server, packing its commands with hiredis."""
    client = redis.asyncio.Redis.from_url(default_replies(url), **_OPTIONS)
    pool = client.connection_pool
    pool.connection_class = packed_by_hiredis(pool.connection_class)
    return client


class Connection:
    """The clients of one Redis URL, created on first use; no event loop is captured.

    `redis` is the synchronous client; `async_redis()` the running loop's asyncio client
    (one per loop). On a Redis Cluster both are redis-py's cluster clients. Errors met in a
    `translate_errors()` block become streamwork's (see `ERRORS`).
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        self._redis: Any = None
        self._scripts: Scripts | None = None
        self._async_clients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._async_scripts: dict[asyncio.AbstractEventLoop, Scripts] = {}
        self._registered: set[tuple[str, str]] = set()
        self._async_nodes: dict[tuple[asyncio.AbstractEventLoop, str, int], Any] = {}
        self._server: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<Connection {redact(self.url)}>"

    @property
    def server(self) -> dict[str, Any]:
        """`server.address` (and `server.port`) of the URL, for trace spans: its first
        node, or a unix socket's path."""
        found = self._server
        if found is None:
            parts = urlsplit(self.url)
            if parts.scheme == "unix" or memory.is_memory(self.url):
                found = {"server.address": parts.path or parts.netloc}
            else:
                host, port = seed_nodes(self.url)[0]
                found = {"server.address": host, "server.port": port}
            self._server = found
        return found

    @property
    def redis(self) -> Any:
        """The synchronous client (a cluster client on a Redis Cluster)."""
        if self._redis is None:
            self._redis = sync_client(self.url)
        return self._redis

    @property
    def scripts(self) -> Scripts:
        """The Lua scripts, on the synchronous client."""
        if self._scripts is None:
            self._scripts = Scripts(self.redis)
        return self._scripts

    def async_redis(self) -> Any:
        """The asyncio client of the running event loop (one per loop, created on first use)."""
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            for old in [old for old in self._async_clients if old.is_closed()]:
                del self._async_clients[old]
                self._async_scripts.pop(old, None)
            client = self._async_clients[loop] = async_client(self.url)
            self._async_scripts[loop] = Scripts(client)
        return client

    def async_scripts(self) -> Scripts:
        """The Lua scripts, on the running event loop's asyncio client."""
        self.async_redis()
        return self._async_scripts[asyncio.get_running_loop()]

    def node_client(self, key: str) -> Any:
        """A plain client of the node that holds `key` (the client itself off a cluster)."""
        client = self.redis
        if isinstance(client, redis.cluster.RedisCluster):
            return client.get_redis_connection(client.get_node_from_key(key))
        return client

    def refresh_nodes(self) -> None:
        """After a node failed under a `node_client`: learn the cluster's slots again (the
        cluster client does this itself for the commands it sends)."""
        client = self.redis
        if isinstance(client, redis.cluster.RedisCluster):
            with contextlib.suppress(redis.exceptions.RedisError):
                client.nodes_manager.initialize()

    async def async_node_client(self, key: str) -> Any:
        """A plain asyncio client of the node that holds `key` (the loop's client itself off
        a cluster), for commands that must share one connection (a write and its WAIT)."""
        client = self.async_redis()
        if not isinstance(client, redis.asyncio.cluster.RedisCluster):
            return client
        await client.initialize()
        node = client.get_node_from_key(key)
        if node is None:  # the slot has no known node: let the cluster client find out
            return client
        name = (asyncio.get_running_loop(), str(node.host), int(node.port))
        if name not in self._async_nodes:
            netloc = urlsplit(self.url).netloc
            at = netloc.rpartition("@")
            node_url = self.url.replace(netloc, f"{at[0]}{at[1]}{node.host}:{node.port}", 1)
            self._async_nodes[name] = _async_single(_plain(node_url))
        return self._async_nodes[name]

    async def refresh_nodes_async(self) -> None:
        """After a node failed under an `async_node_client`: learn the slots again."""
        client = self.async_redis()
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            with contextlib.suppress(redis.exceptions.RedisError):
                await client.nodes_manager.initialize()

    def translate_errors(self) -> contextlib.AbstractContextManager[None]:
        """A block in which redis-py errors become streamwork's (URL redacted)."""
        return translate_errors(self.url)

    def register(self, registry: str, name: str) -> None:
        """Add `name` to a registry set, once per connection (producers call it per send)."""
        if (registry, name) not in self._registered:
            commands.register(self.redis, registry, name)
            self._registered.add((registry, name))

    async def register_async(self, registry: str, name: str) -> None:
        if (registry, name) not in self._registered:
            await commands.register(self.async_redis(), registry, name)
            self._registered.add((registry, name))

    def ping(self) -> None:
        """Check that Redis answers; raise ConnectionFailed with what to do if not."""
        with self.translate_errors():
            self.redis.ping()

    def close(self) -> None:
        """Close the synchronous client (asyncio clients close with `aclose`)."""
        if self._redis is not None:
            self._redis.close()
            self._redis = None
            self._scripts = None

    async def aclose(self) -> None:
        """Close this event loop's asyncio client."""
        loop = asyncio.get_running_loop()
        self._async_scripts.pop(loop, None)
        client = self._async_clients.pop(loop, None)
        if client is not None:
            await client.aclose()
        for name in [name for name in self._async_nodes if name[0] is loop]:
            await self._async_nodes.pop(name).aclose()


class NamespaceView(Protocol):
    """What tools that read queues need of an app (an App is one): its connection, its
    key namespace, and the queues and topics it declares (listed first by tools)."""

    @property
    def connection(self) -> Connection: ...

    @property
    def namespace(self) -> str: ...

    def queues(self) -> list[str]: ...

    def topics(self) -> list[str]: ...

    def subscriber_groups(self) -> list[tuple[str, str]]: ...

    def held_lists(self, queue: str) -> list[str]:
        """The lists where messages of `queue` wait for a concurrency slot."""
        ...

    def fair_prefixes(self, queue: str) -> list[tuple[str, str]]:
        """(task, key prefix) of each fair task of `queue`."""
        ...

    def queue_sources(self, queue: str) -> list[Source]:
        """`queue`'s streams as workers read them: one, one per priority band, or one per
        partition."""
        ...

    def partitions(self, queue: str) -> int:
        """How many partitions `queue` has (1: a plain queue)."""
        ...

    def queue(self, name: str, *, partitions: int) -> None:
        """Declare that queue `name` has `partitions` partitions."""
        ...
