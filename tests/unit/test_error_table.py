"""Every redis-py error a caller can meet maps to one streamwork error (redis_errors.ERRORS),
most specific first, with the original kept as __cause__ and no password in the text."""

import pytest
import redis.exceptions as rx

from streamwork import (
    ConfigurationError,
    ConnectionFailed,
    OutOfMemory,
    PermissionDenied,
    ReadOnlyReplica,
    RedisCommandError,
    RedisUnavailable,
)
from streamwork.redis_errors import ERRORS, translate, translate_errors

URL = "redis://user:secret@127.0.0.1:6390/0"

CASES = [
    (rx.AuthenticationError("invalid username-password pair"), ConnectionFailed, "login"),
    (rx.NoPermissionError("this user has no permissions to run 'xadd'"), PermissionDenied, "ACL"),
    (rx.AuthorizationError("NOPERM"), PermissionDenied, "denied"),
    (rx.BusyLoadingError("Redis is loading the dataset in memory"), RedisUnavailable, "loading"),
    (rx.ClusterDownError("The cluster is down"), RedisUnavailable, "try again"),
    (rx.MasterDownError("Link with MASTER is down"), RedisUnavailable, "try again"),
    (rx.TryAgainError("Multiple keys request during rehashing"), RedisUnavailable, "moving"),
    (rx.SlotNotCoveredError("slot 12 not covered"), RedisUnavailable, "node is down"),
    (rx.OutOfMemoryError("command not allowed when used memory"), OutOfMemory, "maxmemory"),
    (rx.ReadOnlyError("You can't write against a read only replica."), ReadOnlyReplica, "primary"),
    (rx.InvalidResponse('Protocol error, got "<" as reply type byte'), ConnectionFailed, "port"),
    (rx.ResponseError("DB index is out of range"), ConfigurationError, "no such database"),
    (rx.ConnectionError("Error 111 connecting. Connection refused."), ConnectionFailed, "refused"),
    (rx.TimeoutError("Timeout reading from socket"), ConnectionFailed, "cannot reach"),
    (OSError("Network is unreachable"), ConnectionFailed, "cannot reach"),
    (rx.ResponseError("WRONGTYPE Operation against a key"), RedisCommandError, "WRONGTYPE"),
    (rx.DataError("Invalid input of type: 'set'"), RedisCommandError, "Invalid input"),
]


@pytest.mark.parametrize(("error", "ours", "says"), CASES, ids=lambda c: type(c).__name__)
def test_each_redis_error_maps_to_ours_with_its_cause(error, ours, says):
    with pytest.raises(ours) as raised, translate_errors(URL):
        raise error
    assert type(raised.value) is ours
    assert raised.value.__cause__ is error
    assert says in str(raised.value)
    assert "secret" not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_every_row_of_the_table_is_exercised():
    rows_hit = set()
    for error, _, _ in CASES:
        for index, (classes, marker, _, _) in enumerate(ERRORS):
            if isinstance(error, classes) and marker in str(error):
                rows_hit.add(index)
                break
    assert rows_hit == set(range(len(ERRORS)))


def test_errors_that_are_not_from_redis_pass_through():
    assert translate(ValueError("x"), URL) is None
    with pytest.raises(KeyError), translate_errors(URL):
        raise KeyError("not ours to translate")


def test_a_step_that_lost_redis_says_so_like_the_fetch_loop():
    from streamwork.redis_errors import failure

    refused = rx.ConnectionError(
        "Error 111 connecting to 127.0.0.1:1. Connect call failed ('127.0.0.1', 1)."
    )
    assert failure(refused) == "cannot reach Redis: connection refused"
    assert failure(rx.TimeoutError()) == "cannot reach Redis: TimeoutError"
    # a cluster's redirections that did not settle in time say that the cluster is changing
    moving = "the cluster is moving a slot or failing over"
    assert failure(rx.ClusterError("TTL exhausted.")) == f"{moving} (TTL exhausted.)"
    assert failure(rx.TryAgainError("TRYAGAIN")).startswith(moving)
    assert failure(rx.ResponseError("Script attempted to access a non local key")).startswith(
        moving
    )
    # anything else is the error itself: a wrong-type key is not a lost connection
    assert failure(rx.ResponseError("WRONGTYPE")) == "WRONGTYPE"
