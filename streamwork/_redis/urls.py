"""Redis URLs: which one to use, its seed nodes, and how to print it without its password.

Passwords never reach a log, banner, metric label or error: everything prints URLs through
`redact`. Nothing here connects.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from redis.connection import parse_url

from ..errors import ConfigurationError

DEFAULT_URL = "redis://localhost:6379/0"
URL_ENV = "STREAMWORK_REDIS_URL"
_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "memory")


def resolve_url(url: str | None) -> str:
    """The URL to use: `url`, else $STREAMWORK_REDIS_URL, else redis://localhost:6379/0.

    A URL redis-py could not read (a port that is not a number, an option with a bad
    value) is a ConfigurationError here, before anything connects."""
    chosen = url or os.environ.get(URL_ENV) or DEFAULT_URL
    scheme = urlsplit(chosen).scheme
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"unsupported Redis URL {redact(chosen)!r}{origin(chosen)}: it must start with "
            "redis://, rediss://, unix://, redis+cluster:// or memory://"
        )
    if scheme != "memory":
        _check_parts(chosen)
    return chosen


def _check_parts(url: str) -> None:
    plain = url.replace("+cluster://", "://", 1)
    netloc = urlsplit(plain).netloc
    userinfo, at, hosts = netloc.rpartition("@")
    # a cluster URL may list seed nodes (h1:p1,h2:p2): redis-py reads one node at a time
    for host in hosts.split(","):
        one = plain.replace(netloc, f"{userinfo}{at}{host}", 1)
        try:
            parse_url(one)
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {redact(url)!r}{origin(url)}: {exc}"
            ) from None


def origin(url: str) -> str:
    """Where `url` came from, for errors: " (from $STREAMWORK_REDIS_URL)", " (the default:
    ...)" or " (given to App() or with --url)"."""
    if os.environ.get(URL_ENV) == url:
        return f" (from ${URL_ENV})"
    if url == DEFAULT_URL:
        return f" (the default: give the App a URL or set ${URL_ENV})"
    return " (given to App() or with --url)"


_USERINFO = re.compile(r"^(?P<scheme>[\w+.-]+://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*")


def redact(url: str) -> str:
    """`url` with any password replaced by `***`, for logs, banners and errors.

    Works on the text (not urlsplit), so seed-node lists like h1:7000,h2:7001 redact too.
    """
    url = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _QUERY_PASSWORD.sub(r"\1***", url)


_REPLY_SHAPE = re.compile(r"(?<=[?&])(protocol|legacy_responses)=[^&]*(&|$)")


def default_replies(url: str) -> str:
    """`url` without the options that change the shape of redis-py's replies (`protocol=`,
    `legacy_responses=`; with `protocol=3` XREADGROUP comes back as a map): streamwork reads
    replies as redis-py gives them by default. Every other option stays."""
    return _REPLY_SHAPE.sub("", url).rstrip("?&")


def seed_nodes(url: str) -> list[tuple[str, int]]:
    """The host:port pairs of a URL (several when it lists seed nodes, comma-separated)."""
    netloc = urlsplit(url.split("?")[0]).netloc.rpartition("@")[2]
    nodes = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        nodes.append((host or item, int(port) if port.isdigit() else 6379))
    return nodes
