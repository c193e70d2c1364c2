"""Recovery against a real Redis: abandoned entries are claimed, live leases are kept, and a
worker that lost an entry to another cannot write its outcome."""

import threading

from streamwork._base import protocol
from streamwork.ops.stats import queue_state
from streamwork.testing import WorkerThread, wait_until


def deliver_to_ghost(app, client, queue="default", count=10):
    """Read entries as a consumer that then 'dies' (never acks)."""
    stream = app.keys(queue).stream
    client.xgroup_create(stream, "workers", id="0", mkstream=True)
    return client.xreadgroup("workers", "ghost", {stream: ">"}, count=count)


def test_entries_of_a_dead_consumer_are_claimed_and_run_once(app, client):
    runs = []

    @app.task(bind=True)
    def job(message, n):
        runs.append((n, message.delivery_count, message.redelivered))

    job.send_many(range(3))
    deliver_to_ghost(app, client)
    with WorkerThread(app, visibility_timeout=0.3) as runner:
        wait_until(lambda: len(runs) == 3 and queue_state(app, "default").is_empty)
    assert sorted(runs) == [(0, 2, True), (1, 2, True), (2, 2, True)]
    assert runner.worker.session.scanner.claimed == 3


def test_entry_deleted_while_pending_is_counted_lost_not_run(app, client):
    runs = []

    @app.task
    def job(n):
        runs.append(n)

    job.send_many(range(2))
    [[_, entries]] = deliver_to_ghost(app, client)
    client.xdel(app.keys("default").stream, entries[0][0])  # e.g. an XTRIM by someone else
    with WorkerThread(app, visibility_timeout=0.3) as runner:
        wait_until(lambda: runs == [1])
        wait_until(lambda: runner.worker.session.scanner.deleted_while_pending == 1)
    assert queue_state(app, "default").pending == 0


def test_a_live_task_longer_than_the_visibility_timeout_keeps_its_lease(app):
    runs = []
    lock = threading.Lock()

    @app.task
    def long_task(n):
        with lock:
            runs.append(n)
        threading.Event().wait(1.2)  # four visibility timeouts

    long_task.send(1)
    with WorkerThread(app, visibility_timeout=0.3), WorkerThread(app, visibility_timeout=0.3):
        wait_until(lambda: queue_state(app, "default").is_empty, timeout=10)
    assert runs == [1]


def lost_ownership_metric(queue):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("streamwork_lost_ownership_total", {"queue": queue}) or 0


def test_outcome_of_an_entry_claimed_by_another_worker_is_dropped(app, client):
    started, release = threading.Event(), threading.Event()
    metric_before = lost_ownership_metric("default")

    @app.task(max_retries=3)
    def job():
        started.set()
        release.wait(10)
        raise RuntimeError("fails after losing the entry")

    job.send()
    stream = app.keys("default").stream
    with WorkerThread(app, visibility_timeout=30) as runner:
        assert started.wait(10)
        [entry] = client.xpending_range(stream, "workers", "-", "+", 10)
        # Another worker's scanner takes the entry (as after a freeze past the timeout).
        client.xclaim(stream, "workers", "other-worker", 0, [entry["message_id"]])
        release.set()
        wait_until(lambda: runner.worker.session.settler.lost_ownership == 1)
    [still] = client.xpending_range(stream, "workers", "-", "+", 10)
    assert still["consumer"] == b"other-worker"
    state = queue_state(app, "default")
    assert (state.delayed, state.dead_letters, state.pending) == (0, 0, 1)
    assert lost_ownership_metric("default") == metric_before + 1


def test_manual_ack_nack_and_silence(app, client):
    seen = []

    @app.task(ack_mode="manual", bind=True, max_retries=1)
    def handle(message, action):
        seen.append((action, message.attempt))
        if action == "ack":
            message.ack()
        elif action == "drop":
            message.nack(requeue=False, reason="bad order")
        elif action == "again" and message.attempt == 1:
            message.nack()
        elif action == "again":
            message.ack()
        # "silent": neither — it stays pending

    for action in ("ack", "drop", "again", "silent"):
        handle.send(action)
    with WorkerThread(app, visibility_timeout=60):
        wait_until(lambda: len(seen) == 5 and queue_state(app, "default").pending == 1)
        state = queue_state(app, "default")
    assert sorted(seen) == [("ack", 1), ("again", 1), ("again", 2), ("drop", 1), ("silent", 1)]
    assert (state.ready, state.delayed, state.dead_letters) == (0, 0, 1)
    [(_, fields)] = client.xrange(app.keys("default").dead_letters)
    assert protocol.decode_dead_letter(fields[b"m"]).reason == "bad order"
    [pending] = client.xpending_range(app.keys("default").stream, "workers", "-", "+", 10)
    body = client.xrange(app.keys("default").stream, pending["message_id"], pending["message_id"])
    assert protocol.decode(body[0][1][b"m"]).args == ("silent",)


def test_manual_entry_left_undecided_is_delivered_again_after_the_timeout(app):
    seen = []

    @app.task(ack_mode="manual", bind=True)
    def handle(message):
        seen.append(message.delivery_count)
        if message.redelivered:
            message.ack()

    handle.send()
    with WorkerThread(app, visibility_timeout=0.3):
        wait_until(lambda: len(seen) == 2 and queue_state(app, "default").is_empty)
    assert seen == [1, 2]


def test_auto_ack_acknowledges_before_the_handler_runs(app, client):
    pending_while_running = []

    @app.task(ack_mode="auto")
    def job():
        pending_while_running.append(client.xpending(app.keys("default").stream, "workers"))

    @app.task
    def late_job():
        pending_while_running.append(client.xpending(app.keys("default").stream, "workers"))

    job.send()
    with WorkerThread(app):
        wait_until(lambda: len(pending_while_running) == 1)
    late_job.send()
    with WorkerThread(app):
        wait_until(lambda: len(pending_while_running) == 2)
    assert [p["pending"] for p in pending_while_running] == [0, 1]
    assert queue_state(app, "default").is_empty
