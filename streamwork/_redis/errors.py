"""The translation of redis-py errors into streamwork's, where they enter: one table.

`ERRORS` maps each redis-py error (most specific first) to a `StreamworkError` and a
one-line message that says what happened and what to do, the original kept as
`__cause__` — like httpx's map of httpcore's exceptions. `Outage` tells of a worker's
lost Redis in a few lines. Nothing here talks to Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.exceptions

from ..errors import (
    ConfigurationError,
    ConnectionFailed,
    OutOfMemory,
    PermissionDenied,
    ReadOnlyReplica,
    RedisCommandError,
    RedisUnavailable,
    StreamworkError,
)
from .urls import origin, redact

log = logging.getLogger("streamwork.worker")

_REASONS = {
    "Connection refused": "connection refused",
    "Connect call failed": "connection refused",
    "Name or service not known": "unknown host",
    "timed out": "timed out",
}


def _reason(exc: BaseException, url: str) -> str:
    return str(exc).replace(url, redact(url)) or type(exc).__name__


def _short(reason: str) -> str:
    for marker, short in _REASONS.items():
        if marker in reason:
            return short
    return reason


def describe(exc: BaseException, url: str) -> str:
    """One line saying that Redis at `url` cannot be reached, why, and what to do."""
    return (
        f"cannot reach Redis at {redact(url)}{origin(url)}: {_short(_reason(exc, url))} — "
        "is redis-server running there?"
    )


class Outage:
    """How one worker process tells of a lost Redis. Its loops (fetch, start, settle, the
    scanner's) report each lost connection here, and those whose every success is a reply
    from Redis (fetch, settle) their successes: it logs one WARNING once
    Redis has been lost for `warn_after` seconds, a reminder at most every `remind_every`
    seconds while it stays lost, and one INFO when it is back with how long it was away —
    not an ERROR per loop and retry. A connection lost and made again at once (a stale one
    after a restart, a killed client) is no outage: it is logged at debug level only."""

    def __init__(self, url: str, warn_after: float = 0.5, remind_every: float = 30.0) -> None:
        self._url = url
        self._warn_after = warn_after
        self._remind_every = remind_every
        self._since: float | None = None
        """When the first failure of the outage was met (None: Redis is there)."""
        self._warned_at: float | None = None

    @property
    def is_lost(self) -> bool:
        return self._since is not None

    def lost(self, exc: BaseException, doing: str) -> None:
        """A loop lost its connection while `doing` something ("reading", ...)."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if self._warned_at is None:
            if now - self._since < self._warn_after:
                log.debug("lost a Redis connection while %s: %s", doing, exc)
                return
            self._warned_at = now
            log.warning(
                "%s (while %s); retrying until it is back: running messages go on, their "
                "outcomes wait",
                describe(exc, self._url),
                doing,
            )
        elif now - self._warned_at >= self._remind_every:
            self._warned_at = now
            log.warning(
                "Redis at %s is still unreachable after %.1f s: %s; retrying",
                redact(self._url),
                now - self._since,
                _short(_reason(exc, self._url)),
            )

    def failed(self, exc: BaseException, doing: str, pause: float) -> None:
        """A loop's step failed while `doing` something and is retried after `pause`
        seconds: a lost connection is part of an outage (`lost`); anything else is an ERROR
        line of its own."""
        if is_lost(exc):
            self.lost(exc, doing)
        else:
            log.error("error while %s (%s); retrying in %.1fs", doing, failure(exc), pause)

    def back(self) -> None:
        """A loop talked to Redis: if it was lost long enough to say so, say it is back."""
        if self._since is not None:
            if self._warned_at is not None:
                log.info("Redis is back after %.1f s", time.monotonic() - self._since)
            self._since = self._warned_at = None


def is_lost(exc: BaseException) -> bool:
    """A lost connection or a reply that did not come in time."""
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))


def is_slot_moving(exc: BaseException) -> bool:
    """A script touched a key of a slot being migrated to another node, and that key was
    already moved (or not there yet): Redis refuses the whole script ("non local key")
    rather than let it read the key as empty. The fair feed meets this, as it names each
    key's backlog list in Lua; once the slot has moved, the client follows it."""
    return isinstance(exc, redis.exceptions.ResponseError) and "non local key" in str(exc)


CLUSTER_CHANGING = (
    redis.exceptions.ClusterError,  # redis-py's "TTL exhausted.": redirected too many times
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
    redis.exceptions.ClusterDownError,
)
"""A cluster resharding or failing over, past redis-py's own retries: wait and try again."""


def failure(exc: BaseException) -> str:
    """Why a worker's step failed, for its retry log: "cannot reach Redis: ..." for a lost
    connection or a timeout (whichever step meets it first says so alike), "the cluster is
    moving a slot or failing over (...)" for redirections that did not settle in time,
    else the error."""
    reason = str(exc) or type(exc).__name__
    if is_lost(exc):
        return f"cannot reach Redis: {_short(reason)}"
    if is_slot_moving(exc) or isinstance(exc, CLUSTER_CHANGING):
        return f"the cluster is moving a slot or failing over ({reason})"
    return reason


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
            f"name and password in the URL{origin(url)}"
        ),
    ),
    (
        (redis.exceptions.NoPermissionError, redis.exceptions.AuthorizationError),
        "",
        PermissionDenied,
        lambda exc, url: (
            f"Redis at {redact(url)} denied the command: {_reason(exc, url)} — the user needs "
            "the ACL rules in docs/guides/security.md"
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
            f"Redis at {redact(url)} is a read-only replica: point the URL{origin(url)} at "
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


_REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)


class translate_errors:  # named as the function it was: a block, around every send
    """A block in which redis-py errors become streamwork's (see `ERRORS`), the original
    kept as `__cause__`. A class, not a generator: it wraps every send."""

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, trace: object) -> None:
        # StreamworkError: ours already say what happened (some are TimeoutError, an OSError)
        if exc is None or isinstance(exc, StreamworkError) or not isinstance(exc, _REDIS_ERRORS):
            return
        mapped = translate(exc, self.url)
        if mapped is not None:
            raise mapped from exc


def is_client_race(exc: BaseException) -> bool:
    """True for an AttributeError or TypeError raised inside redis-py itself: its async
    cluster client can use a node connection that a failover tore down under it
    (`'NoneType' object has no attribute 'writelines'`; redis-py#3546, #3815, #3835).
    Such an error is transient — the next command reconnects — not a bug of ours."""
    if not isinstance(exc, (AttributeError, TypeError)):
        return False
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return False
    filename = last.tb_frame.f_code.co_filename.replace("\\", "/")
    return "/redis/" in filename or "/asyncio/streams.py" in filename
