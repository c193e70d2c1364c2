"""`streamwork schedules MODULE:APP [--json]` and `streamwork schedules
pause|resume|trigger|remove MODULE:APP ID`: the schedules stored in an app's namespace.

Thin, like the rest of the CLI: it parses, calls the App's schedule methods, and prints.
Added to the `streamwork` command group by main.py.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from .._app.app import App
from .._schedules.schedules import Schedule
from .app import app_for_command


class _SchedulesGroup(click.Group):
    """`schedules MODULE:APP` lists (the `list` subcommand, named or not)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_SchedulesGroup)
def schedules() -> None:
    """The app's schedules: list them (MODULE:APP), or pause, resume, trigger or remove one.

    A schedule the app declares in code and that is removed here comes back when a worker
    starts with code that still declares it.
    """


def _when(moment: datetime | None, tz: str) -> str:
    if moment is None:
        return "-"
    local = moment.astimezone(zoneinfo.ZoneInfo(tz))
    utc = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    if tz == "UTC":
        return utc
    return f"{local.strftime('%Y-%m-%d %H:%M:%S %Z')} ({utc})"


def _then(schedule: Schedule) -> str:
    """The two runs after the next, in the schedule's time zone."""
    zone = zoneinfo.ZoneInfo(schedule.tz)
    later = [run.astimezone(zone).strftime("%m-%d %H:%M:%S") for run in schedule.next_runs[1:]]
    return ", ".join(later) or "-"


def _rule(schedule: Schedule) -> str:
    if schedule.cron is not None:
        return f"cron {schedule.cron!r} {schedule.tz}"
    return f"every {schedule.every:g}s"


@schedules.command("list")
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per schedule, in a list.")
def list_schedules(app_spec: str, as_json: bool) -> None:
    """List the schedules stored in the app's namespace."""
    found = app_for_command(app_spec).schedules()
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in found], indent=2))
        return
    if not found:
        click.echo("no schedules (declared ones are written when a worker starts)")
        return
    rows: list[tuple[Any, ...]] = [
        ("ID", "TASK", "QUEUE", "RULE", "NEXT RUN", "THEN", "LAST RUN", "LAST MESSAGE", "STATE")
    ]
    for s in found:
        rows.append(
            (
                s.id,
                s.task,
                s.queue,
                _rule(s),
                _when(s.next_run, s.tz),
                _then(s),
                _when(s.last_run, s.tz),
                s.last_message_id or "-",
                "paused" if s.paused else ("ended" if s.next_run is None else "active"),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _pause(app: App, id: str) -> str:
    app.pause_schedule(id)
    return f"schedule {id!r} paused"


def _resume(app: App, id: str) -> str:
    app.resume_schedule(id)
    next_run = app.get_schedule(id).next_run
    return (
        f"schedule {id!r} resumed; next run "
        f"{next_run.isoformat() if next_run else 'none (past its end)'}"
    )


def _trigger(app: App, id: str) -> str:
    return f"schedule {id!r} triggered: message {app.trigger_schedule(id)}"


def _remove(app: App, id: str) -> str:
    app.unschedule(id)
    return f"schedule {id!r} removed"


ACTIONS: dict[str, tuple[Callable[[App, str], str], str]] = {
    "pause": (_pause, "Stop enqueuing the schedule's ticks (until resume)."),
    "resume": (_resume, "Enqueue the schedule's ticks again, from its next tick."),
    "trigger": (_trigger, "Enqueue one run now; the next tick is unchanged."),
    "remove": (_remove, "Delete the schedule (a code-declared one returns when a worker starts)."),
}


def _register(name: str, act: Callable[[App, str], str], help_text: str) -> None:
    @schedules.command(name, help=help_text)
    @click.argument("app_spec", metavar="MODULE:APP")
    @click.argument("schedule_id", metavar="ID")
    def command(app_spec: str, schedule_id: str) -> None:
        click.echo(act(app_for_command(app_spec), schedule_id))


for _name, (_act, _help) in ACTIONS.items():
    _register(_name, _act, _help)
