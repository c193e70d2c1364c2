"""The Lua steps under concurrency, against a real Redis."""

import threading

import redis

from streamwork._base import protocol
from streamwork._redis.scripts import Scripts


def test_concurrent_movers_move_every_due_entry_exactly_once(app, client):
    keys = app.keys("default")
    now = protocol.now_ms()
    bodies = {
        protocol.encode(protocol.Envelope(id=protocol.new_id(), task="t", args=(n,))): now - n
        for n in range(5000)
    }
    future = protocol.encode(protocol.Envelope(id=protocol.new_id(), task="t", args=(-1,)))
    client.zadd(keys.delayed, {**bodies, future: now + 3_600_000})
    moved = []
    barrier = threading.Barrier(6)

    def mover():
        connection = redis.Redis.from_url(app.url)
        scripts = Scripts(connection)
        barrier.wait()
        total = 0
        while True:
            count, next_due = scripts.move_due(
                keys.delayed, keys.stream, protocol.now_ms(), limit=100
            )
            total += count
            if count == 0:
                break
        moved.append((total, next_due))
        connection.close()

    threads = [threading.Thread(target=mover) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(total for total, _ in moved) == 5000
    assert len([t for t, _ in moved if t > 0]) > 1, "the movers did not actually overlap"
    assert all(next_due == now + 3_600_000 for _, next_due in moved)
    streamed = [protocol.decode(f[b"m"]).args[0] for _, f in client.xrange(keys.stream)]
    assert sorted(streamed) == list(range(5000))
    assert client.zrange(keys.delayed, 0, -1) == [future]


def test_idle_consumers_with_nothing_pending_are_removed_others_kept(app, client):
    source = app.queue_source("default")
    stream = source.stream
    client.xgroup_create(stream, "workers", id="0", mkstream=True)
    client.xadd(stream, {"m": b"x"})
    client.xreadgroup("workers", "holder", {stream: ">"})  # one pending entry
    client.xgroup_createconsumer(stream, "workers", "empty")  # holds nothing
    scripts = Scripts(client)
    assert scripts.remove_idle_consumers(source, 60_000) == []  # not idle long enough
    assert scripts.remove_idle_consumers(source, 0) == [b"empty"]
    names = [c["name"] for c in client.xinfo_consumers(stream, "workers")]
    assert names == [b"holder"]
    assert client.xpending(stream, "workers")["pending"] == 1


def test_settle_writes_nothing_for_entries_another_consumer_owns(app, client):
    source = app.queue_source("default")
    stream = source.stream
    client.xgroup_create(stream, "workers", id="0", mkstream=True)
    ids = [client.xadd(stream, {"m": b"x"}) for _ in range(3)]
    client.xreadgroup("workers", "me", {stream: ">"})
    client.xclaim(stream, "workers", "thief", 0, [ids[1]])
    from streamwork._worker.runs import Outcome

    outcomes = [Outcome("retry", i, b"retry-%d" % n, 1) for n, i in enumerate(ids)]
    written = Scripts(client).settle(source, "me", outcomes, is_pending=True, result_ttl_ms=1000)
    assert written == [1, 0, 1]
    assert client.zrange(source.delayed, 0, -1) == [b"retry-0", b"retry-2"]
    assert [e[0] for e in client.xrange(stream)] == [ids[1]]  # the others were acked and deleted
    assert client.xpending(stream, "workers")["consumers"] == [{"name": b"thief", "pending": 1}]
