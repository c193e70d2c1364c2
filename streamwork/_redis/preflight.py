"""Checks on a Redis before a worker serves it: that it answers, that it will not evict
queues, and whether it persists anything. Beside connection.py; it never reads a queue."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigurationError
from . import commands
from .connection import async_client
from .errors import translate_errors

log = logging.getLogger("streamwork.preflight")


async def check_durability(client: Any, allow_evicting: bool, warn_persistence: bool) -> None:
    """Refuse a Redis that may evict queues; warn about one that persists nothing."""
    policy, persists = await commands.durability(client)
    if policy != "noeviction":
        if not allow_evicting:
            raise ConfigurationError(
                f"Redis maxmemory-policy is {policy}: under memory pressure Redis may "
                "evict a queue's keys and lose work — set maxmemory-policy noeviction "
                "(or start anyway with --allow-evicting-redis)"
            )
        log.warning("Redis maxmemory-policy is %s: queues may be evicted", policy)
    if persists is False and warn_persistence:
        log.warning(
            "Redis persists nothing (no AOF, no RDB snapshots): a Redis restart loses "
            "every queued message; enable appendonly yes with appendfsync everysec"
        )


async def preflight(url: str, allow_evicting: bool) -> None:
    """Check Redis before starting worker processes: reachable, not evicting (raise if not),
    and warn once if it persists nothing."""
    client = async_client(url)
    try:
        with translate_errors(url):
            await client.ping()
            await check_durability(client, allow_evicting, warn_persistence=True)
    finally:
        await client.aclose()
