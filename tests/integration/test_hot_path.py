"""The hot path's Redis work, counted (not timed): a plain send and a plain drain issue no
per-message command beyond the entry, what lets status() find the message, the read and
the settle — so that it cannot silently grow again (issue 33) — and what a plain message
without a start step still promises: cancelled while queued it never starts, delivered it
reads "running" from the pending entries list, and a cancel reaches it there."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio
from prometheus_client import REGISTRY

from streamwork import App, Backoff
from streamwork._base import ids, protocol
from streamwork._redis import commands, reads
from streamwork.ops import dead_letters
from streamwork.testing import WorkerThread, drain, wait_until
from streamwork.web.views import queue_page

N = 400


def calls(client: redis.Redis) -> dict[str, int]:
    """Commands run since the last reset (those scripts ran included), by name."""
    found = {
        name.removeprefix("cmdstat_"): int(row["calls"])
        for name, row in client.info("commandstats").items()
    }
    client.config_resetstat()
    return found


def per_message(
    counted: dict[str, int], allowed: dict[str, float], messages: int = N
) -> dict[str, float]:
    """The commands that ran more often than their allowance per message, with their rate;
    on top of it, any command may run once per batch (a tenth of a message or less)."""
    over = {}
    for name, count in counted.items():
        if count > (allowed.get(name, 0) + 0.1) * messages:
            over[name] = count / messages
    return over


def test_a_plain_send_and_drain_issue_no_per_message_command_beyond_entry_read_and_settle(
    app: App, client: redis.Redis
) -> None:
    @app.task
    async def plain(n):
        pass

    plain.send(0)
    drain(app)
    calls(client)

    for n in range(N):
        plain.send(n)
    sent = calls(client)
    # the entry alone: its id is the message's (ids.py), no script, no status
    assert per_message(sent, {"xadd": 1}) == {} and "evalsha" not in sent, sent

    plain.send_many(range(N))
    assert per_message(calls(client), {"xadd": 1}) == {}
    assert len(client.keys("*:status:*")) == 1  # the first message's record, drained

    with WorkerThread(app, concurrency=100) as thread:  # (waits without asking Redis)
        wait_until(lambda: thread.worker.processed == 2 * N, timeout=30)
    drained = calls(client)
    # the settle's one status write per message (its compact record: one SET with its
    # time to live); reads, acks, deletes and totals per batch; no start step (no HGET of
    # the state, no HSET "running")
    assert per_message(drained, {"set": 1}, 2 * N) == {}, drained
    assert drained.get("hget", 0) == 0


def test_a_done_message_s_compact_record_reads_as_its_status_did(
    app: App, client: redis.Redis, redis_url: str
) -> None:
    """The compact record says what the status hash said of a done message: state, attempts,
    task, worker, when; a cancel finds it finished, a late progress changes nothing, and it
    lives the status's time to live."""

    @app.task(queue="mail")
    def job(n):
        pass

    handle = job.send(1)
    with WorkerThread(app) as thread:
        wait_until(lambda: handle.status().is_final, timeout=20)
        consumer = thread.worker.consumer
    key = app.keys("mail").status(handle.id)
    assert client.type(key) == b"string"  # the compact record, not a hash
    assert 0 < client.pttl(key) <= app.status_ttl_ms
    status = handle.status()
    assert (status.state, status.attempts, status.task, status.worker) == (
        "done",
        1,
        job.name,
        consumer,
    )
    assert status.updated_at is not None and status.error is None and status.progress is None
    assert handle.cancel() == "finished"
    assert client.type(key) == b"string"
    assert app.connection.scripts.progress(key, 0.5, "late", 0, app.status_ttl_ms) == 0
    # the Python readers of status fields (the console's progress view, a worker's cancel
    # check racing a settle) read "nothing" there, not WRONGTYPE
    assert reads.status_fields(client, [key], ("progress", "note")) == [[None, None]]

    async def cancel_flags():
        async_client = redis.asyncio.Redis.from_url(redis_url)
        try:
            return await commands.cancel_flags(async_client, [key])
        finally:
            await async_client.aclose()

    assert asyncio.run(cancel_flags()) == [[None, None]]


def test_a_message_that_reported_progress_keeps_its_status_hash(
    app: App, client: redis.Redis
) -> None:
    """Its progress stays readable once it is done: the settle writes the hash's fields."""

    @app.task(queue="mail", bind=True)
    def job(message, n):
        message.progress(0.5, note="half")

    handle = job.send(1)
    with WorkerThread(app) as thread:
        wait_until(lambda: handle.status().is_final, timeout=20)
        consumer = thread.worker.consumer
    assert client.type(app.keys("mail").status(handle.id)) == b"hash"
    status = handle.status()
    assert (status.state, status.progress, status.note) == ("done", 0.5, "half")
    # sent by entry, it had no status until its progress made one, naming it whole
    assert (status.task, status.worker, status.attempts) == (job.name, consumer, 1)


def test_a_plain_message_cancelled_while_queued_leaves_its_stream_at_once(
    app: App, client: redis.Redis
) -> None:
    ran = []

    @app.task(queue="mail", priority="low")
    def job(n):
        ran.append(n)

    keep, drop = job.send(1), job.send_with(args=(2,), priority="high")
    low, high = app.keys("mail").band_stream("low"), app.keys("mail").band_stream("high")
    assert (client.xlen(low), client.xlen(high)) == (1, 1)
    assert drop.cancel("changed my mind") == "cancelled"
    assert (client.xlen(low), client.xlen(high)) == (1, 0)  # gone before any worker read it
    assert drain(app) == 1 and ran == [1]
    assert drop.status().state == "cancelled" and keep.status().state == "done"


