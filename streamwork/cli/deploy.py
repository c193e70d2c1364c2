"""`streamwork keda MODULE:APP`: the KEDA ScaledObject that scales a worker Deployment on
the backlog of the app's queues and subscriber groups.

It prints YAML with one `redis-streams` trigger (`redis-cluster-streams` on a cluster) per
stream a worker reads — each queue (each priority band of it), each subscriber group's
topic stream and retry stream — naming the exact stream key and consumer group streamwork
uses, so KEDA's `lagCount` (XINFO GROUPS lag: entries not yet delivered to the group) is
the backlog `streamwork stats` shows. The Redis password is never printed: the trigger
reads it from the environment (`passwordFromEnv`). `--create-groups` makes the consumer
groups a worker would make, so KEDA can read a lag before any worker ever ran.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click

from .._app.app import App
from .._base.keys import Source
from .._redis import commands
from .._redis.connection import is_cluster
from .._redis.urls import seed_nodes
from .._worker.worker import Worker
from .app import app_for_command


def _address(app: App, override: str | None) -> tuple[str, dict[str, str]]:
    """(trigger type, the address metadata) for the app's Redis URL (or `override`)."""
    parts = urlsplit(app.url)
    if parts.scheme == "unix" and not override:
        raise click.UsageError("KEDA reaches Redis over TCP: pass --address HOST:PORT")
    cluster = parts.scheme != "unix" and is_cluster(app.url)
    kind = "redis-cluster-streams" if cluster else "redis-streams"
    hosts = override or ",".join(f"{host}:{port}" for host, port in seed_nodes(app.url))
    metadata = {"addresses" if cluster else "address": hosts}
    if parts.scheme.startswith("rediss"):
        metadata["enableTLS"] = "true"
    if not cluster:  # unix://PATH?db=N, else redis://HOST:PORT/N
        database = parse_qs(parts.query).get("db", ["0"])[0]
        metadata["databaseIndex"] = database if parts.scheme == "unix" else parts.path.strip("/")
        metadata["databaseIndex"] = metadata["databaseIndex"] or "0"
    if parts.username:
        metadata["usernameFromEnv"] = "REDIS_USERNAME"
    if parts.password:
        metadata["passwordFromEnv"] = "REDIS_PASSWORD"
    return kind, metadata


def _create_groups(app: App, sources: list[Source]) -> int:
    made = 0
    client = app.connection.redis
    with app.connection.translate_errors():
        for source in sources:
            made += commands.create_group(client, source)
    return made


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
    help="Backlog one replica should face (KEDA's lagCount).",
)
@click.option(
    "--activation-lag",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Backlog above which a Deployment at 0 replicas is woken (activationLagCount).",
)
@click.option(
    "--address",
    default=None,
    help="HOST:PORT (cluster: a comma-separated list) as KEDA reaches Redis; "
    "default: from the app's Redis URL.",
)
@click.option(
    "--create-groups",
    is_flag=True,
    help="Create the consumer groups now (as a worker would), so KEDA reads a lag at once.",
)
def keda(
    app_spec: str,
    name: str,
    deployment: str,
    min_replicas: int,
    max_replicas: int,
    lag_per_replica: int,
    activation_lag: int,
    address: str | None,
    create_groups: bool,
) -> None:
    """Print a KEDA ScaledObject scaling the worker Deployment on the app's backlog."""
    if min_replicas > max_replicas:
        raise click.BadParameter("--min must not exceed --max", param_hint="--min")
    app = app_for_command(app_spec)
    kind, connection = _address(app, address)
    if not app.tasks and not app.subscribers:
        raise click.UsageError(f"{app_spec} declares no tasks or subscribers: nothing to scale on")
    sources = Worker(app).sources  # what `streamwork worker MODULE:APP` reads, exactly
    if create_groups:
        made = _create_groups(app, sources)
        click.echo(f"# created {made} consumer group(s)", err=True)
    triggers = [
        {
            "type": kind,
            "metadata": {
                **connection,
                "stream": source.stream,
                "consumerGroup": source.group,
                "lagCount": str(lag_per_replica),
                "activationLagCount": str(activation_lag),
            },
        }
        for source in sources
    ]
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
            "triggers": triggers,
        },
    }
    listed = ", ".join(dict.fromkeys(source.name for source in sources))
    click.echo(f"# streamwork keda {app_spec}: one trigger per stream a worker reads ({listed})")
    click.echo("\n".join(_yaml(scaled)))
