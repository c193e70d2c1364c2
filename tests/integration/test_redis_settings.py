"""A worker checks the Redis it is given: evicting policies are refused, no persistence warned."""

import asyncio
import logging

import pytest

from streamwork import App, ConfigurationError, Worker
from streamwork.testing import RedisServer, drain


@pytest.fixture(scope="module")
def evicting_redis():
    with RedisServer(["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"]) as server:
        yield server


def make_app(url):
    app = App(url)
    app.task(name="job")(lambda: None)
    return app


def test_worker_refuses_a_redis_that_may_evict_queues(evicting_redis):
    with pytest.raises(ConfigurationError, match=r"maxmemory-policy is allkeys-lru.*noeviction"):
        drain(make_app(evicting_redis.url))


def test_worker_starts_on_an_evicting_redis_when_told_to(evicting_redis, caplog):
    app = make_app(evicting_redis.url)
    app.tasks["job"].send()
    with caplog.at_level(logging.WARNING):
        assert drain(app, allow_evicting_redis=True) == 1
    assert "queues may be evicted" in caplog.text


def test_worker_warns_when_redis_persists_nothing(redis_url, caplog):
    # The suite's server runs with --save "" --appendonly no.
    with caplog.at_level(logging.WARNING):
        asyncio.run(Worker(make_app(redis_url)).run(burst=True))  # a worker, as it starts
    assert "Redis persists nothing" in caplog.text


def test_no_warning_when_redis_keeps_an_append_only_file(redis_server, client, caplog):
    client.config_set("appendonly", "yes")
    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(Worker(make_app(redis_server.url)).run(burst=True))
    finally:
        client.config_set("appendonly", "no")
    assert "persists nothing" not in caplog.text
