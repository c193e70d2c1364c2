"""Dead letters: replay runs a message again with its attempts reset; nothing is lost."""

import msgpack

from streamwork._base import protocol
from streamwork.ops import dead_letters
from streamwork.ops.stats import queue_state
from streamwork.testing import WorkerThread, drain, wait_until


def fail_once_app(app, attempts):
    @app.task(bind=True, max_retries=0)
    def flaky(message, n):
        attempts.append((n, message.attempt, message.id))
        if len(attempts) == 1:
            raise RuntimeError("downstream was down")

    return flaky


def test_replayed_dead_letter_runs_again_with_attempts_reset(app):
    attempts = []
    flaky = fail_once_app(app, attempts)
    handle = flaky.send(5)
    drain(app)
    [entry] = dead_letters.list_dead_letters(app.connection, app.queue_source("default"))
    assert entry.letter.error == "downstream was down"
    report = dead_letters.replay(app.connection, app.queue_source("default"), [entry.id])
    assert (report.replayed, report.skipped, report.missing) == (1, [], [])
    assert queue_state(app, "default").dead_letters == 0
    drain(app)
    assert attempts == [(5, 1, handle.id), (5, 1, handle.id)]
    assert queue_state(app, "default").is_empty


def test_replay_all_pages_through_every_dead_letter(app, client):
    @app.task(max_retries=0)
    def doomed(n):
        raise ValueError(n)

    doomed.send_many(range(250))
    drain(app, concurrency=50)
    assert dead_letters.count(app.connection, app.queue_source("default")) == 250
    assert dead_letters.replay(app.connection, app.queue_source("default")).replayed == 250
    assert client.xlen(app.keys("default").stream) == 250
    assert dead_letters.count(app.connection, app.queue_source("default")) == 0


def test_replay_leaves_undecodable_letters_and_reports_missing_ids(app, client):
    @app.task
    def job(): ...

    client.xadd(app.keys("default").stream, {b"m": b"\xc1junk"})
    drain(app)
    [entry] = dead_letters.list_dead_letters(app.connection, app.queue_source("default"))
    report = dead_letters.replay(app.connection, app.queue_source("default"), [entry.id, "1-1"])
    assert (report.replayed, report.skipped, report.missing) == (0, [entry.id], ["1-1"])
    assert dead_letters.count(app.connection, app.queue_source("default")) == 1


def test_replaying_the_same_letter_twice_enqueues_it_once(app, client):
    attempts = []
    flaky = fail_once_app(app, attempts)
    flaky.send(1)
    drain(app)
    [entry] = dead_letters.list_dead_letters(app.connection, app.queue_source("default"))
    # e.g. an operator ran replay again after an interrupted first run
    first = dead_letters.replay(app.connection, app.queue_source("default"), [entry.id])
    second = dead_letters.replay(app.connection, app.queue_source("default"), [entry.id])
    assert (first.replayed, second.replayed, second.missing) == (1, 0, [entry.id])
    assert client.xlen(app.keys("default").stream) == 1


def test_replay_is_atomic_under_concurrent_replayers(app, client):
    from concurrent.futures import ThreadPoolExecutor

    from streamwork import App

    @app.task(max_retries=0)
    def doomed(n):
        raise ValueError(n)

    doomed.send_many(range(300))
    drain(app, concurrency=50)
    ids = [
        e.id
        for e in dead_letters.list_dead_letters(
            app.connection, app.queue_source("default"), limit=300
        )
    ]
    apps = [App(app.url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        reports = list(
            pool.map(
                lambda a: dead_letters.replay(a.connection, a.queue_source("default"), ids), apps
            )
        )
    assert sum(r.replayed for r in reports) == 300
    bodies = [protocol.decode(f[b"m"]) for _, f in client.xrange(app.keys("default").stream)]
    assert sorted(b.args[0] for b in bodies) == list(range(300))


def test_purge_deletes_every_dead_letter(app):
    @app.task(max_retries=0)
    def doomed():
        raise ValueError

    doomed.send_many([()] * 3)
    drain(app)
    assert dead_letters.purge(app.connection, app.queue_source("default")) == 3
    assert dead_letters.count(app.connection, app.queue_source("default")) == 0


def test_dead_letter_as_dict_decodes_the_message(app):
    @app.task(max_retries=0)
    def doomed(order_id, note=""):
        raise ValueError("nope")

    doomed.send(7, note="x")
    drain(app)
    [entry] = dead_letters.list_dead_letters(app.connection, app.queue_source("default"))
    data = entry.as_dict()
    assert data["message"] == {"args": [7], "kwargs": {"note": "x"}, "headers": {}}
    assert data["error_type"] == "ValueError"
    msgpack.packb(data["message"])  # plain data, printable as JSON


def test_a_message_that_kills_its_worker_every_time_is_dead_lettered(app, client):
    # Simulate dead workers: a ghost consumer takes the entry and never finishes, twice.
    @app.task(max_deliveries=2)
    def poison(): ...

    poison.send()
    stream = app.keys("default").stream
    client.xgroup_create(stream, "workers", id="0", mkstream=True)
    client.xreadgroup("workers", "ghost-1", {stream: ">"})
    [entry] = client.xpending_range(stream, "workers", "-", "+", 1)
    client.xclaim(stream, "workers", "ghost-2", 0, [entry["message_id"]])  # delivery 2
    with WorkerThread(app, visibility_timeout=0.2):
        wait_until(lambda: queue_state(app, "default").dead_letters == 1)
    [letter] = dead_letters.list_dead_letters(app.connection, app.queue_source("default"))
    assert letter.letter.reason.startswith("delivered 3 times without an outcome")
    assert queue_state(app, "default").is_empty
