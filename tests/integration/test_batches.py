"""Batch handlers in a running worker on a real Redis: a batch waits at most batch_wait to
fill, fills past the worker's concurrency, runs once per batch, and a stopping worker runs
what it gathered."""

import time

from prometheus_client import REGISTRY

from streamwork import App
from streamwork.testing import WorkerThread, wait_until


def test_a_batch_waits_at_most_batch_wait_then_runs_what_it_has(app: App) -> None:
    batches: list[tuple[float, list[int]]] = []

    @app.task(batch_size=100, batch_wait=0.3)
    def store(messages):
        batches.append((time.monotonic(), [m.args[0] for m in messages]))

    with WorkerThread(app, concurrency=4):
        sent_at = time.monotonic()
        for n in range(3):
            store.send(n)
        wait_until(lambda: batches, timeout=10)
        ran_at, first = batches[0]
        assert first == [0, 1, 2]
        assert ran_at - sent_at >= 0.25  # it waited for more
        store.send_many([(n,) for n in range(3, 253)])
        wait_until(lambda: sum(len(b) for _, b in batches) == 253, timeout=20)
    sizes = [len(b) for _, b in batches[1:]]
    assert max(sizes) == 100  # full batches, though the concurrency is 4
    assert sorted(n for _, b in batches for n in b) == list(range(253))


def test_a_stopping_worker_runs_what_it_gathered(app: App) -> None:
    ran: list[int] = []

    @app.task(batch_size=100, batch_wait=60)
    def store(messages):
        ran.extend(m.args[0] for m in messages)

    worker = WorkerThread(app).start()
    for n in range(5):
        store.send(n)
    session = wait_until(lambda: worker.worker.session)
    wait_until(lambda: session.in_flight.gathering == 5, timeout=10)
    worker.stop()  # graceful: the gathered batch runs now, not in a minute
    assert sorted(ran) == [0, 1, 2, 3, 4]
    assert app.connection.redis.xlen(app.keys("default").stream) == 0


def test_batch_sizes_are_measured(app: App) -> None:
    @app.task(queue="sensors", batch_size=4, name="batch_metrics_probe")
    def store(messages):
        pass

    labels = {"queue": "sensors", "group": "", "task": "batch_metrics_probe"}
    before = REGISTRY.get_sample_value("streamwork_batch_messages_count", labels) or 0
    store.send_many([(n,) for n in range(10)])
    with WorkerThread(app, concurrency=2):
        wait_until(
            lambda: (REGISTRY.get_sample_value("streamwork_batch_messages_sum", labels) or 0) >= 10,
            timeout=10,
        )
    assert REGISTRY.get_sample_value("streamwork_batch_messages_count", labels) - before >= 3


def test_batches_on_a_redis_cluster(cluster_app: App) -> None:
    from streamwork.testing import run_until_idle

    seen: list[list[int]] = []

    @cluster_app.task(queue="sensors-a", batch_size=4)
    def store(messages):
        seen.append([m.args[0] for m in messages])

    @cluster_app.subscriber("telemetry", group="archive", batch_size=3, start="beginning")
    def archive(messages):
        seen.append([m.payload for m in messages])

    store.send_many([(n,) for n in range(10)])
    for n in range(100, 105):
        cluster_app.publish("telemetry", n)
    summary = run_until_idle(cluster_app)
    assert summary.done == 15
    assert sorted(map(len, seen)) == [2, 2, 3, 4, 4]
