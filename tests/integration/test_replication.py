"""Durability knob: a send may wait until N replicas have it (Redis WAIT)."""

import pytest
import redis
import redis.cluster

from streamwork import App, ReplicationTimeout
from streamwork.ops.stats import queue_state
from streamwork.testing import RedisServer, wait_until


@pytest.fixture
def primary_with_replica():
    primary = RedisServer().start()
    replica = RedisServer(["--replicaof", "127.0.0.1", str(primary.port)]).start()
    link = redis.Redis(port=replica.port)
    wait_until(lambda: link.info("replication").get("master_link_status") == "up", timeout=30)
    link.close()
    yield primary, replica
    replica.cleanup()
    primary.cleanup()


def test_send_waits_for_replicas_and_says_when_they_fall_short(primary_with_replica):
    primary, replica = primary_with_replica
    app = App(primary.url)

    @app.task(queue="payments")
    def charge(order_id): ...

    handle = charge.send_with(args=(1,), replicas=1, replica_timeout=5)
    copy = redis.Redis(port=replica.port)
    assert copy.xlen(app.keys("payments").stream) == 1  # on the replica when send returned
    keyed = charge.send_with(args=(2,), key="order-2", replicas=1)
    assert not keyed.is_duplicate and keyed.id != handle.id
    with pytest.raises(ReplicationTimeout, match=r"only 1 of 2 replica\(s\) acknowledged"):
        charge.send_with(args=(3,), replicas=2, replica_timeout=0.2)
    assert queue_state(app, "payments").ready == 3  # queued all the same
    copy.close()


def test_replicas_on_a_cluster_wait_on_the_queues_node(cluster_app):
    @cluster_app.task(queue="payments")
    def charge(order_id): ...

    # The test cluster has no replicas: WAIT answers 0 from the right node, quickly.
    with pytest.raises(ReplicationTimeout, match="only 0 of 1"):
        charge.send_with(args=(1,), replicas=1, replica_timeout=0.1)
    assert queue_state(cluster_app, "payments").ready == 1


def test_seed_node_list_reaches_the_cluster(cluster):
    seeds = ",".join(f"127.0.0.1:{server.port}" for server in cluster.servers)
    app = App(f"redis://{seeds}/0")
    assert isinstance(app.connection.redis, redis.cluster.RedisCluster)
    app.task(queue="seeded", name="job")(lambda: None).send()
    assert queue_state(app, "seeded").ready == 1


def test_async_send_waits_for_replicas_too(primary_with_replica):
    import asyncio

    primary, replica = primary_with_replica
    app = App(primary.url)

    @app.task(queue="payments")
    def charge(order_id): ...

    async def sends():
        await charge.send_with_async(args=(1,), replicas=1, replica_timeout=5)
        keyed = await charge.send_with_async(args=(2,), key="order-2", replicas=1)
        again = await charge.send_with_async(args=(2,), key="order-2", replicas=1)
        assert again.is_duplicate and again.id == keyed.id
        with pytest.raises(ReplicationTimeout, match=r"only 1 of 2"):
            await charge.send_with_async(args=(3,), replicas=2, replica_timeout=0.2)
        await app.aclose()

    asyncio.run(sends())
    copy = redis.Redis(port=replica.port)
    wait_until(lambda: copy.xlen(app.keys("payments").stream) == 3)
    copy.close()


def test_async_replicas_on_a_cluster_wait_on_the_queues_node(cluster_app):
    import asyncio

    @cluster_app.task(queue="payments")
    def charge(order_id): ...

    async def send():
        try:
            with pytest.raises(ReplicationTimeout, match="only 0 of 1"):
                await charge.send_with_async(args=(1,), replicas=1, replica_timeout=0.1)
        finally:
            await cluster_app.aclose()

    asyncio.run(send())
    assert queue_state(cluster_app, "payments").ready == 1
