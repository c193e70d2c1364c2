"""Helpers for tests: a private `redis-server`, workers in a thread or in burst, a polling wait.

`RedisServer` starts a real server in a temporary directory (no persistence unless asked),
can restart it, and stops only the process it started, by PID. It never touches a Redis
it did not start (`RedisClusterServers`: the same for a cluster). Their code lives in the
Redis layer (`_redis/servers.py`), the only one that sends Redis commands.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from .._base.polling import wait_until
from .._redis.servers import RedisClusterServers, RedisServer, free_port
from .._worker.inprocess import RunSummary, run_until_idle, run_until_idle_async

__all__ = [
    "RedisClusterServers",
    "RedisServer",
    "RunSummary",
    "WorkerThread",
    "drain",
    "free_port",
    "run_until_idle",
    "run_until_idle_async",
    "wait_until",
]


class WorkerThread:
    """A Worker running in a background thread, for tests: `with WorkerThread(app): ...`.

    Leaving the block stops the worker gracefully (running messages finish) and joins it;
    an exception the worker died of is raised there. Reads block 0.1s (not 1s) by default,
    so that stopping is quick.
    """

    def __init__(
        self,
        app: Any,
        queues: Sequence[str] | None = None,
        topics: Sequence[str] | None = None,
        **settings: Any,
    ) -> None:
        from .._base.settings import WorkerSettings
        from .._worker.worker import Worker

        settings.setdefault("block", 0.1)
        self.worker = Worker(app, queues, WorkerSettings(**settings), topics)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(self.worker.run())
        except BaseException as exc:  # handed to the test thread in stop()
            self._error = exc

    def start(self) -> WorkerThread:
        self._thread = threading.Thread(target=self._main, name="streamwork-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.worker.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"worker did not stop within {timeout}s")
        if self._error is not None:
            raise self._error

    def __enter__(self) -> WorkerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def drain(
    app: Any,
    queues: Sequence[str] | None = None,
    topics: Sequence[str] | None = None,
    **settings: Any,
) -> int:
    """Run a burst worker until `queues` and `topics` are drained; returns how many
    messages it ran (default: everything the app serves). `run_until_idle` with
    WorkerSettings(**settings), counted."""
    from .._base.settings import WorkerSettings

    summary = run_until_idle(app, queues=queues, topics=topics, settings=WorkerSettings(**settings))
    return summary.ran
