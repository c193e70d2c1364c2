"""`streamwork status MODULE:APP ID`, `streamwork cancel MODULE:APP ID [--reason R]` and
`streamwork events MODULE:APP [--queue Q] [--since ID] [--follow] [--json]`: messages'
lifecycles from the command line.

Thin, like the rest of the CLI: it finds which queue holds the message's status (the app's
queues, then every queue registered in its namespace; `--queue` to say), reads or cancels
it through lifecycle.py, and prints. Added to the `streamwork` command group by main.py.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .._app.app import App
from .._base import protocol
from .._lifecycle.events import Event, start_positions
from .._lifecycle.lifecycle import TaskStatus, cancel_in, describe_cancel, find, parse_status
from .._redis.registry import check_known_queue
from .app import app_for_command


def _check_id(message_id: str) -> str:
    if not protocol.ID.fullmatch(message_id):
        raise click.BadParameter(f"{message_id!r} is not a message id ({protocol.ID_RULE})")
    return message_id


def _show(queue: str, message_id: str, status: TaskStatus) -> dict[str, Any]:
    return {
        "id": message_id,
        "queue": queue,
        "task": status.task,
        "state": status.state,
        "attempts": status.attempts,
        "progress": status.progress,
        "note": status.note,
        "data": status.data,
        "error": status.error,
        "worker": status.worker,
        "cancel_requested": status.cancel_requested,
        "workflow": status.workflow,
        "updated_at": None if status.updated_at is None else status.updated_at.isoformat(),
    }


def checked(app: App, queue: str | None) -> App:
    """`app`, once a `--queue` given is known to it (UnknownQueue, listing them, if not)."""
    if queue is not None:
        check_known_queue(app, queue)
    return app


@click.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("message_id", metavar="ID", callback=lambda ctx, param, value: _check_id(value))
@click.option("--queue", default=None, help="The message's queue (default: look in every one).")
@click.option("--json", "as_json", is_flag=True, help="Print it as one JSON object.")
def status(app_spec: str, message_id: str, queue: str | None, as_json: bool) -> None:
    """Show where message ID is: its state, attempts, progress, error, worker."""
    app = checked(app_for_command(app_spec), queue)
    name, raw = find(app, message_id, queue)
    shown = _show(name, message_id, parse_status(raw, protocol.now_ms()))
    if as_json:
        click.echo(json.dumps(shown, default=repr))
        return
    if shown["progress"] is not None:
        shown["progress"] = f"{shown['progress']:.0%}"
    if shown["data"] is not None:
        shown["data"] = json.dumps(shown["data"], default=repr)
    for key, value in shown.items():
        if value is not None and value is not False:
            click.echo(f"{key + ':':<17} {value}")


@click.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("message_id", metavar="ID", callback=lambda ctx, param, value: _check_id(value))
@click.option("--reason", default="", help="Why (kept in its status).")
@click.option("--queue", default=None, help="The message's queue (default: look in every one).")
def cancel(app_spec: str, message_id: str, reason: str, queue: str | None) -> None:
    """Cancel message ID: a queued or delayed one never runs; a running one is stopped."""
    app = checked(app_for_command(app_spec), queue)
    name, _ = find(app, message_id, queue)
    what, before = cancel_in(app, name, message_id, reason)
    click.echo(describe_cancel(what, before))


@click.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--queue", default=None, help="One queue (default: every queue with events).")
@click.option(
    "--since",
    default="0",
    show_default=True,
    help="Where to start: 0 (the oldest kept), $ (new ones only), or an event id.",
)
@click.option("--follow", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def events(app_spec: str, queue: str | None, since: str, follow: bool, as_json: bool) -> None:
    """Print the lifecycle events of the app's queues (sent, started, progress, retried,
    done, failed, dead, cancelled), every queue's merged in time order (UTC): the app must
    record them (App(events=...))."""
    app = checked(app_for_command(app_spec), queue)
    positions = start_positions(app, queue, since)
    if not as_json:
        click.echo(EVENTS_HEADER)
    try:
        while True:
            found = _everything_new(app, queue, positions, 1.0 if follow else None)
            for event in sorted(found, key=lambda event: (event.time, event.id)):
                click.echo(json.dumps(event.as_dict(), default=repr) if as_json else _line(event))
            if not follow:
                return
    except KeyboardInterrupt:
        pass


def _everything_new(
    app: App, queue: str | None, positions: dict[str, str], block: float | None
) -> list[Event]:
    """Every event after `positions` now, of every queue (moving them on); when there is
    none, what comes within `block` seconds."""
    found: list[Event] = []
    while True:
        batch = app.read_events(queue, since=positions, block=None if found else block)
        for event in batch:
            positions[event.queue] = event.id
        found += batch
        if not batch or block is not None:  # following: print what came, then look again
            return found


EVENTS_HEADER = (
    f"{'TIME (UTC)':<12}  {'QUEUE':<12} {'EVENT':<9} {'ID':<32}  {'TASK':<16} ATTEMPT    "
    f"{'WORKER':<20} DETAIL"
)


def _line(event: Event) -> str:
    detail = event.error or ""
    if event.event == "progress":
        data = "" if event.data is None else json.dumps(event.data, default=repr)
        detail = f"{event.progress:.0%} {event.note or ''} {data}".strip()
    return (
        f"{event.time.strftime('%H:%M:%S.%f')[:-3]}  {event.queue:<12} {event.event:<9} "
        f"{event.message_id}  {event.task:<16} attempt {event.attempt}  "
        f"{event.worker or '-':<20} {detail}"
    ).rstrip()
