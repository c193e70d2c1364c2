"""The `streamwork` command: thin click commands — parse, call, print.

Errors a user can cause (a bad MODULE:APP, an unreachable Redis, an unknown queue) end as
one line on stderr and a non-zero exit; tracebacks only with --log-level debug.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from datetime import datetime, timezone
from typing import Any

import click

from . import __version__, dead_letters
from .app import App
from .connection import redact
from .errors import StreamworkError
from .settings import WorkerSettings
from .worker import Worker

log = logging.getLogger("streamwork")

LOG_LEVELS = ("debug", "info", "warning", "error")


def load_app(spec: str) -> App:
    """The App named by `MODULE:APP` (module imported from the current directory first)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{spec!r} is not MODULE:APP (e.g. myproject.tasks:app)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise click.BadParameter(
                f"cannot import module {module_name!r}: no such module "
                "(run from the directory that holds it, or set PYTHONPATH)"
            ) from None
        raise
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise click.BadParameter(
            f"{module_name!r} has no streamwork App named {attr!r}"
            + (f" (it is a {type(app).__name__})" if app is not None else "")
        )
    return app


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
def main() -> None:
    """streamwork: tasks and messages on Redis Streams."""


@main.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option(
    "--queues",
    "-q",
    multiple=True,
    help="Queues to serve, comma-separated (default: every queue the app's tasks use).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Messages running at once.",
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
    "--allow-evicting-redis",
    is_flag=True,
    help="Start even if Redis's maxmemory-policy may evict queues.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
def worker(
    app_spec: str,
    queues: tuple[str, ...],
    concurrency: int,
    burst: bool,
    visibility_timeout: float,
    allow_evicting_redis: bool,
    log_level: str,
) -> None:
    """Run a worker process for the app's tasks."""
    _configure_logging(log_level)
    app = load_app(app_spec)
    settings = WorkerSettings(
        concurrency=concurrency,
        visibility_timeout=visibility_timeout,
        allow_evicting_redis=allow_evicting_redis,
    )
    the_worker = Worker(app, _split(queues) or None, settings)
    app.ping()
    click.echo(
        f"streamwork {__version__} worker {the_worker.consumer}\n"
        f"  app:         {app_spec}\n"
        f"  redis:       {redact(app.url)}\n"
        f"  queues:      {', '.join(the_worker.queues)}\n"
        f"  concurrency: {concurrency}{'  (burst)' if burst else ''}",
        err=True,
    )
    asyncio.run(_run_worker(the_worker, burst))


async def _run_worker(the_worker: Worker, burst: bool) -> None:
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            log.info("%s received: stopping (send again to force)", signal.Signals(signum).name)
            the_worker.stop()
        else:
            log.warning(
                "second signal: forced stop; running messages stay pending and are "
                "recovered after the visibility timeout"
            )
            os._exit(1)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    await the_worker.run(burst=burst)


def dump_tasks() -> None:
    """Print the stack of every asyncio task to stderr (SIGUSR1): what is the worker doing?"""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# -- dead letters --------------------------------------------------------------------------

redis_options = [
    click.option(
        "--url",
        envvar="STREAMWORK_REDIS_URL",
        default=None,
        help="Redis URL (default: $STREAMWORK_REDIS_URL, then redis://localhost:6379/0).",
    ),
    click.option("--namespace", default="sw", show_default=True, help="Key namespace of the app."),
]


def with_redis(command: Any) -> Any:
    for option in reversed(redis_options):
        command = option(command)
    return command


@main.group()
def dlq() -> None:
    """Inspect, replay and purge a queue's dead letters."""


@dlq.command("list")
@click.argument("queue")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@with_redis
def dlq_list(queue: str, limit: int, as_json: bool, url: str | None, namespace: str) -> None:
    """List the oldest dead letters of QUEUE."""
    app = App(url, namespace=namespace)
    entries = dead_letters.list_dead_letters(app, queue, limit)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2, default=repr))
        return
    total = dead_letters.count(app, queue)
    if not entries:
        click.echo(f"no dead letters in queue {queue!r}")
        return
    click.echo(f"{'ID':<17} {'FAILED AT (UTC)':<19} {'TASK':<20} {'ATTEMPTS':>8}  REASON")
    for entry in entries:
        letter = entry.letter
        click.echo(
            f"{entry.id:<17} {_when(letter.last_failure_ms):<19} {letter.task[:20]:<20} "
            f"{letter.attempts:>8}  {_shorten(letter.reason, 70)}"
        )
    shown = f"{len(entries)} of {total}" if total > len(entries) else f"{total}"
    click.echo(f"{shown} dead letter(s) in queue {queue!r}")


@dlq.command("show")
@click.argument("queue")
@click.argument("entry_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@with_redis
def dlq_show(queue: str, entry_id: str, as_json: bool, url: str | None, namespace: str) -> None:
    """Show one dead letter of QUEUE in full, with its traceback."""
    app = App(url, namespace=namespace)
    entry = dead_letters.show(app, queue, entry_id)
    data = entry.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=repr))
        return
    trace = data.pop("traceback")
    for name in ("first_failure_ms", "last_failure_ms"):
        data[name.removesuffix("_ms")] = _when(data.pop(name))
    for name, value in data.items():
        click.echo(f"{name + ':':<16} {value}")
    if trace:
        click.echo("traceback:\n" + trace.rstrip())


@dlq.command("replay")
@click.argument("queue")
@click.argument("entry_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter of QUEUE.")
@with_redis
def dlq_replay(
    queue: str, entry_ids: tuple[str, ...], replay_all: bool, url: str | None, namespace: str
) -> None:
    """Put dead letters back on QUEUE, attempts reset (the given IDs, or --all)."""
    if bool(entry_ids) == replay_all:
        raise click.UsageError("give the IDs to replay, or --all (not both)")
    app = App(url, namespace=namespace)
    report = dead_letters.replay(app, queue, None if replay_all else list(entry_ids))
    click.echo(f"replayed {report.replayed} dead letter(s) onto queue {queue!r}")
    if report.skipped:
        click.echo(
            f"left {len(report.skipped)} undecodable one(s) in place: " + ", ".join(report.skipped),
            err=True,
        )
    if report.missing:
        raise click.ClickException("no such dead letter(s): " + ", ".join(report.missing))


@dlq.command("purge")
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_redis
def dlq_purge(queue: str, yes: bool, url: str | None, namespace: str) -> None:
    """Delete every dead letter of QUEUE."""
    app = App(url, namespace=namespace)
    if not yes:
        total = dead_letters.count(app, queue)
        click.confirm(f"delete {total} dead letter(s) of queue {queue!r}?", abort=True)
    click.echo(f"purged {dead_letters.purge(app, queue)} dead letter(s) from queue {queue!r}")


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
