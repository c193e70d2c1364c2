"""Autoscaling: what `streamwork exporter` serves is everything waiting, and KEDA's own
metrics-api logic on it scales the worker Deployment right — each finding of issue 34
(fair lists, delayed/retries/hold-backs/held, partitions and bands summed, Redis's NULL lag,
credentials) against a live Redis, and a scale from zero for a due delayed message and a
due schedule.

KEDA's metrics-api scaler: a trigger is active when the value exceeds
activationTargetValue; at minReplicaCount 0 an inactive trigger scales the Deployment to 0;
otherwise the HPA (AverageValue) wants ceil(value / targetValue) replicas, clamped to
[max(1, min), max].
"""

from __future__ import annotations

import json
import math
import signal
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
import redis
import yaml

from streamwork import App, Retry
from streamwork._base import protocol
from streamwork.ops.backlog import backlog
from streamwork.testing import WorkerThread, free_port, run_until_idle, wait_until


def keda_replicas(
    value: float, target: float, activation: float = 0, minimum: int = 0, maximum: int = 100
) -> int:
    """The replicas KEDA's metrics-api trigger and the HPA settle on for `value`."""
    if value <= activation and minimum == 0:
        return 0
    return min(maximum, max(1, minimum, math.ceil(value / target)))


@pytest.fixture
def app(redis_url: str):
    application = App(redis_url)
    yield application
    application.close()
    protocol.reset_clock()


def test_fair_lists_count(app: App, client: redis.Redis) -> None:
    """Finding 1: 30 messages for one customer and 5 for another are 35 waiting, not 1."""

    @app.task(fair_by="customer")
    def bill(customer, n):
        pass

    for n in range(30):
        bill.send("big", n)
    for n in range(5):
        bill.send("small", n)
    found = backlog(app).only(["default"]).parts[0]
    assert found.total == 35 and found.fair + found.ready == 35 and found.fair > 0
    assert keda_replicas(backlog(app).total, target=10) == 4


def test_due_delayed_messages_and_retries_count_and_wake_a_fleet_at_zero(app: App) -> None:
    """Finding 2: a delayed message counts once it is due (not before), as does a retry past
    its backoff; with no worker running, the due one wakes a Deployment at 0."""

    @app.task(max_retries=3)
    def later(n):
        if n == "fail":
            raise Retry(delay=60)

    later.send_with(args=(1,), delay=30)
    assert backlog(app).total == 0 and keda_replicas(0, target=10) == 0
    protocol.advance_clock(31_000)
    found = backlog(app)
    assert (found.total, found.parts[0].due) == (1, 1)
    assert keda_replicas(found.total, target=10) == 1  # scale from zero
    run_until_idle(app)
    assert backlog(app).total == 0

    later.send("fail")
    run_until_idle(app)  # runs once, then waits 60 s for its retry
    assert backlog(app).total == 0
    protocol.advance_clock(61_000)
    assert backlog(app).parts[0].due == 1


def test_rate_limit_hold_backs_count_once_due(app: App) -> None:
    """Finding 2: messages a rate limit held back wait in the delayed set; they count as
    their turn comes."""

    @app.task(rate_limit="1/m", rate_burst=1)
    def slow(n):
        pass

    for n in range(4):
        slow.send(n)
    run_until_idle(app)  # one runs, three are held back for their turn
    assert backlog(app).total == 0
    protocol.advance_clock(61_000)
    assert backlog(app).parts[0].due >= 1


def test_messages_held_for_a_concurrency_slot_count(app: App) -> None:
    """Finding 2: messages held for a concurrency slot wait in a list, outside the stream."""
    release = threading.Event()

    @app.task(concurrency_limit=1)
    def single(n):
        release.wait(30)

    for n in range(3):
        single.send(n)
    with WorkerThread(app, concurrency=5):
        wait_until(lambda: backlog(app).parts[0].held == 2, timeout=20)
        assert backlog(app).total == 2
        release.set()
        wait_until(lambda: backlog(app).total == 0, timeout=20)


