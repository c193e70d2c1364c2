"""Redis clients from a URL, and the translation of redis-py errors where they enter.

Owns: building sync and asyncio clients (with explicit socket timeouts: blocking commands
block at most `MAX_BLOCK` per call, well under `SOCKET_TIMEOUT`), hiding passwords in URLs
(`redact`), and the one table (`ERRORS`) that turns every redis-py error into streamwork's
hierarchy with a message that says what to do. It never sends a command itself, except the
one-time cluster probe.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions

from .errors import (
    ConfigurationError,
    ConnectionFailed,
    OutOfMemory,
    PermissionDenied,
    ReadOnlyReplica,
    RedisCommandError,
    RedisUnavailable,
    StreamworkError,
)

DEFAULT_URL = "redis://localhost:6379/0"
URL_ENV = "STREAMWORK_REDIS_URL"
_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def resolve_url(url: str | None) -> str:
    """The URL to use: `url`, else $STREAMWORK_REDIS_URL, else redis://localhost:6379/0."""
    chosen = url or os.environ.get(URL_ENV) or DEFAULT_URL
    scheme = urlsplit(chosen).scheme
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"unsupported Redis URL {redact(chosen)!r}: it must start with redis://, "
            "rediss://, unix:// or redis+cluster://"
        )
    return chosen


_USERINFO = re.compile(r"^(?P<scheme>[\w+.-]+://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*")


def redact(url: str) -> str:
    """`url` with any password replaced by `***`, for logs, banners and errors.

    Works on the text (not urlsplit), so seed-node lists like h1:7000,h2:7001 redact too.
    """
    url = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _QUERY_PASSWORD.sub(r"\1***", url)


def seed_nodes(url: str) -> list[tuple[str, int]]:
    """The host:port pairs of a URL (several when it lists seed nodes, comma-separated)."""
    netloc = urlsplit(url.split("?")[0]).netloc.rpartition("@")[2]
    nodes = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        nodes.append((host or item, int(port) if port.isdigit() else 6379))
    return nodes


SOCKET_TIMEOUT = 10.0
"""Seconds a reply may take before the connection counts as broken (set explicitly: redis-py's
own default changed between versions, and 8.x's 5 s cut blocking commands short)."""
MAX_BLOCK = 5.0
"""The longest one blocking command (BLMOVE, XREADGROUP BLOCK) blocks: longer waits are made
of several calls, so every reply comes well within SOCKET_TIMEOUT."""

_OPTIONS = {
    "socket_connect_timeout": 5,
    "socket_timeout": SOCKET_TIMEOUT,
    "health_check_interval": 30,
}
_CLUSTER_OPTIONS = {"socket_connect_timeout": 5, "socket_timeout": SOCKET_TIMEOUT}
_is_cluster: dict[str, bool] = {}


def is_cluster(url: str) -> bool:
    """Whether `url` is a Redis Cluster: `redis+cluster://` says so, else INFO tells
    (`cluster_enabled:1`), asked once per URL. An unreachable server counts as not a cluster
    here; the client made for it then reports the connection error."""
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
    first = url.replace(urlsplit(url).netloc.rpartition("@")[2], f"{nodes[0][0]}:{nodes[0][1]}")
    if len(nodes) == 1:
        return cluster_class.from_url(_plain(first), **_CLUSTER_OPTIONS)
    startup = [node_class(host, port) for host, port in nodes]
    return cluster_class.from_url(_plain(first), startup_nodes=startup, **_CLUSTER_OPTIONS)


def sync_client(url: str) -> Any:
    """A client for `url`: redis-py's cluster client when it is a Redis Cluster."""
    if is_cluster(url):
        return _cluster(url, redis.cluster.RedisCluster, redis.cluster.ClusterNode)
    return redis.Redis.from_url(url, **_OPTIONS)


def async_client(url: str) -> Any:
    """An asyncio client for `url`: the asyncio cluster client when it is a Redis Cluster."""
    if is_cluster(url):
        return _cluster(url, redis.asyncio.cluster.RedisCluster, redis.asyncio.cluster.ClusterNode)
    return redis.asyncio.Redis.from_url(url, **_OPTIONS)


_REASONS = {
    "Connection refused": "connection refused",
    "Connect call failed": "connection refused",
    "Name or service not known": "unknown host",
    "timed out": "timed out",
}


