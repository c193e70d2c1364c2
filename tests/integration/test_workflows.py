"""Workflows against a real redis-server and a real Redis Cluster: a child's outcome is
recorded once and releases once however many workers finish children at the same moment,
a worker dying between recording a child and acknowledging it loses and doubles nothing,
children on queues in different cluster slots, cancel of running children, async sends."""

import asyncio
import threading

import pytest
import redis
from redis.crc import key_slot

from streamwork import App, ConnectionFailed, chain, chord, group
from streamwork._base import protocol
from streamwork._base.keys import WorkflowKeys
from streamwork._redis.scripts import Scripts
from streamwork._workflows.canvas import Sender
from streamwork._workflows.recorder import Recorder, Step
from streamwork.ops.stats import queue_state
from streamwork.testing import WorkerThread, drain, wait_until


class Finished:
    """Stands in for a settled Outcome: what Recorder.record reads and clears."""

    def __init__(self, step):
        self.workflow = step
        self.task = "part"


def header_nodes(handle):
    return [n for n in handle.status().nodes if n.task == "part"]


def record_concurrently(app, steps):
    """Record each step from its own connection, all at once (as many workers would)."""

    async def main():
        clients = [redis.asyncio.Redis.from_url(app.url) for _ in steps]
        try:
            recorders = [
                Recorder(c, Scripts(c), Sender(app.namespace, app.status_ttl_ms)) for c in clients
            ]
            await asyncio.gather(
                *(r.record([Finished(s)]) for r, s in zip(recorders, steps, strict=True))
            )
        finally:
            for c in clients:
                await c.aclose()

    asyncio.run(main())


def test_children_finishing_at_once_release_the_callback_exactly_once(app):
    @app.task(queue="parts")
    def part(n):
        return n

    @app.task(queue="totals")
    def total(values):
        return sum(values)

    handle = chord([part.s(n) for n in range(8)], total.s()).send()
    nodes = header_nodes(handle)
    # Every header child finishes at the same moment, and each is recorded twice (a re-run
    # after a crash before its XACK): exactly one callback message.
    steps = [Step(handle.id, n.index, True, protocol.pack_value(i)) for i, n in enumerate(nodes)]
    client = app.connection.redis
    assert client.keys("*:dedupe:wf:*") == []  # first children are sent once: no keys
    record_concurrently(app, steps + steps)
    assert app.connection.redis.xlen(app.keys("totals").stream) == 1
    (dedupe,) = client.keys("*:dedupe:wf:*")  # the release: sent under its own key
    assert 0 < client.pttl(dedupe) <= app.workflow_ttl_ms
    status = handle.status()
    assert [n.state for n in status.nodes if n.task == "part"] == ["done"] * 8
    assert [n.state for n in status.nodes if n.task == "total"] == ["sent"]
    # Recording one of them again, later, sends nothing new either.
    record_concurrently(app, steps[:1] * 4)
    assert app.connection.redis.xlen(app.keys("totals").stream) == 1
    with WorkerThread(app, queues=["totals"]):
        assert handle.result(timeout=10) == sum(range(8))


def test_a_worker_dying_after_recording_a_child_loses_and_doubles_nothing(app):
    runs = []

    @app.task(queue="parts")
    def part(n):
        runs.append(("part", n))
        return n * 10

    @app.task(queue="totals")
    def total(value):
        runs.append(("total", value))
        return value

    handle = chain(part.s(1), total.s()).send()
    client = app.connection.redis
    source = app.queue_source("parts")
    client.xgroup_create(source.stream, source.group, id="0", mkstream=True)
    # A worker takes the child, runs it, records its outcome in the workflow (which sends
    # the next step) — and dies before its XACK: the entry stays pending in its name.
    [[_, [_entry]]] = client.xreadgroup(source.group, "dead-worker", {source.stream: ">"})
    (node,) = header_nodes(handle)
    record_concurrently(app, [Step(handle.id, node.index, True, protocol.pack_value(10))])
    assert app.connection.redis.xlen(app.keys("totals").stream) == 1
    with WorkerThread(app, visibility_timeout=1, scan_interval=0.2):
        assert handle.result(timeout=20) == 10
        wait_until(lambda: queue_state(app, "parts").is_empty, timeout=20, message="re-run")
    # The child ran again (at least once: its entry was never acknowledged), and the next
    # step ran exactly once, with the value recorded first.
    assert runs.count(("part", 1)) == 1 and runs.count(("total", 10)) == 1
    assert len(runs) == 2


def test_a_chord_over_queues_in_different_cluster_slots(cluster_app):
    queues = ["alpha", "beta", "gamma", "delta"]
    assert len({key_slot(f"sw:{{{q}}}:stream".encode()) for q in queues}) == 4
    tasks = []
    for queue in queues[:3]:

        @cluster_app.task(queue=queue, name=f"part_{queue}")
        def part(n, queue=queue):
            return f"{queue}:{n}"

        tasks.append(part)

    @cluster_app.task(queue="delta")
    def collect(values):
        return values

    header = [task.s(n) for n in range(10) for task in tasks]
    handle = chain(group(tasks[0].s(0)), chord(header, collect.si([])), collect.s()).send()
    with WorkerThread(cluster_app, concurrency=20):
        assert handle.result(timeout=30) == []
    handle = chord(header, collect.s()).send()
    with WorkerThread(cluster_app, concurrency=20):
        assert handle.result(timeout=30) == [f"{q}:{n}" for n in range(10) for q in queues[:3]]
    assert handle.status().state == "done"