def test_partitions_and_bands_sum_into_one_number(app: App) -> None:
    """Finding 3: 200 messages over partitions and bands scale to ceil(200/50) = 4."""
    app.queue("orders", partitions=4)

    @app.task(queue="orders")
    def place(n):
        pass

    @app.task(queue="mail", priority="low")
    def mail(n):
        pass

    for n in range(120):
        place.send_with(args=(n,), partition_key=f"customer-{n % 7}")
    for n in range(50):
        mail.send(n)
    for n in range(30):
        mail.send_with(args=(n,), priority="high")
    found = backlog(app)
    assert found.as_dict()["queues"]["orders"]["ready"] == 120
    assert found.as_dict()["queues"]["mail"]["ready"] == 80
    assert found.total == 200
    assert keda_replicas(found.total, target=50) == 4


def test_a_dead_workers_pending_entry_and_the_ready_ones_count_when_redis_lag_is_null(
    app: App, client: redis.Redis
) -> None:
    """Finding 4: a worker took 6 messages and died after finishing 5 (acknowledged and
    deleted) with one pending; 5 more arrive. Redis's lag is NULL (KEDA: -1, inactive); the
    backlog is the 5 ready and the orphaned one, and a Deployment at 0 wakes."""

    @app.task(queue="work")
    def job(n):
        pass

    source = app.queue_source("work")
    for n in range(6):
        job.send(n)
    client.xgroup_create(source.stream, source.group, "0")
    taken = client.xreadgroup(source.group, "dead-worker", {source.stream: ">"}, count=6)
    ids = [entry_id for entry_id, _ in taken[0][1]]
    for entry_id in ids[1:]:
        client.xack(source.stream, source.group, entry_id)
        client.xdel(source.stream, entry_id)
    for n in range(5):
        job.send(n)
    (group,) = client.xinfo_groups(source.stream)
    assert group["lag"] is None  # what KEDA's redis-streams trigger reads as inactive
    found = backlog(app).parts[0]
    assert (found.ready, found.orphaned, found.total) == (5, 1, 6)
    assert keda_replicas(found.total, target=100) == 1
    with WorkerThread(app, visibility_timeout=1):
        wait_until(lambda: backlog(app).total == 0, timeout=20)


def test_a_subscriber_groups_lag_is_counted_when_redis_cannot_say(
    app: App, client: redis.Redis
) -> None:
    @app.subscriber("readings", group="store", start="beginning")
    def store(message):
        pass

    for n in range(8):
        app.publish("readings", {"n": n})
    assert backlog(app).as_dict()["queues"]["readings/store"]["ready"] == 8  # no group yet
    main, _ = app.subscribers[("readings", "store")].sources
    client.xgroup_create(main.stream, main.group, "0")
    taken = client.xreadgroup(main.group, "dead-worker", {main.stream: ">"}, count=3)
    client.xdel(main.stream, taken[0][1][2][0])  # deleted under the group's last-delivered id
    (group,) = client.xinfo_groups(main.stream)
    assert group["lag"] is None
    found = backlog(app).as_dict()["queues"]["readings/store"]
    assert (found["ready"], found["orphaned"], found["total"]) == (5, 3, 8)


def test_a_due_schedule_wakes_a_fleet_at_zero(app: App) -> None:
    """A schedule declared in code and never written by a worker counts (a worker must
    start to write it); once written it counts only when a tick is due."""

    @app.task
    def report():
        pass

    app.schedule("hourly", report, every=3600)
    app.schedule("quiet", report, every=60, paused=True)  # written paused: nothing to run
    assert backlog(app).parts[0].schedules == 1
    assert keda_replicas(backlog(app).total, target=100) == 1
    run_until_idle(app)  # a worker writes it: its first tick is an hour away
    assert backlog(app).total == 0
    protocol.advance_clock(3_601_000)
    found = backlog(app).parts[0]
    assert (found.schedules, found.total) == (1, 1)
    assert keda_replicas(found.total, target=100) == 1
    run_until_idle(app)  # the tick ran
    assert backlog(app).total == 0


