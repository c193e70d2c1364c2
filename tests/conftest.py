"""Shared fixtures: one private redis-server for the session, a clean database per test.

The server runs on a free loopback port in a temporary directory and is stopped by PID;
the suite never talks to a Redis it did not start. If redis-server is missing, every Redis
test errors with the install hint — it is never skipped silently.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster

from streamwork import App
from streamwork.testing import RedisClusterServers, RedisServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# A Redis URL from the environment must never leak into tests.
os.environ.pop("STREAMWORK_REDIS_URL", None)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def cluster() -> Iterator[RedisClusterServers]:
    """A Redis Cluster of three masters on loopback ports, for the whole session."""
    servers = RedisClusterServers(3).start()
    try:
        yield servers
    finally:
        servers.cleanup()


@pytest.fixture
def cluster_app(cluster: RedisClusterServers) -> Iterator[App]:
    """An App on the cluster, every node emptied first."""
    client = redis.cluster.RedisCluster.from_url(cluster.url)
    client.flushall(target_nodes=redis.cluster.RedisCluster.ALL_NODES)
    client.close()
    application = App(cluster.url)
    yield application
    application.close()


@pytest.fixture
def app(redis_url: str) -> Iterator[App]:
    application = App(redis_url)
    yield application
    application.close()
