"""The `streamwork` command: thin click commands — parse, call, print.

Errors a user can cause (a bad MODULE:APP, an unreachable Redis, an unknown queue) end as
one line on stderr and a non-zero exit; tracebacks only with --log-level debug.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from typing import Any

import click

from . import __version__
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
    await the_worker.run(burst=burst)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
