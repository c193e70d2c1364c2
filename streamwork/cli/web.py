"""`streamwork web MODULE:APP`: serve the web console (the `web` extra) with uvicorn.

Thin, like the rest of the CLI: it checks what it was given — a host other than loopback
needs a token, the extra must be installed, Redis must answer — then builds the console
(streamwork.web.asgi_app) and serves it. Added to the `streamwork` command group by main.py.
"""

from __future__ import annotations

import ipaddress

import click

from .._redis.urls import redact
from .app import app_for_command

TOKEN_ENV = "STREAMWORK_WEB_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _prefix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.rstrip("/")
    if value and (not value.startswith("/") or "//" in value or " " in value):
        raise click.BadParameter(f"{value!r} must be a path such as /streamwork")
    return value


@click.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8181, show_default=True, help="Port."
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"Require this token (log-in form, or Authorization: Bearer); default ${TOKEN_ENV}. "
    "Needed to listen on anything but loopback.",
)
@click.option("--read-only", is_flag=True, help="Show everything, change nothing.")
@click.option(
    "--url-prefix",
    default="",
    callback=_prefix,
    help="Serve under this path (behind a proxy that forwards /PREFIX/...).",
)
def web(
    app_spec: str, host: str, port: int, token: str | None, read_only: bool, url_prefix: str
) -> None:
    """Serve the web console: queues, dead letters (replay, purge), tasks (cancel),
    schedules, workflows, workers and a live event tail."""
    if token is not None and len(token) < 8:
        raise click.BadParameter("use a token of at least 8 characters", param_hint="--token")
    if not is_loopback(host) and not token:
        raise click.UsageError(
            f"refusing to serve the console on {host} without a token: "
            f"pass --token or set ${TOKEN_ENV} (or listen on 127.0.0.1)"
        )
    try:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Mount

        from ..web import asgi_app
    except ImportError as exc:
        raise click.ClickException(
            f"the web console needs the 'web' extra ({exc.name} is missing): "
            "pip install 'streamwork[web]'"
        ) from None
    app = app_for_command(app_spec)
    app.ping()
    console = asgi_app(app, token=token, read_only=read_only)
    served = Starlette(routes=[Mount(url_prefix, app=console)]) if url_prefix else console
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(
        f"streamwork console for {app_spec} ({redact(app.url)}) on "
        f"http://{shown_host}:{port}{url_prefix}/"
        + (" — read-only" if read_only else "")
        + (" — token required" if token else ""),
        err=True,
    )
    uvicorn.run(
        served,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=3,
        proxy_headers=False,
    )
