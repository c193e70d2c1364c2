"""The pytest plugin (entry point "streamwork"): test tasks on memory://, no redis-server.

Fixtures:
- `streamwork_memory`: a fresh memory:// server for the test. Every App alive when the test
  starts, and every App created during it without a URL, runs on it; afterwards each App
  gets its own connection back, the server is forgotten and the test clock is reset. An
  App created during the test with a real server's URL is refused a client (a
  ConfigurationError naming `streamwork_memory.use(app)`): a test never reaches a server.
- `run_tasks`: `run_until_idle` bound to it — `run_tasks()` runs the work of the app (the
  only App, or the one passed), with `advance_time=True` and `raise_errors=True` by default.

    def test_add(streamwork_memory, run_tasks):
        handle = add.send(2, 3)
        run_tasks()
        assert handle.result() == 5
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .._app.app import App
from .._base import protocol
from .._redis import memory
from .._redis.connection import REFUSALS
from .._redis.urls import URL_ENV, redact
from .._worker.inprocess import RunSummary, run_until_idle


class MemoryServer:
    """What `streamwork_memory` gives a test: the memory:// URL all its apps use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._previous: dict[App, Any] = {}

    def use(self, app: App) -> App:
        """Point `app` at this server (every App alive at the start already is)."""
        if app not in self._previous:
            self._previous[app] = app.reconnect(self.url)
        return app

    def refusal(self, url: str) -> str | None:
        """Why a client for `url` is refused during the test: an App made with a real
        server's URL (App(os.environ["REDIS_URL"]), say) must not reach out to it."""
        if memory.is_memory(url):
            return None
        return (
            f"this test runs on memory:// (streamwork_memory), but an App made during it "
            f"points at {redact(url)}: call streamwork_memory.use(app) to run it on the "
            "test's memory server, or make it without a URL"
        )

    def restore(self) -> None:
        for app, connection in self._previous.items():
            app.close()
            app.reconnect(connection)
        self._previous.clear()


@pytest.fixture
def streamwork_memory(request: pytest.FixtureRequest) -> Iterator[MemoryServer]:
    url = f"{memory.SCHEME}pytest-{abs(hash(request.node.nodeid))}-{os.urandom(4).hex()}"
    server = MemoryServer(url)
    gc.collect()  # apps of earlier tests, kept only by reference cycles, are gone
    for app in list(App.instances):
        server.use(app)
    previous_env = os.environ.get(URL_ENV)
    os.environ[URL_ENV] = url  # Apps created during the test without a URL
    refusal = server.refusal
    REFUSALS.append(refusal)
    try:
        yield server
    finally:
        REFUSALS.remove(refusal)
        if previous_env is None:
            os.environ.pop(URL_ENV, None)
        else:
            os.environ[URL_ENV] = previous_env
        server.restore()
        memory.forget(url)
        protocol.reset_clock()


@pytest.fixture
def run_tasks(streamwork_memory: MemoryServer) -> Callable[..., RunSummary]:
    def run(app: App | None = None, **options: Any) -> RunSummary:
        if app is None:
            apps = [
                a
                for a in App.instances
                if a.url == streamwork_memory.url and (a.tasks or a.subscribers)
            ]
            if len(apps) != 1:
                raise ValueError(
                    f"run_tasks() found {len(apps)} apps on the test's memory server: "
                    "pass the one to run, run_tasks(app)"
                )
            app = apps[0]
        streamwork_memory.use(app)
        options.setdefault("advance_time", True)
        options.setdefault("raise_errors", True)
        return run_until_idle(app, **options)

    return run
