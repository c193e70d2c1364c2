"""The `streamwork` command: thin click commands — parse, call, print.

Errors a user can cause (a bad MODULE:APP, an unreachable Redis, an unknown queue) end as
one line on stderr and a non-zero exit; tracebacks only with --log-level debug.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any

import click

from .. import __version__
from .._base import logs
from .._base.settings import WorkerSettings
from .._redis import registry
from .._redis.urls import redact
from .._worker.serving import SupervisorMetrics, prepare_multiprocess_dir
from .._worker.supervisor import ProcessSpec, Supervisor
from .._worker.worker import Worker
from ..errors import StreamworkError, UnknownTask
from ..ops.metrics import QueueCollector
from . import deploy as deploy_commands
from . import dlq as dlq_commands
from . import lifecycle as lifecycle_commands
from . import limits as limits_commands
from . import schedules as schedule_commands
from . import stats as stats_commands
from . import web as web_commands
from . import workflows as workflow_commands
from .app import app_for_command

log = logging.getLogger("streamwork")


def _split(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


class _Group(click.Group):
    """Turns StreamworkError into one line and exit 1 (a traceback only at debug level)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StreamworkError as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                log.exception("error")
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="streamwork")
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    default="warning",
    show_default=True,
    help="For every command (worker's own --log-level wins; without either a worker logs "
    "at info): debug shows tracebacks.",
)
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """streamwork: tasks and messages on Redis Streams."""
    logs.configure(log_level)
    given = ctx.get_parameter_source("log_level") is not click.core.ParameterSource.DEFAULT
    ctx.obj = {"log_level": log_level if given else None}


@main.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option(
    "--queues",
    "-q",
    multiple=True,
    help="Queues to serve, comma-separated (default: every queue the app's tasks use).",
)
@click.option(
    "--topics",
    "-t",
    multiple=True,
    help="Topics whose subscribers to run, comma-separated (default: all, unless --queues "
    "is given).",
)
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default="CPU count",
    help="Worker processes.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Messages running at once in each process.",
)
@click.option("--burst", is_flag=True, help="Exit 0 once the queues are drained.")
@click.option(
    "--visibility-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds a message may sit unrenewed in a dead worker's hands before "
    "another worker takes it.",
)
@click.option(
    "--max-starvation",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds a lower priority band's message may wait before it is taken ahead of "
    "higher bands (queues with priority bands).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM/SIGINT, seconds running messages may take to finish.",
)
@click.option(
    "--max-tasks",
    type=click.IntRange(min=1),
    default=None,
    help="Recycle a worker process after this many messages.",
)
@click.option(
    "--max-memory",
    type=click.FloatRange(min=1),
    default=None,
    metavar="MIB",
    help="Recycle a worker process whose resident memory passes this many MiB.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve Prometheus metrics of all processes on this port.",
)
@click.option(
    "--metrics-host",
    "--metrics-address",
    "metrics_address",
    default="0.0.0.0",
    show_default=True,
    help="Address the metrics and health server listens on (0.0.0.0: every interface, as "
    "a pod's probes need; 127.0.0.1: this host only).",
)
@click.option(
    "--allow-evicting-redis",
    is_flag=True,
    help="Start even if Redis's maxmemory-policy may evict queues.",
)
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    default=None,
    help="The workers' log level  [default: the global --log-level, else info]",
)
@click.option(
    "--schedules/--no-schedules",
    default=True,
    show_default=True,
    help="Run the schedule ticker (every worker process may; each tick is enqueued once).",
)
@click.option("--log-format", type=click.Choice(logs.FORMATS), default="text", show_default=True)
def worker(
    app_spec: str,
    queues: tuple[str, ...],
    topics: tuple[str, ...],
    processes: int,
    concurrency: int,
    burst: bool,
    visibility_timeout: float,
    max_starvation: float,
    grace: float,
    max_tasks: int | None,
    max_memory: float | None,
    metrics_port: int | None,
    metrics_address: str,
    allow_evicting_redis: bool,
    schedules: bool,
    log_level: str | None,
    log_format: str,
) -> None:
    """Run worker processes for the app's tasks and subscribers, under a supervisor."""
    global_level = (click.get_current_context().obj or {}).get("log_level")
    log_level = log_level or global_level or "info"
    logs.configure(log_level, log_format)
    app = app_for_command(app_spec)
    settings = WorkerSettings(
        concurrency=concurrency,
        visibility_timeout=visibility_timeout,
        max_starvation=max_starvation,
        allow_evicting_redis=allow_evicting_redis,
        grace=grace,
        max_tasks=max_tasks,
        max_memory_mb=max_memory,
        schedules=schedules,
    )
    probe = Worker(app, _split(queues) or None, settings, _split(topics) or None)  # checks names
    asyncio.run(probe.preflight())  # Redis reachable and not evicting, before any process
    metrics = None if metrics_port is None else _serve_metrics(app, metrics_port, metrics_address)
    metrics_text = "off"
    if metrics:
        where = " (every interface)" if metrics_address in ("0.0.0.0", "::") else ""
        metrics_text = f"http://{metrics_address}:{metrics_port}/metrics, /healthz, /readyz{where}"
    shown = {
        "app": app_spec,
        "redis": redact(app.url),
        "queues": probe.queues,
        "topics": probe.groups,
        "processes": processes,
        "concurrency": concurrency,
        "burst": burst,
        "metrics": metrics_text,
        "schedules": len(app.declared_schedules) if schedules else "off",
    }
    click.echo(_banner(shown, log_format), err=True)
    spec = ProcessSpec(
        app_spec=app_spec,
        queues=tuple(probe.queues),
        topics=tuple(probe.topics),
        settings=settings,
        burst=burst,
        log_level=log_level,
        log_format=log_format,
    )
    sys.exit(Supervisor(spec, processes, metrics).run())


