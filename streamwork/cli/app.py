"""Loading the App a command names (MODULE:APP), for every CLI command.

A spec that names no App is a usage error (exit 2) in one line; when importing the module
raised, the user's own frames are printed at --log-level debug, never streamwork's.
"""

from __future__ import annotations

import logging
import os
import traceback

import click

from .._app import app as app_module
from .._app.app import App
from .._redis import memory
from .._redis.urls import URL_ENV
from ..errors import AppNotFound

log = logging.getLogger("streamwork")


class BadAppSpec(click.ClickException):
    """A MODULE:APP that names no App: one line on stderr, exit 2 (a usage error)."""

    exit_code = 2


def app_for_command(spec: str) -> App:
    """The App named by MODULE:APP (`load_app`'s, the one loader), for a command: a bad
    spec is a usage error (exit 2), and an App on memory:// is refused.

    When importing the module raised, its traceback (the user's frames only) is printed
    at --log-level debug.
    """
    try:
        app = app_module.load_app(spec)
    except AppNotFound as exc:
        if exc.__cause__ is not None and log.isEnabledFor(logging.DEBUG):
            click.echo(_user_traceback(exc.__cause__), err=True)
        raise BadAppSpec(str(exc)) from None
    return refuse_memory(app)


def refuse_memory(app: App) -> App:
    """`app`, unless it is on memory://, which no other process can see (exit 2)."""
    if memory.is_memory(app.url):
        raise BadAppSpec(
            f"{app.url} is an in-process Redis: a command in another process cannot see it — "
            "run its work in the same process (streamwork.testing.run_until_idle), or "
            f"point {URL_ENV} at a redis-server"
        )
    return app


def _user_traceback(exc: BaseException) -> str:
    """`exc`'s traceback without the frames of importlib and of streamwork itself."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in frame.filename and not frame.filename.startswith(here)
    ]
    lines = traceback.format_list(frames)
    return (
        "Traceback (most recent call last):\n"
        + "".join(lines)
        + "".join(traceback.format_exception_only(type(exc), exc))
    )
