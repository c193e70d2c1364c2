"""Redis URLs: which one to use, its seed nodes, and how to print it without its password.

Passwords never reach a log, banner, metric label or error: everything prints URLs through
`redact`. Nothing here connects.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from .errors import ConfigurationError

DEFAULT_URL = "redis://localhost:6379/0"
URL_ENV = "STREAMWORK_REDIS_URL"
_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "memory")


def resolve_url(url: str | None) -> str:
    """The URL to use: `url`, else $STREAMWORK_REDIS_URL, else redis://localhost:6379/0."""
    chosen = url or os.environ.get(URL_ENV) or DEFAULT_URL
    scheme = urlsplit(chosen).scheme
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"unsupported Redis URL {redact(chosen)!r}: it must start with redis://, "
            "rediss://, unix://, redis+cluster:// or memory://"
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


_PROTOCOL = re.compile(r"(?<=[?&])protocol=[^&]*(&|$)")


def resp2(url: str) -> str:
    """`url` without a `protocol=` option: streamwork's clients speak RESP2 whatever the URL
    asks (RESP3 changes the shape redis-py gives replies such as XREADGROUP's, and streamwork
    uses nothing only RESP3 has). Other options stay."""
    return _PROTOCOL.sub("", url).rstrip("?&")


def seed_nodes(url: str) -> list[tuple[str, int]]:
    """The host:port pairs of a URL (several when it lists seed nodes, comma-separated)."""
    netloc = urlsplit(url.split("?")[0]).netloc.rpartition("@")[2]
    nodes = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        nodes.append((host or item, int(port) if port.isdigit() else 6379))
    return nodes
