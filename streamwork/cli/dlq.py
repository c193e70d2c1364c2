"""`streamwork dlq list|show|replay|purge`: the dead letters of a queue or subscriber group.

Each command takes an optional leading MODULE:APP (the app's URL and namespace), like every
other command; without it, --url and --namespace say where to look.

Thin, like the rest of the CLI: it parses, calls ops/dead_letters.py, and prints. Added to the
`streamwork` command group by main.py.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

import click

from .._app.app import App
from .._base.keys import Source
from .._redis import reads, registry
from ..errors import UnknownDeadLetter
from ..ops import dead_letters
from .app import app_for_command, refuse_memory


def _label(sources: list[Source]) -> str:
    """What messages call the dead letters' owner: the queue (or "topic/group")."""
    return sources[0].queue if sources[0].topic is None else sources[0].name


def dlq_sources(app: App, name: str, group: str | None) -> list[Source]:
    """A queue's source (each partition's, for a partitioned queue: `QUEUE~N` names one),
    or with --group a topic subscriber group's."""
    if group:
        registry.check_subscriber_group(app, name, group)
        return [app.topic_source(name, group)]
    registry.check_known_queue(app, name)  # an app without the queue's code learns partitions
    if app.partitions(name) > 1:
        return app.queue_sources(name)
    return [app.queue_source(name)]


_ENTRY_ID = re.compile(r"\d+(-\d+)?")


def _app_and_rest(
    names: tuple[str, ...], least: int, most: int | None, url: str | None, namespace: str
) -> tuple[App, list[str]]:
    """The App to read (from a leading MODULE:APP, else --url and --namespace) and the
    remaining arguments, of which there must be `least` to `most`.

    A first argument is MODULE:APP when it has a ':' and what follows it is not a dead
    letter id (queue names may contain ':' too: `dlq replay a:b 1-0` names queue a:b).
    """
    rest = list(names)
    has_app = (
        len(rest) > least
        and ":" in rest[0]
        and (most is not None or not _ENTRY_ID.fullmatch(rest[1]))
    )
    app = app_for_command(rest.pop(0)) if has_app else refuse_memory(App(url, namespace=namespace))
    if len(rest) < least or (most is not None and len(rest) > most):
        raise click.UsageError(f"expected {least}{'' if most == least else '+'} argument(s)")
    return app, rest


redis_options = [
    click.option(
        "--url",
        envvar="STREAMWORK_REDIS_URL",
        default=None,
        help="Redis URL (default: $STREAMWORK_REDIS_URL, then redis://localhost:6379/0); "
        "not needed with MODULE:APP.",
    ),
    click.option(
        "--namespace",
        default="sw",
        show_default=True,
        help="Key namespace of the app; not needed with MODULE:APP.",
    ),
    click.option("--group", default=None, help="For a topic: the subscriber group."),
]


def with_redis(command: Any) -> Any:
    for option in reversed(redis_options):
        command = option(command)
    return command


@click.group()
def dlq() -> None:
    """Inspect, replay and purge a queue's dead letters."""


@dlq.command("list")
@click.argument("names", metavar="[MODULE:APP] QUEUE|TOPIC", nargs=-1, required=True)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@with_redis
def dlq_list(
    names: tuple[str, ...],
    limit: int,
    as_json: bool,
    url: str | None,
    namespace: str,
    group: str | None,
) -> None:
    """List the oldest dead letters of QUEUE (or of TOPIC's subscriber --group), with the
    last error of each."""
    app, (queue,) = _app_and_rest(names, 1, 1, url, namespace)
    sources = dlq_sources(app, queue, group)
    found = [
        (source, dead_letters.list_dead_letters(app.connection, source, limit))
        for source in sources
    ]
    if as_json:
        rows = [
            {**entry.as_dict(), **({"partition": source.name} if len(sources) > 1 else {})}
            for source, entries in found
            for entry in entries
        ]
        click.echo(json.dumps(rows, indent=2, default=repr))
        return
    total = sum(dead_letters.count(app.connection, source) for source in sources)
    if not total:
        click.echo(f"no dead letters in {_label(sources)!r}")
        return
    click.echo(
        f"{'ID':<17} {'FAILED AT (UTC)':<19} {'TASK':<20} {'ATTEMPTS':>8}  REASON — LAST ERROR"
    )
    shown = 0
    for source, entries in found:
        if len(sources) > 1 and entries:
            click.echo(f"-- partition {source.name}")  # its ids are the partition's
        shown += len(entries)
        for entry in entries:
            letter = entry.letter
            click.echo(
                f"{entry.id:<17} {_when(letter.last_failure_ms):<19} "
                f"{letter.task[:20] or '-':<20} "
                f"{letter.attempts:>8}  {_shorten(dead_letters.describe(letter), 90)}"
            )
    counted = f"{shown} of {total}" if total > shown else f"{total}"
    click.echo(f"{counted} dead letter(s) in {_label(sources)!r}")