def _serve_metrics(app: Any, port: int, address: str) -> SupervisorMetrics:
    """The supervisor's metrics and probes, served on `address`:`port` (one line if not)."""
    metrics = SupervisorMetrics(prepare_multiprocess_dir(), app)
    metrics.registry.register(QueueCollector(app))
    try:
        metrics.serve(port, address)
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve metrics on {address}:{port}: {exc.strerror}"
        ) from None
    return metrics


def _banner(shown: dict[str, Any], log_format: str) -> str:
    """What a worker prints as it starts: one JSON line, or a few lines of text."""
    if log_format == "json":  # one JSON line, like every other line a log shipper reads
        return json.dumps(
            {
                "time": datetime.now(timezone.utc).isoformat(),
                "level": "info",
                "pid": os.getpid(),
                "logger": "streamwork.cli",
                "message": f"streamwork {__version__} worker starting",
                **shown,
            }
        )
    schedules = shown["schedules"]
    schedules_text = "off" if schedules == "off" else f"ticker on; {schedules} declared in code"
    burst_text = "  (burst)" if shown["burst"] else ""
    return (
        f"streamwork {__version__} worker\n"
        f"  app:         {shown['app']}\n"
        f"  redis:       {shown['redis']}\n"
        f"  queues:      {', '.join(shown['queues']) or '-'}\n"
        f"  topics:      {', '.join(shown['topics']) or '-'}\n"
        f"  processes:   {shown['processes']} x concurrency {shown['concurrency']}{burst_text}\n"
        f"  metrics:     {shown['metrics']}\n"
        f"  schedules:   {schedules_text}"
    )


@main.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("task_name", metavar="TASK")
@click.argument("args", nargs=-1)
@click.option(
    "--kwargs",
    "kwargs_json",
    default=None,
    metavar="JSON",
    help='Keyword arguments as a JSON object, e.g. \'{"subject": "hi"}\'.',
)
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Run it this many seconds from now.",
)
@click.option("--key", default=None, help="Idempotency key: send at most once per key.")
def send(
    app_spec: str,
    task_name: str,
    args: tuple[str, ...],
    kwargs_json: str | None,
    delay: float | None,
    key: str | None,
) -> None:
    """Send one TASK with ARGS (each read as JSON when it parses, else as a string)."""
    app = app_for_command(app_spec)
    task = app.tasks.get(task_name)
    if task is None:
        known = ", ".join(sorted(app.tasks)) or "none"
        raise UnknownTask(f"unknown task {task_name!r}: {app_spec} has {known}")
    kwargs: dict[str, Any] = {}
    if kwargs_json is not None:
        try:
            kwargs = json.loads(kwargs_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--kwargs") from None
        if not isinstance(kwargs, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--kwargs")
    handle = task.send_with(
        args=[_json_or_text(arg) for arg in args], kwargs=kwargs, delay=delay, key=key
    )
    click.echo(
        handle.id + ("  (duplicate: already sent with this key)" if handle.is_duplicate else "")
    )


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@main.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("queues", nargs=-1, required=True)
@click.option(
    "--delayed/--no-delayed",
    default=True,
    show_default=True,
    help="Also delete delayed messages and scheduled retries.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(app_spec: str, queues: tuple[str, ...], delayed: bool, yes: bool) -> None:
    """Delete the messages of QUEUES that no worker has received yet.

    Messages being run (pending) are left alone, and so are dead letters.
    """
    app = app_for_command(app_spec)
    for queue in queues:
        registry.check_known_queue(app, queue)
    if not yes:
        click.confirm(f"delete every waiting message of {', '.join(queues)}?", abort=True)
    for queue in queues:
        entries, scheduled = app.purge(queue, delayed=delayed)
        click.echo(f"purged {entries} waiting and {scheduled} delayed message(s) from {queue!r}")


main.add_command(dlq_commands.dlq)
main.add_command(schedule_commands.schedules)
main.add_command(lifecycle_commands.status)
main.add_command(lifecycle_commands.cancel)
main.add_command(lifecycle_commands.events)
main.add_command(stats_commands.stats)
main.add_command(stats_commands.top)
main.add_command(workflow_commands.workflow)
main.add_command(web_commands.web)
main.add_command(deploy_commands.keda)
main.add_command(deploy_commands.exporter)
main.add_command(limits_commands.limits)
