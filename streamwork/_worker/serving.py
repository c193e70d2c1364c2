"""The supervisor's HTTP server: every worker process's metrics summed, its own gauges, and
the health probes (/healthz, /readyz) on the same port.

Worker processes write their metrics to prometheus-client's multiprocess files (the
directory `prepare_multiprocess_dir` sets up before they start); this serves their sum. What
it never does: read queues (the queue gauges are a collector the caller registers:
`streamwork.ops.metrics.QueueCollector`).
"""

from __future__ import annotations

import glob
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import redis.exceptions
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.exposition import MetricsHandler

from ..errors import StreamworkError

if TYPE_CHECKING:
    from .._redis.connection import NamespaceView

# -- aggregation across worker processes (served by the supervisor) --------------------------

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> str:
    """Set up the directory worker processes write their metrics to, empty; returns it.

    Must run before worker processes start: they inherit the environment variable and
    prometheus-client reads it when first imported in them.
    """
    path = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="streamwork-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    os.environ[MULTIPROC_ENV] = path
    return path


class SupervisorMetrics:
    """The supervisor's /metrics: every worker process's metrics, plus its own."""

    def __init__(self, path: str, app: NamespaceView | None = None) -> None:
        self.path = path
        self.health = Health(app)
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=path)
        self.processes = Gauge(
            "streamwork_worker_processes",
            "Worker processes running under this supervisor.",
            registry=self.registry,
        )
        self.restarts = Counter(
            "streamwork_worker_restarts",
            "Worker processes restarted after they died or recycled themselves.",
            ["reason"],
            registry=self.registry,
        )

    def serve(self, port: int, address: str) -> None:
        """Serve /metrics, /healthz and /readyz on `address`:`port` from a daemon thread."""
        routes: dict[str, Route] = {
            "/healthz": lambda query: self.health.live(),
            "/readyz": lambda query: self.health.ready(),
        }
        serve_http(port, address, self.registry, routes)

    def process_exited(self, pid: int) -> None:
        """Drop the live gauges of a process that ended, so none go stale."""
        multiprocess.mark_process_dead(pid, self.path)


@dataclass(frozen=True)
class Serving:
    """What the supervisor says of its worker processes, for /readyz."""

    expected: int
    serving: int
    """Processes alive that have started serving (read their queues once)."""
    stopping: bool = False


class Health:
    """The answers of /healthz and /readyz, as (HTTP status, JSON body).

    - /healthz: the supervisor is up (it serves this); 200 whenever it answers.
    - /readyz: Redis answers a PING and every worker process is serving (and the worker is
      not stopping); else 503, saying which. Kubernetes takes a pod out of its Service's
      endpoints while it is not ready, and restarts it when /healthz stops answering.
    """

    def __init__(self, app: NamespaceView | None) -> None:
        self.app = app
        self.started = time.monotonic()
        self.processes: Callable[[], Serving] | None = None
        """Set by the supervisor once it runs."""

    def live(self) -> tuple[int, dict[str, Any]]:
        uptime = round(time.monotonic() - self.started, 3)
        return 200, {"status": "ok", "pid": os.getpid(), "uptime_seconds": uptime}

    def ready(self) -> tuple[int, dict[str, Any]]:
        checks: dict[str, Any] = {}
        is_ready = True
        if self.app is not None:
            try:
                self.app.connection.ping()
                checks["redis"] = "ok"
            except (StreamworkError, redis.exceptions.RedisError) as exc:
                checks["redis"] = str(exc)
                is_ready = False
        if self.processes is None:
            checks["processes"] = {"expected": None, "serving": 0}
            is_ready = False
        else:
            state = self.processes()
            checks["processes"] = {"expected": state.expected, "serving": state.serving}
            if state.stopping:
                checks["stopping"] = True
            if state.stopping or state.serving < state.expected:
                is_ready = False
        body = {"status": "ready" if is_ready else "not ready", **checks}
        return (200 if is_ready else 503), body


Route = Callable[[dict[str, list[str]]], tuple[int, Any]]
"""A JSON route: the request's query arguments -> (HTTP status, body)."""


def serve_http(
    port: int, address: str, registry: CollectorRegistry, routes: dict[str, Route]
) -> Any:
    """Serve /metrics from `registry` and each JSON route, in a daemon thread.

    Counters in this process's registries expose no `*_created` series (prometheus-client
    adds one per counter outside multiprocess mode, where the workers' counters have none):
    the supervisor and the exporter are streamwork's own processes."""
    disable_created_metrics()

    class Handler(MetricsHandler.factory(registry)):  # type: ignore[misc]
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            route = routes.get(parts.path)
            if route is not None:
                self._answer(*route(parse_qs(parts.query)))
            elif parts.path in ("/metrics", "/"):
                super().do_GET()
            else:
                self._answer(404, {"error": f"no such path: {parts.path}", "paths": sorted(routes)})

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a probe every few seconds is not news

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    server = Server((address, port), Handler)
    threading.Thread(target=server.serve_forever, name="streamwork-http", daemon=True).start()
    return server