@dlq.command("show")
@click.argument("names", metavar="[MODULE:APP] QUEUE|TOPIC ID", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@with_redis
def dlq_show(
    names: tuple[str, ...], as_json: bool, url: str | None, namespace: str, group: str | None
) -> None:
    """Show one dead letter in full, with its traceback."""
    app, (queue, entry_id) = _app_and_rest(names, 2, 2, url, namespace)
    entry = _show(app, dlq_sources(app, queue, group), entry_id)
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


def _locate(app: App, sources: list[Source], ids: list[str]) -> dict[str, list[Source]]:
    """For each id, the sources (partitions) whose dead letters have an entry with it;
    an id in several partitions must be asked of one by name (`QUEUE~N`)."""
    if len(sources) == 1:
        return {entry_id: sources for entry_id in ids}
    found: dict[str, list[Source]] = {entry_id: [] for entry_id in ids}
    with app.connection.translate_errors():
        for source in sources:
            rows_of = reads.entries_by_id(app.connection.redis, source.dead_letters, ids)
            for entry_id, rows in zip(ids, rows_of, strict=True):
                if rows:
                    found[entry_id].append(source)
    for entry_id, where in found.items():
        if len(where) > 1:
            names = ", ".join(source.name for source in where)
            raise click.ClickException(
                f"dead letter {entry_id} is in partitions {names}: name one "
                f"(e.g. {where[0].name} {entry_id})"
            )
    return found


def _show(app: App, sources: list[Source], entry_id: str) -> dead_letters.DeadLetterEntry:
    """The dead letter `entry_id` of the only source, or of the partition that has it."""
    where = _locate(app, sources, [entry_id])[entry_id]
    if not where:
        label = f"any partition of {_label(sources)!r}"
        raise UnknownDeadLetter(f"no dead letter {entry_id} in {label}")
    return dead_letters.show(app.connection, where[0], entry_id)


@dlq.command("replay")
@click.argument("names", metavar="[MODULE:APP] QUEUE|TOPIC [ID]...", nargs=-1, required=True)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter of QUEUE.")
@with_redis
def dlq_replay(
    names: tuple[str, ...],
    replay_all: bool,
    url: str | None,
    namespace: str,
    group: str | None,
) -> None:
    """Run dead letters again, attempts reset (the given IDs, or --all).

    A topic's dead letters go back to their subscriber group only.
    """
    app, (queue, *entry_ids) = _app_and_rest(names, 1, None, url, namespace)
    if bool(entry_ids) == replay_all:
        raise click.UsageError("give the IDs to replay, or --all (not both)")
    sources = dlq_sources(app, queue, group)
    report = dead_letters.ReplayReport()
    asked: dict[Source, list[str] | None] = dict.fromkeys(sources)  # --all: every letter
    if not replay_all:  # each id from the partition that has it (a plain queue: its source)
        by_source: dict[Source, list[str]] = {}
        for entry_id, where in _locate(app, sources, list(entry_ids)).items():
            if where:
                by_source.setdefault(where[0], []).append(entry_id)
            else:
                report.missing.append(entry_id)
        asked = dict(by_source)
    for source, ids in asked.items():
        part = dead_letters.replay(app.connection, source, ids, app.status_ttl_ms)
        report.replayed += part.replayed
        report.skipped += part.skipped
        report.missing += part.missing
    done = f"replayed {report.replayed} dead letter(s) onto {_label(sources)!r}"
    if report.skipped:
        click.echo(
            f"left {len(report.skipped)} undecodable one(s) in place: " + ", ".join(report.skipped),
            err=True,
        )
    if report.missing:  # one message: what was not found, and what was replayed if anything
        missing = f"no such dead letter(s) in {_label(sources)!r}: " + ", ".join(report.missing)
        raise click.ClickException(f"{missing} ({done})" if report.replayed else missing)
    click.echo(done)


@dlq.command("purge")
@click.argument("names", metavar="[MODULE:APP] QUEUE|TOPIC", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_redis
def dlq_purge(
    names: tuple[str, ...], yes: bool, url: str | None, namespace: str, group: str | None
) -> None:
    """Delete every dead letter of QUEUE (or of TOPIC's subscriber --group)."""
    app, (queue,) = _app_and_rest(names, 1, 1, url, namespace)
    sources = dlq_sources(app, queue, group)
    if not yes:
        total = sum(dead_letters.count(app.connection, source) for source in sources)
        click.confirm(f"delete {total} dead letter(s) of {_label(sources)!r}?", abort=True)
    purged = sum(dead_letters.purge(app.connection, source) for source in sources)
    click.echo(f"purged {purged} dead letter(s) from {_label(sources)!r}")


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