def test_cancel_stops_running_children_and_releases_nothing_more(app):
    started = threading.Event()

    @app.task
    async def slow(n):
        started.set()
        await asyncio.sleep(30)

    @app.task
    def after(values):
        raise AssertionError("must never run")

    handle = chord([slow.s(1), slow.s(2)], after.s()).send()
    with WorkerThread(app):
        assert started.wait(10)
        wait_until(lambda: all(n.state == "sent" for n in header_nodes_of(handle, "slow")))
        running = [app.handle("slow", n.message_id) for n in header_nodes_of(handle, "slow")]
        wait_until(lambda: {h.status().state for h in running} == {"running"})
        assert handle.cancel("stop") == "cancelled"
        wait_until(lambda: {h.status().state for h in running} == {"cancelled"}, timeout=10)
    assert handle.status().state == "cancelled"
    assert queue_state(app, "default").is_empty


def header_nodes_of(handle, task):
    return [n for n in handle.status().nodes if n.task == task]


def test_send_async_and_results_async(app):
    @app.task
    async def double(n):
        return 2 * n

    async def main():
        handle = await group(double.s(n) for n in range(5)).send_async()
        with WorkerThread(app):
            return await handle.results_async(timeout=10), await handle.status_async()

    results, status = asyncio.run(main())
    assert results == [0, 2, 4, 6, 8] and status.state == "done"


def test_workflow_keys_share_one_slot():
    keys = WorkflowKeys("sw", protocol.new_id())
    assert key_slot(keys.workflow.encode()) == key_slot(keys.finished.encode())
    assert "{wf:" in keys.workflow


def test_the_workflow_ttl_is_the_apps(redis_url):
    app = App(redis_url, workflow_ttl=60)

    @app.task
    def one():
        return 1

    handle = chain(one.si(), one.si()).send()
    with WorkerThread(app):
        assert handle.result(timeout=10) == 1
    assert 0 < app.connection.redis.pttl(handle.keys.workflow) <= 60_000
    app.close()


def test_a_child_of_a_deleted_workflow_still_settles(app, caplog):
    @app.task
    def one():
        return 1

    handle = chain(one.si(), one.si()).send()
    app.connection.redis.delete(handle.keys.workflow)
    with WorkerThread(app):
        wait_until(lambda: queue_state(app, "default").done == 1, message="the first child settled")
    assert "is gone (expired or deleted): its outcome is not recorded" in caplog.text
    assert queue_state(app, "default").is_empty


def test_a_corrupt_workflow_record_is_logged_and_the_child_settles(app, caplog):
    @app.task
    def one():
        return 1

    handle = chain(one.si(), one.si()).send()
    client = app.connection.redis
    client.delete(handle.keys.workflow)
    client.set(handle.keys.workflow, "not a hash")  # WRONGTYPE for the record step
    with WorkerThread(app):
        wait_until(lambda: queue_state(app, "default").done == 1, message="the first child settled")
    assert f"cannot record node 1 of workflow {handle.id}" in caplog.text
    assert "WRONGTYPE" in caplog.text


def test_workflow_metrics_count_starts_and_outcomes(app):
    from prometheus_client import REGISTRY

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0

    @app.task(max_retries=0)
    def maybe(fail):
        if fail:
            raise ValueError("no")
        return 1

    before = {
        "started": sample("streamwork_workflows_started_total", kind="group"),
        "done": sample("streamwork_workflows_finished_total", outcome="done"),
        "failed": sample("streamwork_workflows_finished_total", outcome="failed"),
        "cancelled": sample("streamwork_workflows_finished_total", outcome="cancelled"),
    }
    group(maybe.s(False)).send()
    group(maybe.s(True)).send()
    group(maybe.s(False)).send().cancel()
    with WorkerThread(app):
        wait_until(lambda: queue_state(app, "default").is_empty)
        wait_until(lambda: sample("streamwork_workflows_finished_total", outcome="failed"))
    assert sample("streamwork_workflows_started_total", kind="group") - before["started"] == 3
    for outcome in ("done", "failed", "cancelled"):
        after = sample("streamwork_workflows_finished_total", outcome=outcome)
        assert after - before[outcome] == 1, outcome


def test_a_workflow_cancel_repeated_after_a_lost_reply_cancels_every_child(app, monkeypatch):
    """The first cancel marks the workflow and loses its reply before it cancels the
    children: the repeat says "cancelled" and cancels them, so none runs."""
    ran = []

    @app.task
    def add(x, y):
        ran.append((x, y))
        return x + y

    handle = group(add.s(1, 1), add.s(2, 2)).send()
    children = [app.handle("add", n.message_id) for n in header_nodes_of(handle, "add")]
    real = Scripts.workflow_cancel

    def cancel_then_lose(self, *args):
        real(self, *args)
        raise redis.exceptions.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(Scripts, "workflow_cancel", cancel_then_lose)
    with pytest.raises(ConnectionFailed):
        handle.cancel("stop")
    assert [c.status().state for c in children] == ["queued", "queued"]  # not reached
    monkeypatch.setattr(Scripts, "workflow_cancel", real)
    assert handle.cancel() == "cancelled"
    assert [c.status().state for c in children] == ["cancelled", "cancelled"]
    assert handle.cancel() == "cancelled"
    drain(app)
    assert ran == []
