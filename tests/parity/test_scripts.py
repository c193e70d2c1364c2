"""Every Lua script, called directly, does the same on Redis and on memory:// (fakeredis runs
them with Lua 5.1 and streamwork's cmsgpack module)."""

from itertools import pairwise

from streamwork._base import protocol
from streamwork._base.keys import TopicKeys
from streamwork._worker.runs import Outcome


def setup_pending(app, consumer="me", n=3):
    source = app.queue_source("default")
    client = app.connection.redis
    client.xgroup_create(source.stream, source.group, id="0", mkstream=True)
    ids = [client.xadd(source.stream, {"m": b"x"}) for _ in range(n)]
    client.xreadgroup(source.group, consumer, {source.stream: ">"})
    return source, client, ids


def test_settle_writes_outcomes_and_drops_those_it_does_not_own(app):
    source, client, ids = setup_pending(app, n=4)
    client.xclaim(source.stream, source.group, "thief", 0, [ids[1]])
    client.xack(source.stream, source.group, ids[3])  # finished elsewhere: not pending
    outcomes = [
        Outcome("retry", ids[0], b"retry-0", 5),
        Outcome("retry", ids[1], b"retry-1", 6),
        Outcome("dead", ids[2], b"letter", run_ms=3, wait_ms=2),
        Outcome("done", ids[3]),
    ]
    result_key = "sw:{default}:result:r1"
    outcomes[2].result_key, outcomes[2].result = result_key, b"stored"
    scripts = app.connection.scripts
    written = scripts.settle(source, "me", outcomes, is_pending=True, result_ttl_ms=60_000)
    assert written == [1, 0, 1, -1]
    assert client.zrange(source.delayed, 0, -1, withscores=True) == [(b"retry-0", 5.0)]
    assert [fields[b"m"] for _, fields in client.xrange(source.dead_letters)] == [b"letter"]
    assert client.lrange(result_key, 0, -1) == [b"stored"] and client.pttl(result_key) > 0
    assert client.hgetall(source.stats) == {
        b"retry": b"1", b"dead": b"1", b"runs": b"1", b"waited": b"1", b"wait_ms": b"2",
        b"run_ms": b"3",
    }  # fmt: skip


def test_move_due_moves_only_what_is_due(app):
    keys = app.keys("default")
    client = app.connection.redis
    now = protocol.now_ms()
    client.zadd(keys.delayed, {b"due": now - 1, b"later": now + 60_000})
    moved, next_due = app.connection.scripts.move_due(keys.delayed, keys.stream, now)
    assert (moved, next_due) == (1, now + 60_000)
    assert [f[b"m"] for _, f in client.xrange(keys.stream)] == [b"due"]


def test_renew_lease_keeps_owned_entries_and_reports_lost_ones(app):
    source, client, ids = setup_pending(app, n=2)
    client.xclaim(source.stream, source.group, "thief", 0, [ids[1]])
    lost = app.connection.scripts.renew_lease(source, "me", ids)
    assert lost == [ids[1]]


def test_remove_idle_consumers_keeps_those_holding_entries(app):
    source, client, _ = setup_pending(app, n=1)
    client.xgroup_createconsumer(source.stream, source.group, "empty")
    assert app.connection.scripts.remove_idle_consumers(source, 0) == [b"empty"]


def test_enqueue_queues_once_per_key_with_a_status(app):
    keys = app.keys("default")
    scripts, client = app.connection.scripts, app.connection.redis
    state = ("job", 1000, 60_000, keys.events, 0)
    dedupe = (keys.dedupe("k"), 60_000)
    first = scripts.enqueue(
        keys.stream, keys.delayed, keys.status("a"), "a", b"m1", None, state, dedupe
    )
    again = scripts.enqueue(
        keys.stream, keys.delayed, keys.status("b"), "b", b"m2", None, state, dedupe
    )
    assert (first, again) == (b"a", b"a")
    ((entry_id, fields),) = client.xrange(keys.stream)
    assert fields == {b"m": b"m1", b"r": b"1"}  # recorded: its status says where it is
    assert client.hgetall(keys.status("a")) == {
        b"state": b"queued",
        b"task": b"job",
        b"updated": b"1000",
        b"entry": entry_id,
    }
    assert not client.exists(keys.status("b"))  # not queued: no status
    untracked = ("job", 1000, 0, keys.events, 0)  # status ttl 0: the app tracks no status
    scripts.enqueue(keys.stream, keys.delayed, keys.status("c"), "c", b"m3", None, untracked)
    assert client.xlen(keys.stream) == 2 and not client.exists(keys.status("c"))


