"""Every redis-py error a caller can meet maps to one streamwork error (redis_errors.ERRORS),
most specific first, with the original kept as __cause__ and no password in the text."""

import logging

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
from streamwork._redis.errors import ERRORS, translate, translate_errors

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
    from streamwork._redis.errors import failure

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


def test_an_outage_is_one_warning_reminders_and_one_line_when_redis_is_back(monkeypatch, caplog):
    from streamwork._redis import errors as redis_errors

    clock = [100.0]
    monkeypatch.setattr(redis_errors.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.DEBUG, logger="streamwork")
    outage = redis_errors.Outage("redis://u:secret@db:6379/0", warn_after=0.5, remind_every=30)
    refused = rx.ConnectionError("Error 111 connecting to db:6379. Connection refused.")

    def said(level):
        return [r.getMessage() for r in caplog.records if r.levelname == level]

    outage.lost(refused, "reading")  # a blip so far
    clock[0] += 0.2
    outage.back()  # made again at once: no outage
    assert said("WARNING") == said("INFO") == [] and not outage.is_lost
    for _ in range(100):  # 49 s of three loops failing, each retrying
        for doing in ("reading", "writing outcomes", "running the scanner's move step"):
            outage.lost(refused, doing)
        clock[0] += 0.49
    warned = said("WARNING")
    assert len(warned) == 2, warned  # the first, and one reminder after 30 s
    assert warned[0].startswith("cannot reach Redis at redis://u:***@db:6379/0")
    assert "connection refused" in warned[0] and "(while reading)" in warned[0]
    assert warned[1].startswith("Redis at redis://u:***@db:6379/0 is still unreachable after")
    assert float(warned[1].split("after ")[1].split(" s")[0]) >= 30
    outage.back()
    outage.back()
    assert said("INFO") == ["Redis is back after 49.0 s"]
    assert "secret" not in caplog.text and not said("ERROR")


def test_a_step_that_fails_for_another_reason_is_an_error_line_of_its_own(caplog):
    from streamwork._redis import errors as redis_errors

    outage = redis_errors.Outage("redis://db:6379/0")
    outage.failed(rx.ResponseError("NOSCRIPT gone"), "writing 2 outcome(s) on payments", 0.2)
    assert [r.getMessage() for r in caplog.records] == [
        "error while writing 2 outcome(s) on payments (NOSCRIPT gone); retrying in 0.2s"
    ]
    assert not outage.is_lost
