"""The translation of redis-py errors into streamwork's, where they enter: one table.

`ERRORS` maps each redis-py error (most specific first) to a `StreamworkError` and a
one-line message that says what happened and what to do, the original kept as
`__cause__` — like httpx's map of httpcore's exceptions. Nothing here talks to Redis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

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
from .urls import origin, redact

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