def _reason(exc: BaseException, url: str) -> str:
    return str(exc).replace(url, redact(url)) or type(exc).__name__


def describe(exc: BaseException, url: str) -> str:
    """One line saying that Redis at `url` cannot be reached, why, and what to do."""
    reason = _reason(exc, url)
    for marker, short in _REASONS.items():
        if marker in reason:
            reason = short
            break
    return (
        f"cannot reach Redis at {redact(url)}: {reason} — is redis-server running? "
        f"set {URL_ENV} to point elsewhere"
    )


Describe = Callable[[BaseException, str], str]

ERRORS: tuple[tuple[tuple[type[BaseException], ...], str, type[StreamworkError], Describe], ...] = (
    # (redis-py classes, text the message must contain or "", ours, message), most specific
    # first: the first row that matches wins.
    (
        (redis.exceptions.AuthenticationError,),
        "",
        ConnectionFailed,
        lambda exc, url: (
            f"Redis at {redact(url)} refused the login: {_reason(exc, url)} — check the user "
            f"name and password in the URL ({URL_ENV})"
        ),
    ),
    (
        (redis.exceptions.NoPermissionError, redis.exceptions.AuthorizationError),
        "",
        PermissionDenied,
        lambda exc, url: (
            f"Redis at {redact(url)} denied the command: {_reason(exc, url)} — the user needs "
            "the ACL rules in README.md (Security)"
        ),
    ),
    (
        (redis.exceptions.BusyLoadingError,),
        "",
        RedisUnavailable,
        lambda exc, url: (
            f"Redis at {redact(url)} is loading its data set into memory — try again shortly"
        ),
    ),
    (
        (
            redis.exceptions.ClusterDownError,
            redis.exceptions.TryAgainError,
            redis.exceptions.ClusterError,
            redis.exceptions.SlotNotCoveredError,
        ),
        "",
        RedisUnavailable,
        lambda exc, url: (
            f"Redis Cluster at {redact(url)} cannot serve the key now: {_reason(exc, url)} — "
            "a node is down or slots are moving; try again shortly"
        ),
    ),
    (
        (redis.exceptions.OutOfMemoryError,),
        "",
        OutOfMemory,
        lambda exc, url: (
            f"Redis at {redact(url)} is out of memory (maxmemory reached, noeviction): "
            "nothing was written — let workers drain the queues, or raise maxmemory"
        ),
    ),
    (
        (redis.exceptions.ReadOnlyError,),
        "",
        ReadOnlyReplica,
        lambda exc, url: (
            f"Redis at {redact(url)} is a read-only replica: point the URL ({URL_ENV}) at "
            "the primary"
        ),
    ),
    (
        (redis.exceptions.InvalidResponse,),
        "",
        ConnectionFailed,
        lambda exc, url: (
            f"the server at {redact(url)} does not speak the Redis protocol "
            f"({_reason(exc, url)}) — is that the Redis port?"
        ),
    ),
    (
        (redis.exceptions.ResponseError, redis.exceptions.ConnectionError),
        "DB index is out of range",
        ConfigurationError,
        lambda exc, url: (
            f"Redis at {redact(url)} has no such database (the number after the last '/' "
            "in the URL): use 0-15, or what its `databases` setting allows"
        ),
    ),
    (
        (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError),
        "",
        ConnectionFailed,
        describe,
    ),
    (
        (redis.exceptions.RedisError, redis.exceptions.RedisClusterException),
        "",
        RedisCommandError,
        lambda exc, url: f"Redis at {redact(url)} answered with an error: {_reason(exc, url)}",
    ),
)
"""How each redis-py error reaches callers: one row per kind, most specific first."""


def translate(exc: BaseException, url: str) -> StreamworkError | None:
    """Streamwork's error for a redis-py (or socket) error met talking to `url`, else None."""
    if isinstance(exc, StreamworkError):
        return exc
    text = str(exc)
    for classes, marker, ours, message in ERRORS:
        if isinstance(exc, classes) and marker in text:
            mapped = ours(message(exc, url))
            mapped.__cause__ = exc
            return mapped
    return None


@contextlib.contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Re-raise redis-py errors met inside the block as streamwork's (see `ERRORS`), the
    original kept as `__cause__`."""
    try:
        yield
    except StreamworkError:
        raise  # ours already say what happened (some are TimeoutError, an OSError)
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        mapped = translate(exc, url)
        if mapped is None:
            raise
        raise mapped from exc
