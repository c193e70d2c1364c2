"""Live workers are counted by their own heartbeats, on Redis, on memory:// (and, from
test_cluster.py, on a Redis Cluster): a queue a worker serves counts it, busy or idle."""

from streamwork._base import protocol
from streamwork.ops.stats import queue_state, topic_states
from streamwork.testing import WorkerThread, wait_until


def check_idle_served_queues_count_their_worker(app):
    """On Redis 7.0 a read that returns nothing neither creates nor refreshes a consumer:
    a queue a live worker serves that never got a message has none. Liveness comes from
    the workers' heartbeat instead, for longer than the window (one visibility timeout)."""

    @app.task(queue="busy")
    def job():
        pass

    app.task(queue="idle", name="never_sent")(lambda: None)
    app.subscriber("orders", group="billing")(lambda message: None)
    job.send()
    with WorkerThread(app, visibility_timeout=1.5) as worker:  # a heartbeat every 0.5 s
        wait_until(lambda: worker.worker.session is not None, message="the worker's start")
        scanner = worker.worker.session.scanner
        wait_until(lambda: scanner.beats >= 5, message="heartbeats past the 1.5 s window")
        assert queue_state(app, "idle").consumers == 1
        assert queue_state(app, "busy").consumers == 1
        [topic] = topic_states(app, ["orders"])
        assert [(g.group, g.consumers) for g in topic.groups] == [("billing", 1)]
    client = app.connection.redis
    assert queue_state(app, "idle").consumers == 0  # it said goodbye when it stopped
    workers = app.queue_source("idle").workers
    assert client.exists(workers) == 0  # nothing left behind
    now = protocol.now_ms()
    client.zadd(workers, {"died-a-while-ago": now - 1, "alive": now + 10_000})
    assert queue_state(app, "idle").consumers == 1


def test_idle_served_queues_count_their_worker(app):
    check_idle_served_queues_count_their_worker(app)
