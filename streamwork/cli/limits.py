"""`streamwork limits show MODULE:APP`, `streamwork limits set MODULE:APP TASK RATE` and
`streamwork limits reset MODULE:APP TASK`: a task's rate limit, changed at run time.

Thin, like the rest of the CLI: it parses, calls ops/limits.py, and prints. Added to the
`streamwork` command group by main.py.
"""

from __future__ import annotations

import json

import click

from ..ops import limits as task_limits
from .app import app_for_command


@click.group()
def limits() -> None:
    """Change a task's rate limit at run time: every worker uses it within a second."""


@limits.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def show(app_spec: str, as_json: bool) -> None:
    """Each task's rate limit: declared in code, overridden, and in force."""
    found = task_limits.show(app_for_command(app_spec))
    if as_json:
        click.echo(json.dumps([limit.as_dict() for limit in found], indent=2))
        return
    click.echo(f"{'TASK':<24} {'QUEUE':<16} {'DECLARED':<10} {'OVERRIDE':<10} IN FORCE")
    for limit in found:
        click.echo(
            f"{limit.task:<24} {limit.queue:<16} {limit.declared or '-':<10} "
            f"{limit.override or '-':<10} {limit.in_force}"
        )


@limits.command(name="set")
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("task", metavar="TASK")
@click.argument("rate", metavar="RATE")
def set_rate(app_spec: str, task: str, rate: str) -> None:
    """Set TASK's rate limit to RATE ("100/s", "10/m", "1000/h", or "none" for no limit)."""
    limit = task_limits.set_rate(app_for_command(app_spec), task, rate)
    click.echo(
        f"rate limit of {limit.task} is {limit.in_force} (declared: {limit.declared or 'none'});"
        " workers use it within a second"
    )


@limits.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("task", metavar="TASK")
def reset(app_spec: str, task: str) -> None:
    """Give TASK its declared rate limit back."""
    app = app_for_command(app_spec)
    had = task_limits.reset(app, task)
    declared = app.tasks[task].options.rate
    back = declared.text if declared else "none"
    click.echo(f"rate limit of {task} is {back} again" if had else f"{task} had no override")
