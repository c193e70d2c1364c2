"""What a producer meets when a send cannot work: each case a clear StreamworkError, nothing
half-sent without saying so, and result waits that outlive the client's socket timeout."""

import asyncio
import socket
import threading
import time

import pytest
import redis

from streamwork import (
    App,
    ConfigurationError,
    ConnectionFailed,
    EncodeError,
    OutOfMemory,
    PermissionDenied,
    ReadOnlyReplica,
    ResultTimeout,
    SendIncomplete,
    TaskFailed,
)
from streamwork._base import ids
from streamwork.testing import RedisServer, WorkerThread, drain


def test_result_waits_longer_than_the_socket_timeout(app):
    """1 s and 8 s waits end in ResultTimeout on time; a 30 s wait gets a result that took
    12 s — longer than redis-py's default 5 s socket timeout and ours (10 s)."""

    @app.task(queue="unserved", store_result=True)
    def never(x):
        return x

    @app.task(queue="slow", store_result=True)
    async def slow(seconds):
        await asyncio.sleep(seconds)
        return "late"

    outcomes = {}

    def wait(name, handle, timeout, use_async=False):
        started = time.monotonic()
        try:
            if use_async:
                value = asyncio.run(handle.result_async(timeout=timeout))
            else:
                value = handle.result(timeout=timeout)
            outcomes[name] = (value, time.monotonic() - started)
        except Exception as exc:
            outcomes[name] = (exc, time.monotonic() - started)

    waits = [
        threading.Thread(target=wait, args=("1s", never.send(1), 1)),
        threading.Thread(target=wait, args=("8s", never.send(8), 8)),
        threading.Thread(target=wait, args=("30s", slow.send(12), 30, True)),
    ]
    with WorkerThread(app, queues=["slow"]):
        for thread in waits:
            thread.start()
        for thread in waits:
            thread.join(40)
    one, one_took = outcomes["1s"]
    eight, eight_took = outcomes["8s"]
    late, late_took = outcomes["30s"]
    assert isinstance(one, ResultTimeout) and 1 <= one_took < 3, outcomes
    assert isinstance(eight, ResultTimeout) and 8 <= eight_took < 10, outcomes
    # the handler may start its 12 s a moment before this waiter's clock does: what counts is
    # a wait longer than the 10 s socket timeout that still gets the result
    assert late == "late" and 11 <= late_took < 20, outcomes


@pytest.mark.parametrize(
    ("call", "where"),
    [
        (lambda task: task.send(customer={1: "x"}), "kwargs['customer']"),
        (lambda task: task.send([{"a": {2: 3}}]), "args[0][0]['a']"),
        (lambda task: task.send_with(args=(1,), headers={"h": {(1, 2): 3}}), "headers['h']"),
        (lambda task: task.send_many([(1,), ({3: 4},)]), "args[0]"),
    ],
)
def test_map_keys_that_are_not_strings_are_refused_at_send(app, client, call, where):
    @app.task
    def job(customer=None):
        pass

    with pytest.raises(EncodeError, match="map keys must be strings") as raised:
        call(job)
    assert where in str(raised.value)
    assert client.xlen(app.keys("default").stream) == 0
    assert client.zcard(app.keys("default").delayed) == 0


def test_event_payload_with_a_non_string_key_is_refused(app, client):
    with pytest.raises(EncodeError, match=r"payload\['by_id'\]"):
        app.publish("orders.created", {"by_id": {7: "x"}})
    assert client.exists(app.topic_keys("orders.created").stream) == 0


def test_result_that_cannot_be_stored_is_a_failure_not_done(app, client):
    @app.task(store_result=True, max_retries=0)
    def lookup():
        return {1: "x"}

    handle = lookup.send()
    drain(app)
    with pytest.raises(TaskFailed, match="map key 1") as raised:
        handle.result(timeout=1)
    assert raised.value.error_type == "EncodeError"
    [(_, fields)] = client.xrange(app.keys("default").dead_letters)
    assert b"result cannot be encoded" in fields[b"m"]


def test_message_over_max_message_bytes_is_refused_with_the_reason(redis_url, client):
    app = App(redis_url, max_message_bytes=1000)

    @app.task
    def upload(data):
        pass

    with pytest.raises(EncodeError, match=r"over max_message_bytes .*by reference"):
        upload.send("x" * 2000)
    with pytest.raises(EncodeError, match="max_message_bytes"):
        app.publish("files", "x" * 2000)
    assert client.xlen(app.keys("default").stream) == 0
    upload.send("x" * 500)
    assert client.xlen(app.keys("default").stream) == 1