def test_replay_moves_dead_letters_back(app):
    source = app.queue_source("default")
    client = app.connection.redis
    letter_id = client.xadd(source.dead_letters, {"m": b"letter"})
    assert app.connection.scripts.replay(source, [(letter_id, b"fresh", "", "")]) == 1
    assert client.xlen(source.dead_letters) == 0
    assert [f[b"m"] for _, f in client.xrange(source.stream)] == [b"fresh"]


def test_purge_deletes_undelivered_entries_and_the_delayed_set(app):
    source, client, _ = setup_pending(app, n=2)  # both delivered: they stay
    client.xadd(source.stream, {"m": b"waiting"})
    client.zadd(source.delayed, {b"later": 1})
    assert app.connection.scripts.purge(source, 100, True) == [1, 1]
    assert client.xlen(source.stream) == 2 and client.zcard(source.delayed) == 0


def test_trim_topic_never_drops_what_a_group_has_not_read(app):
    stream = TopicKeys(app.namespace, "t").stream
    client = app.connection.redis
    for n in range(5):
        client.xadd(stream, {"m": b"%d" % n})
    client.xgroup_create(stream, "slow", id="0")
    client.xreadgroup("slow", "c", {stream: ">"}, count=2)
    client.xack(stream, "slow", *[e[0] for e in client.xrange(stream, count=2)])
    trimmed, held, dropped = app.connection.scripts.trim_topic(stream, 1, None, False)
    assert (trimmed, held, dropped) == (2, 2, 0)
    assert client.xlen(stream) == 3


def test_add_many_adds_every_message(app):
    keys = app.keys("default")
    statuses = [keys.status(n) for n in "abc"]
    scripts, client = app.connection.scripts, app.connection.redis
    state = ("job", 1000, 60_000, keys.events, 0)
    added = scripts.add_many(
        keys.stream,
        keys.delayed,
        [b"a", b"b", b"c"],
        ids=list("abc"),
        statuses=statuses,
        state=state,
    )
    assert added == 3
    assert [f[b"m"] for _, f in client.xrange(keys.stream)] == [b"a", b"b", b"c"]
    assert [client.hget(key, "state") for key in statuses] == [b"queued"] * 3
    assert 0 < client.pttl(statuses[0]) <= 60_000
    later = [keys.status("d")]
    due = 4_000_000_000_000  # in 2096: the status lives until then + its ttl
    scripts.add_many(
        keys.stream, keys.delayed, [b"d"], ids=["d"], due_ms=due, statuses=later, state=state
    )
    assert client.zrange(keys.delayed, 0, -1, withscores=True) == [(b"d", float(due))]
    assert client.hmget(later[0], "state", "due", "body") == [b"delayed", str(due).encode(), b"d"]
    topic = app.topic_keys("t").stream  # a topic's events have no status
    assert scripts.add_many(topic, "unused", [b"e"], ids=["e"]) == 1 and client.xlen(topic) == 1


def test_scripts_run_on_lua_5_1_with_cmsgpack(app):
    client = app.connection.redis
    assert client.eval("return _VERSION", 0) == b"Lua 5.1"
    packed = client.eval("return cmsgpack.pack({1, 'a', {2}})", 0)
    assert client.eval("return cmsgpack.unpack(ARGV[1])[3][1]", 0, packed) == 2
    assert client.eval("return select('#', unpack({7, 8}))", 0) == 2


def test_a_reserved_start_is_free_on_time_and_charged_again_when_late(app):
    """The start step does not charge a rate-limited message again when its reserved
    start comes on time; one that comes late (its worker lost Redis and backed off) is
    charged as a new start, so late ones coming together never start on top of the rate."""
    source, client, ids = setup_pending(app, n=8)
    rate = source.limit("rate", "job")
    interval, tolerance = 200, 0  # "5/s", one at a time
    now = int(client.time()[0]) * 1000 + int(client.time()[1]) // 1000

    def start(entries, reserved):
        rows = [
            ("job", 1, f"m{n}", entry, None, rate, interval, tolerance, None, 0, reserved, "")
            for n, entry in enumerate(entries)
        ]
        return app.connection.scripts.start(source, rows, "me", now, 60_000)

    assert start(ids[:1], reserved=now) == [0]  # on time: not charged again
    assert client.get(rate) is None
    # five reserved starts 5 s late, the bucket long empty: charged as new starts, so one
    # starts now and the others get the next starts, one interval apart
    replies = start(ids[1:6], reserved=now - 5_000)
    assert replies[0] == 0 and all(isinstance(r, int) and r > now for r in replies[1:])
    assert [b - a for a, b in pairwise(replies[1:])] == [interval] * 3
    assert start(ids[6:7], reserved=0)[0] > replies[-1]  # a new message waits behind them
