"""`streamwork stats` and `streamwork top`: queues, topics and Little's law, once or live.

Thin, like the rest of the CLI: it loads the app, calls ops/stats.py, and prints. Added to the
`streamwork` command group by main.py.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

import click

from .._lifecycle import lifecycle
from .._redis import registry
from .._redis.urls import redact
from ..ops import stats as queue_stats
from .app import app_for_command


@click.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between the two looks that rates are measured over.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def stats(app_spec: str, interval: float, as_json: bool) -> None:
    """Per queue: backlog, pending, delayed, dead letters, rates, and Little's law; per
    topic and subscriber group: lag, pending, retries, dead letters and consumers."""
    app = app_for_command(app_spec)
    overview = queue_stats.measure(app, interval)
    if as_json:
        click.echo(json.dumps(overview.as_dict(), indent=2))
        return
    click.echo("\n".join(render_overview(overview, interval)))
    click.echo(
        "W: average wait before a handler starts; L=λW: the backlog that arrival rate and "
        "wait imply (Little's law) — READY well above it and growing means too few workers; "
        "λS: handlers busy on average, the concurrency (processes x --concurrency) each "
        "queue needs at least."
    )


@click.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=0),
    default=0,
    help="Stop after this many refreshes (default: until Ctrl-C).",
)
def top(app_spec: str, interval: float, iterations: int) -> None:
    """A live view of queues, topics, workers and the messages running (with their
    progress), refreshed in place."""
    app = app_for_command(app_spec)
    queues, topics = registry.known_queues(app), registry.known_topics(app)
    is_terminal = sys.stdout.isatty()
    before = queue_stats.look(app, queues, topics)
    sources = [source for queue in queues for source in app.queue_sources(queue)]
    shown = 0
    try:
        while iterations == 0 or shown < iterations:
            time.sleep(interval)
            after = queue_stats.look(app, queues, topics)
            lines = render_overview(queue_stats.compare(before, after), interval)
            with app.connection.translate_errors():
                lines += render_running(lifecycle.running(app.connection.redis, sources))
            stamp = datetime.now().strftime("%H:%M:%S")
            header = f"streamwork top — {app_spec} — {redact(app.url)} — {stamp} (Ctrl-C quits)"
            # Home and clear: the view is redrawn in place on a terminal.
            click.echo(("\x1b[H\x1b[J" if is_terminal else "\n") + "\n".join([header, *lines]))
            before = after
            shown += 1
    except KeyboardInterrupt:
        pass


def render_overview(overview: queue_stats.Overview, interval: float) -> list[str]:
    """The queue and topic tables that `stats` and `top` print."""
    lines = [
        f"{'QUEUE':<20} {'READY':>7} {'PENDING':>7} {'DELAYED':>7} {'HELD':>6} {'DEAD':>6} "
        f"{'λ/s':>8} {'DONE/s':>8} {'W':>8} {'L=λW':>8} {'λS':>6} {'LIVE':>5}"
    ]
    for item in overview.queues:
        state = item.state
        lines.append(
            f"{state.queue[:20]:<20} {state.ready:>7} {state.pending:>7} {state.delayed:>7} "
            f"{state.held:>6} {state.dead_letters:>6} {item.arrival_rate:>8.1f} "
            f"{item.completion_rate:>8.1f} {_seconds(item.wait):>8} "
            f"{_number(item.expected_backlog):>8} {_number(item.busy_handlers):>6} "
            f"{state.consumers:>5}"
        )
        for part in state.partitions or ():  # counts per partition; rates for the queue
            lines.append(
                f"{'  ' + part.queue[:18]:<20} {part.ready:>7} {part.pending:>7} "
                f"{part.delayed:>7} {'':>6} {part.dead_letters:>6}"
            )
    if overview.topics:
        lines.append(
            f"\n{'TOPIC/GROUP':<32} {'LENGTH':>7} {'λ/s':>8} {'LAG':>7} {'PENDING':>7} "
            f"{'RETRYING':>8} {'DEAD':>6} {'LIVE':>5}"
        )
    for topic, rate in zip(overview.topics, overview.publish_rates, strict=True):
        lines.append(f"{topic.topic[:32]:<32} {topic.length:>7} {rate:>8.1f}")
        for group in topic.groups:
            lines.append(
                f"{'  ' + group.group[:30]:<32} {'':>7} {'':>8} "
                f"{'?' if group.lag is None else group.lag:>7} {group.pending:>7} "
                f"{group.retrying:>8} {group.dead_letters:>6} {group.consumers:>5}"
            )
    lines.append(f"rates over {interval:g}s; {queue_stats.LIVE}")
    return lines


def render_running(running: list[lifecycle.Running]) -> list[str]:
    """The messages running now, with their progress (oldest first)."""
    if not running:
        return ["\nnothing running"]
    lines = [
        f"\n{'RUNNING':<34} {'QUEUE':<14} {'TASK':<20} {'AGE':>7} {'DONE':>5}  NOTE",
    ]
    for item in running:
        done = "-" if item.progress is None else f"{item.progress:.0%}"
        lines.append(
            f"{item.id[:34]:<34} {item.queue[:14]:<14} {item.task[:20]:<20} "
            f"{_seconds(item.age):>7} {done:>5}  {(item.note or '')[:40]}"
        )
    return lines


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