def test_default_message_bound_is_64_mib(app, client):
    @app.task
    def upload(data):
        pass

    with pytest.raises(EncodeError, match="64 MiB"):
        upload.send(b"x" * (65 * 2**20))
    assert client.xlen(app.keys("default").stream) == 0
    with pytest.raises(ConfigurationError, match="at most"):
        App(app.url, max_message_bytes=600 * 2**20)


@pytest.fixture
def tight_memory(client):
    """Redis with maxmemory just above what it uses now (noeviction); reset afterwards."""

    def limit(extra_bytes):
        used = client.info("memory")["used_memory"]
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", max(1, used + extra_bytes))

    yield limit
    client.config_set("maxmemory", 0)


def test_send_many_under_oom_says_what_was_queued(app, client, tight_memory):
    @app.task
    def job(data):
        pass

    job.send("warm up: the queue registry and scripts exist")
    client.delete(app.keys("default").stream)
    tight_memory(2_000_000)  # room for one batch of 1000 x 1 KB with their statuses, not 3
    calls = [("x" * 1000,) for _ in range(3000)]
    with pytest.raises(SendIncomplete) as raised:
        job.send_many(calls)
    error = raised.value
    queued = client.xlen(app.keys("default").stream)
    assert error.index == queued == len(error.sent)
    assert 0 < error.index < 3000 and error.index % 1000 == 0
    assert isinstance(error.__cause__, OutOfMemory)
    assert f"items[{error.index}:]" in str(error)
    stream = client.xrange(app.keys("default").stream)
    assert [h.id for h in error.sent] == [ids.from_entry("default", None, e) for e, _ in stream]


def test_publish_many_under_oom_says_what_was_published(app, client, tight_memory):
    app.publish("ticks", "warm up")
    client.delete(app.topic_keys("ticks").stream)
    tight_memory(1_500_000)
    with pytest.raises(SendIncomplete) as raised:
        app.publish_many("ticks", ["y" * 1000] * 3000)
    error = raised.value
    assert error.index == len(error.sent) == client.xlen(app.topic_keys("ticks").stream)
    assert 0 < error.index < 3000


def test_send_when_redis_is_full_raises_out_of_memory(app, client, tight_memory):
    @app.task
    def job(data):
        pass

    job.send("warm up")
    tight_memory(-10_000_000)
    with pytest.raises(OutOfMemory, match=r"out of memory.*nothing was written") as raised:
        job.send("one more")
    assert isinstance(raised.value.__cause__, redis.exceptions.OutOfMemoryError)


def test_acl_refusal_is_permission_denied(redis_server, client):
    client.execute_command(
        "ACL", "SETUSER", "reader", "reset", "on", ">pw", "~*", "+ping", "+info", "+sadd"
    )
    try:
        app = App(f"redis://reader:pw@127.0.0.1:{redis_server.port}/0")

        @app.task
        def job():
            pass

        with pytest.raises(PermissionDenied, match=r"denied the command.*ACL") as raised:
            job.send()
        assert "pw@" not in str(raised.value)
        app.close()
    finally:
        client.acl_deluser("reader")


def test_sending_to_a_replica_is_read_only_replica(redis_server):
    with RedisServer(["--replicaof", "127.0.0.1", str(redis_server.port)]) as replica:
        app = App(replica.url)

        @app.task
        def job():
            pass

        with pytest.raises(ReadOnlyReplica, match="read-only replica: point the URL"):
            job.send()
        app.close()


@pytest.fixture
def not_redis():
    """A TCP server on loopback that answers every connection like a web server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    is_running = True

    def serve():
        while is_running:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"<html>HTTP/1.1 400 Bad Request</html>\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    is_running = False
    thread.join(5)
    listener.close()


def test_a_server_that_is_not_redis_is_named_as_such(not_redis):
    app = App(not_redis)
    with pytest.raises(ConnectionFailed, match="does not speak the Redis protocol"):
        app.ping()


def test_a_database_number_redis_does_not_have_is_a_configuration_error(redis_server):
    app = App(f"redis://127.0.0.1:{redis_server.port}/99")
    with pytest.raises(ConfigurationError, match="no such database"):
        app.ping()
