"""Least-privilege ACL users, as docs/guides/security.md gives them: a producer can send but
cannot read or delete queues; a worker can run everything it needs."""

import re
from pathlib import Path

import pytest
import redis

from streamwork import App, PermissionDenied, UnknownWorkflow, chain
from streamwork.ops.stats import queue_state
from streamwork.testing import drain

# The rules docs/guides/security.md documents (a test below checks they are the same).
PRODUCER = (
    "on >producer-secret ~sw:* resetchannels -@all +ping +info "
    "+xadd +zadd +zrem +zscore +sadd +hset +hget +hgetall +hdel +pexpire +pexpireat "
    "+evalsha +eval +script|load +get +set +blmove +rpush +ltrim"
)
WEBAPP = PRODUCER.replace("producer-secret", "webapp-secret") + " +xrange +xpending +xdel +hincrby"
"""A producer that reads the status of waiting messages and cancels them."""
WORKER = (
    "on >worker-secret ~sw:* resetchannels -@all +@connection +@stream +@sortedset +@set "
    "+@hash +@list +@string +@scripting +del +exists +pexpire +pexpireat +time -@dangerous +info"
)


@pytest.fixture
def users(redis_server, client):
    client.execute_command("ACL", "SETUSER", "producer", "reset", *PRODUCER.split())
    client.execute_command("ACL", "SETUSER", "worker", "reset", *WORKER.split())
    client.execute_command("ACL", "SETUSER", "webapp", "reset", *WEBAPP.split())
    yield {
        name: f"redis://{name}:{name}-secret@127.0.0.1:{redis_server.port}/0"
        for name in ("producer", "worker", "webapp")
    }
    client.acl_deluser("producer", "worker", "webapp")


def declare(app):
    @app.task(queue="orders", store_result=True)
    def total(a, b):
        return a + b

    return total


def test_producer_sends_and_worker_runs_as_least_privilege_users(users):
    producer, worker = App(users["producer"]), App(users["worker"])
    send = declare(producer)
    declare(worker)
    handle = send.send(2, 3)
    send.send_many([(1, 1), (2, 2)])
    send.send_with(args=(5, 5), key="order-5")
    assert send.send_with(args=(5, 5), key="order-5").is_duplicate
    later = send.send_with(args=(1, 1), delay=600)
    assert later.cancel("not needed") == "cancelled"  # status and cancel as the producer
    keyed = [send.send_with(args=(n, 0), partition_key="acct-1") for n in (1, 2)]
    delayed_keyed = send.send_with(args=(3, 0), partition_key="acct-2", delay=600)
    assert delayed_keyed.cancel() == "cancelled"  # made due at once, settled unrun
    producer.add_schedule("nightly", send, cron="0 2 * * *", args=(1, 2))
    flow = chain(send.s(1, 1), send.s(2)).send()
    cancelled = chain(send.s(1, 1), send.s(2)).send()
    assert cancelled.cancel() == "cancelled"
    assert drain(worker) == 8  # the worker's ticker reads Redis TIME
    assert [h.result(timeout=5) for h in keyed] == [1, 2]
    assert handle.result(timeout=5) == 5  # the producer may read its results
    assert flow.result(timeout=5) == 4 and flow.status().state == "done"
    with pytest.raises(UnknownWorkflow):
        producer.workflow("0" * 32).result(timeout=0.01)
    assert handle.status().state == "done" and later.status().state == "cancelled"
    assert queue_state(worker, "orders").is_empty
    assert worker.purge("orders") == (0, 0)


@pytest.mark.parametrize(
    "command",
    [
        (
            "XREADGROUP",
            "GROUP",
            "workers",
            "thief",
            "COUNT",
            "1",
            "STREAMS",
            "sw:{orders}:stream",
            ">",
        ),
        ("XRANGE", "sw:{orders}:stream", "-", "+"),
        ("XDEL", "sw:{orders}:stream", "0-1"),
        ("DEL", "sw:{orders}:stream"),
        ("XTRIM", "sw:{orders}:stream", "MAXLEN", "0"),
        ("FLUSHDB",),
    ],
)
def test_producer_user_cannot_read_or_delete_queues(users, command):
    client = redis.Redis.from_url(users["producer"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.execute_command(*command)


def test_a_script_cannot_lift_the_producer_above_its_rules(users):
    client = redis.Redis.from_url(users["producer"])
    with pytest.raises(
        redis.exceptions.ResponseError, match=r"can't run this command|permission|NOPERM"
    ):
        client.eval("return redis.call('DEL', KEYS[1])", 1, "sw:{orders}:stream")


def test_keys_outside_the_prefix_are_out_of_reach(users):
    for url in users.values():
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis.Redis.from_url(url).xadd("other:stream", {"m": "x"})


def test_the_security_guide_gives_these_rules():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "guides" / "security.md").read_text()
    documented = {}
    for block in re.findall(r"```text\n(ACL SETUSER .*?)```", guide, re.S):
        words = block.split()
        documented[words[2]] = [w for w in words[3:] if not w.startswith(">")]
    for user, rules in (("producer", PRODUCER), ("worker", WORKER), ("webapp", WEBAPP)):
        assert documented[user] == [w for w in rules.split() if not w.startswith(">")]


def test_the_status_of_a_waiting_message_needs_the_webapp_rules(users):
    """A plain message waits with no status key: its status is read off its entry (XRANGE,
    XPENDING) and a cancel deletes it (XDEL). The producer's rules refuse that with a clear
    error, never a wrong state; the webapp's rules allow it."""
    producer, webapp, worker = App(users["producer"]), App(users["webapp"]), App(users["worker"])
    for app in (producer, webapp, worker):
        declare(app)
    waiting = producer.tasks["total"].send(1, 2)
    with pytest.raises(PermissionDenied, match="xrange"):
        waiting.status()
    with pytest.raises(PermissionDenied):
        waiting.cancel()
    seen = webapp.tasks["total"].handle(waiting.id)
    assert seen.status().state == "queued" and seen.status().task == "total"
    dropped = webapp.tasks["total"].send(3, 4)
    assert dropped.cancel() == "cancelled" and dropped.status().state == "cancelled"
    assert drain(worker) == 1
    assert waiting.status().state == "done"  # a status now: the producer reads it