def test_a_delivered_plain_message_reads_running_and_a_cancel_reaches_it(
    app: App, client: redis.Redis
) -> None:
    """No step marks it running: its entry in the pending entries list says so, with the
    consumer that has it; a cancel then asks its worker to stop it."""

    @app.task
    def job(n):
        pass

    handle = job.send(1)
    source = app.queue_source("default")
    client.xgroup_create(source.stream, source.group, "0", mkstream=True)
    client.xreadgroup(source.group, "worker-7", {source.stream: ">"}, count=1)
    status = handle.status()
    assert (status.state, status.worker, status.attempts) == ("running", "worker-7", 1)
    assert handle.cancel("stop") == "cancelling"
    assert client.xlen(source.stream) == 1  # delivered: its worker settles it
    assert handle.status().cancel_requested


def test_a_message_acknowledged_on_receipt_still_reads_running_and_is_cancelled_running(
    app: App,
) -> None:
    """ack_mode="auto" takes the entry out of the pending list before the handler runs, so
    the start step marks it running, as before (the pending list cannot say it)."""

    @app.task(ack_mode="auto", bind=True)
    def once(message, n):
        wait_until(lambda: message.cancelled, timeout=20)  # a sync handler's cancel check

    handle = once.send(1)
    with WorkerThread(app):
        wait_until(lambda: handle.status().state == "running", timeout=20)
        assert handle.cancel() == "cancelling"
        wait_until(lambda: handle.status().is_final, timeout=20)
    assert handle.status().state == "cancelled"


def test_a_message_sent_by_entry_is_found_from_its_id_alone(app: App, client: redis.Redis) -> None:
    """A plain send writes its entry and nothing else: the message carries no id; its id
    is its entry's (ids.py), from which status(), app.handle() and the console find it in
    its queue, whichever band it waits in."""

    @app.task(queue="mail", priority="low")
    def job(n):
        pass

    low, high = job.send(1), job.send_with(args=(2,), priority="high")
    assert not low.is_duplicate and not high.is_duplicate
    keys = app.keys("mail")
    for handle, band in ((low, "low"), (high, "high")):
        ((entry_id, fields),) = client.xrange(keys.band_stream(band))[-1:]
        assert protocol.decode(fields[b"m"]).id == ""  # the message carries no id
        assert handle.id == ids.from_entry("mail", band, entry_id)
        assert client.exists(keys.status(handle.id)) == 0
        status = handle.status()
        assert (status.state, status.task, status.attempts) == ("queued", job.name, 0)
        sent_ms = int(entry_id.split(b"-")[0])
        assert status.updated_at is not None
        assert int(status.updated_at.timestamp() * 1000) == sent_ms
        found = app.handle(handle.id)  # the id alone: the queue is read off it
        assert found.id == handle.id and found.status().state == "queued"
    page = queue_page(app, "mail")
    assert {entry.message_id for entry in page.ready} == {low.id, high.id}
    assert drain(app) == 2
    assert low.status().state == "done" and high.status().task == job.name
    client.delete(keys.status(low.id))  # its record expired: its entry is gone too
    assert low.status().state == "unknown" and low.cancel() == "unknown"


def test_a_running_message_sent_by_entry_cancelled_ends_cancelled_with_its_task(
    app: App,
) -> None:
    @app.task(queue="mail")
    async def slow(n):
        await asyncio.sleep(30)

    handle = slow.send(1)
    with WorkerThread(app):
        wait_until(lambda: handle.status().state == "running", timeout=20)
        assert handle.cancel("stop") == "cancelling"
        assert handle.status().task == slow.name  # the cancel's status names it
        wait_until(lambda: handle.status().is_final, timeout=20)
    status = handle.status()
    assert (status.state, status.task, status.error) == ("cancelled", slow.name, "stop")


def test_a_message_sent_by_entry_keeps_its_id_through_retries_a_wait_and_a_replay(
    app: App,
) -> None:
    """Its later attempts carry the id its first attempt's entry gave it: a retry, a wait
    for a concurrency slot (the second of two sent together waits for the first), a
    replay of its dead letter."""
    runs: list[int] = []

    @app.task(
        queue="mail", max_retries=1, backoff=Backoff(base=0.01, cap=0.05), concurrency_limit=1
    )
    def flaky(n):
        runs.append(n)
        raise RuntimeError("down")

    def waits() -> float:
        labels = {"queue": "mail", "group": "", "task": flaky.name, "reason": "concurrency"}
        return REGISTRY.get_sample_value("streamwork_held_back_total", labels) or 0.0

    waited = waits()
    handles = flaky.send_many([(1,), (2,)])  # read together: one runs, the other waits
    with WorkerThread(app):
        wait_until(lambda: all(h.status().is_final for h in handles), timeout=20)
    assert waits() > waited  # the wait row is the message re-encoded, with its id
    for handle in handles:
        status = handle.status()
        assert (status.state, status.attempts, status.task) == ("failed", 2, flaky.name)
    source = app.queue_source("mail")
    letters = dead_letters.list_dead_letters(app.connection, source)
    assert {entry.letter.task_id for entry in letters} == {h.id for h in handles}
    assert dead_letters.replay(app.connection, source).replayed == 2
    assert {h.status().state for h in handles} == {"queued"}  # the replays carry their ids
    with WorkerThread(app):
        wait_until(lambda: all(h.status().is_final for h in handles), timeout=20)
    assert [h.status().attempts for h in handles] == [2, 2]
    assert sorted(runs) == [1, 1, 1, 1, 2, 2, 2, 2]