def test_the_exporter_serves_the_backlog_keda_reads(
    processes: Any, write_app: Any, redis_url: str
) -> None:
    write_app(
        "scaled",
        """
        from streamwork import App

        app = App()

        @app.task(queue="orders", fair_by="customer")
        def place(customer, n):
            pass

        @app.task(queue="mail")
        def mail(n):
            pass
        """,
    )
    port = free_port()
    exporter = processes.start("exporter", "scaled:app", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _get(f"{base}/healthz")[0] == 200, timeout=20)

    scaled = yaml.safe_load(processes.run("keda", "scaled:app", "--lag-per-replica", "10").stdout)
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "metrics-api" and meta["valueLocation"] == "total"
    target, activation = float(meta["targetValue"]), float(meta["activationTargetValue"])

    sender = App(redis_url)

    @sender.task(queue="orders", name="place", fair_by="customer")
    def place(customer, n):
        pass

    @sender.task(queue="mail", name="mail")
    def mail(n):
        pass

    assert keda_replicas(_get(f"{base}/backlog")[1]["total"], target, activation) == 0
    for n in range(30):
        place.send("big", n)
    for n in range(5):
        place.send("small", n)
    for n in range(7):
        mail.send(n)
    status, body = _get(f"{base}/backlog")
    assert status == 200 and body["total"] == 42
    assert body["queues"]["orders"]["total"] == 35 and body["queues"]["mail"]["ready"] == 7
    assert keda_replicas(body["total"], target, activation) == 5
    assert _get(f"{base}/backlog?queue=mail")[1]["total"] == 7
    missing = _get(f"{base}/backlog?queue=nope")
    assert missing[0] == 404 and "known: orders, mail" in missing[1]["error"]
    metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    assert 'streamwork_waiting{group="",queue="orders"} 35.0' in metrics
    assert _get(f"{base}/readyz")[0] == 200
    once = processes.run("exporter", "scaled:app", "--once")
    assert once.returncode == 0 and json.loads(once.stdout) == body
    sender.close()
    exporter.send_signal(signal.SIGTERM)
    assert exporter.wait(10) == 0


def test_the_exporter_when_redis_is_gone_and_bad_arguments(processes: Any, write_app: Any) -> None:
    write_app("scaled", "from streamwork import App\napp = App()\napp.task(name='job')(print)\n")
    port = free_port()
    gone = f"redis://127.0.0.1:{free_port()}/0"
    processes.start("exporter", "scaled:app", "--port", str(port), STREAMWORK_REDIS_URL=gone)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _get(f"{base}/healthz")[0] == 200, timeout=20)
    status, body = _get(f"{base}/backlog")
    assert status == 503 and "127.0.0.1" in body["error"]
    assert _get(f"{base}/readyz")[0] == 503
    metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    assert "streamwork_redis_up 0.0" in metrics

    down = processes.run("exporter", "scaled:app", "--once", STREAMWORK_REDIS_URL=gone)
    assert down.returncode == 1 and down.stderr.startswith("Error: cannot read the backlog:")
    assert len(down.stderr.strip().splitlines()) == 1

    write_app("empty", "from streamwork import App\napp = App()\n")
    nothing = processes.run("exporter", "empty:app")
    assert nothing.returncode == 2 and "nothing waits" in nothing.stderr
    taken = processes.run("exporter", "scaled:app", "--port", str(port))
    assert taken.returncode == 1 and f"cannot serve on 127.0.0.1:{port}" in taken.stderr
    bad = processes.run("keda", "scaled:app", "--queue", "nope")
    assert bad.returncode == 2 and "'nope' is not a queue or subscriber group" in bad.stderr


def test_the_exporter_answers_again_when_redis_comes_back(
    processes: Any, write_app: Any, tmp_path: Any
) -> None:
    """Redis restarting under the exporter: 503 while it is away (KEDA keeps the replicas
    it has), the same backlog once it is back — the exporter reconnects, loses nothing."""
    from streamwork.testing import RedisServer

    write_app("scaled", "from streamwork import App\napp = App()\napp.task(name='job')(print)\n")
    with RedisServer(["--appendonly", "yes", "--appendfsync", "always"]) as server:
        App(server.url).task(name="job")(print).send_many(range(3))
        port = free_port()
        processes.start(
            "exporter", "scaled:app", "--port", str(port), STREAMWORK_REDIS_URL=server.url
        )
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(f"{base}/backlog")[0] == 200, timeout=20)
        assert _get(f"{base}/backlog")[1]["total"] == 3
        server.stop()
        assert _get(f"{base}/backlog")[0] == 503 and _get(f"{base}/readyz")[0] == 503
        server.start()
        wait_until(lambda: _get(f"{base}/backlog")[0] == 200, timeout=20)
        assert _get(f"{base}/backlog")[1]["total"] == 3 and _get(f"{base}/readyz")[0] == 200


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, None
