"""`streamwork exporter MODULE:APP` serves what waits for the app's workers; `streamwork
keda MODULE:APP` prints the KEDA ScaledObject that scales a worker Deployment on it.

The exporter is small and read-only: /backlog answers one number per app (and per queue and
subscriber group, `streamwork.ops.backlog`) as JSON for KEDA's `metrics-api` trigger; /metrics
has the queue gauges and `streamwork_waiting` for Prometheus; /healthz and /readyz are its
probes. It runs one replica beside the workers and is never scaled, so the backlog is read
with zero workers. KEDA reaches only the exporter: no Redis address, credential or TLS
setting is in the ScaledObject — the exporter takes the app's URL (STREAMWORK_REDIS_URL, the
workers' Secret), with its user, password and TLS query options.

KEDA's `redis-streams` triggers are not printed: they read XINFO GROUPS lag of one stream
each, which misses what waits outside the streams (fair lists, held, due delayed, due
schedules), takes the maximum over triggers instead of the sum, and reads NULL (inactive)
once an entry stays pending behind acknowledged, deleted ones — as every queue does after a
worker dies.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any
from urllib.parse import urlencode

import click
from prometheus_client import CollectorRegistry

from .._app.app import App
from .._redis import reads
from .._worker.serving import Route, serve_http
from ..errors import StreamworkError
from ..ops.backlog import backlog
from ..ops.metrics import BacklogCollector, QueueCollector
from .app import app_for_command

EXPORTER_URL = "http://streamwork-exporter:9800/backlog"
"""Where KEDA finds the exporter: the Service deploy/k8s/exporter.yaml makes."""


def _backlog_route(app: App) -> Route:
    """/backlog[?queue=NAME...]: {"total": N, "queues": {name: {ready, fair, held, due,
    orphaned, schedules, total}}}; 404 for an unknown queue, 503 when Redis does not answer."""

    def answer(query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            found = backlog(app)
        except StreamworkError as exc:
            return 503, {"error": str(exc)}
        try:
            return 200, (found.only(query["queue"]) if "queue" in query else found).as_dict()
        except KeyError as exc:
            known = ", ".join(part.name for part in found.parts)
            return 404, {"error": f"no queue or subscriber group {exc}; known: {known}"}

    return answer


def _ready(app: App) -> Route:
    def answer(query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            with app.connection.translate_errors():
                reads.ping(app.connection.redis)
        except StreamworkError as exc:
            return 503, {"status": "not ready", "redis": str(exc)}
        return 200, {"status": "ready", "redis": "ok"}

    return answer


@click.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--port", type=click.IntRange(0, 65535), default=9800, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 in a container).",
)
@click.option(
    "--once",
    is_flag=True,
    help="Print the backlog /backlog would answer (JSON) and exit, serving nothing.",
)
def exporter(app_spec: str, port: int, address: str, once: bool) -> None:
    """Serve what waits for the app's workers: /backlog (JSON, KEDA's metrics-api),
    /metrics (Prometheus), /healthz, /readyz. Read-only; runs with zero workers."""
    app = app_for_command(app_spec)
    if not app.tasks and not app.subscribers:
        raise click.UsageError(f"{app_spec} declares no tasks or subscribers: nothing waits")
    if once:
        status, body = _backlog_route(app)({})
        if status != 200:
            raise click.ClickException(f"cannot read the backlog: {body['error']}")
        click.echo(json.dumps(body, indent=2))
        return
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueueCollector(app))
    registry.register(BacklogCollector(app))
    routes: dict[str, Route] = {
        "/backlog": _backlog_route(app),
        "/healthz": lambda query: (200, {"status": "ok"}),
        "/readyz": _ready(app),
    }
    try:
        server = serve_http(port, address, registry, routes)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {address}:{port}: {exc.strerror}") from None
    host, bound = server.server_address[:2]
    click.echo(f"streamwork exporter {app_spec}: http://{host}:{bound}/backlog", err=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.shutdown()


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """A small YAML emitter for nested dicts and lists of scalars (strings as JSON)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                lines.append(f"{pad}{key}:")
                lines += _yaml(item, indent + 1)
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
    else:
        for item in value:
            inner = _yaml(item, indent + 1)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines += inner[1:]
    return lines


@click.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--name", default="streamwork-worker", show_default=True, help="ScaledObject name.")
@click.option(
    "--deployment",
    default="streamwork-worker",
    show_default=True,
    help="The worker Deployment to scale.",
)
@click.option("--min", "min_replicas", type=click.IntRange(0), default=0, show_default=True)
@click.option("--max", "max_replicas", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--lag-per-replica",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Waiting messages one replica should face (the trigger's targetValue).",
)
@click.option(
    "--activation-lag",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Waiting messages above which a Deployment at 0 replicas is woken.",
)
@click.option(
    "--exporter-url",
    default=EXPORTER_URL,
    show_default=True,
    help="The exporter's /backlog as KEDA reaches it.",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="Scale on these queues (or TOPIC/GROUP) only, for a Deployment serving only them "
    "(repeat); default: all the app's.",
)
def keda(
    app_spec: str,
    name: str,
    deployment: str,
    min_replicas: int,
    max_replicas: int,
    lag_per_replica: int,
    activation_lag: int,
    exporter_url: str,
    queues: tuple[str, ...],
) -> None:
    """Print a KEDA ScaledObject scaling the worker Deployment on what waits for it."""
    if min_replicas > max_replicas:
        raise click.BadParameter("--min must not exceed --max", param_hint="--min")
    app = app_for_command(app_spec)
    if not app.tasks and not app.subscribers:
        raise click.UsageError(f"{app_spec} declares no tasks or subscribers: nothing to scale on")
    known = [*app.queues(), *(f"{topic}/{group}" for topic, group in app.subscriber_groups())]
    for queue in queues:
        if queue not in known:
            raise click.BadParameter(
                f"{queue!r} is not a queue or subscriber group of {app_spec} "
                f"(known: {', '.join(known)})",
                param_hint="--queue",
            )
    url = exporter_url
    if queues:
        url += ("&" if "?" in url else "?") + urlencode([("queue", q) for q in queues])
    trigger = {
        "type": "metrics-api",
        "metadata": {
            "url": url,
            "valueLocation": "total",
            "targetValue": str(lag_per_replica),
            "activationTargetValue": str(activation_lag),
        },
    }
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": deployment},
            "minReplicaCount": min_replicas,
            "maxReplicaCount": max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": [trigger],
        },
    }
    listed = ", ".join(queues or known)
    click.echo(
        f"# streamwork keda {app_spec}: scales on what waits in {listed}, "
        "read by `streamwork exporter` (deploy/k8s/exporter.yaml)"
    )
    click.echo("\n".join(_yaml(scaled)))
