"""Redis clients from a URL, and the translation of redis-py errors where they enter.

Owns: building sync and asyncio clients, hiding passwords in URLs (`redact`), and turning
connection failures into `ConnectionFailed` with a message that says what to do. It never
sends a command itself.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions

from .errors import ConfigurationError, ConnectionFailed, StreamworkError

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


_OPTIONS = {"socket_connect_timeout": 5, "health_check_interval": 30}
_CLUSTER_OPTIONS = {"socket_connect_timeout": 5}
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


def describe(exc: BaseException, url: str) -> str:
    """One line saying that Redis at `url` cannot be reached, why, and what to do."""
    reason = str(exc).replace(url, redact(url)) or type(exc).__name__
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return (
            f"Redis at {redact(url)} refused the login: {reason} — check the user name and "
            f"password in the URL ({URL_ENV})"
        )
    if not isinstance(exc, (redis.exceptions.ConnectionError, OSError)):
        return f"Redis at {redact(url)} answered {type(exc).__name__}: {reason}"
    markers = {
        "Connection refused": "connection refused",
        "Connect call failed": "connection refused",
        "Name or service not known": "unknown host",
        "timed out": "timed out",
    }
    for marker, short in markers.items():
        if marker in reason:
            reason = short
            break
    return (
        f"cannot reach Redis at {redact(url)}: {reason} — is redis-server running? "
        f"set {URL_ENV} to point elsewhere"
    )


@contextlib.contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Re-raise redis-py connection errors met inside the block as `ConnectionFailed`."""
    try:
        yield
    except StreamworkError:
        raise  # ours already say what happened (some are TimeoutError, an OSError)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise ConnectionFailed(describe(exc, url)) from None
