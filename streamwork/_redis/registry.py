"""What an app's namespace has registered: the queues and topics its workers and producers
named, and the partitions of each partitioned queue — listed after the ones the app itself
declares; and the checks that a name a tool was given is one of them (UnknownQueue, listing
the known names). Every tool that lists queues (stats, status, events, dead letters, the
console, the metrics server) starts here. It reads; it never registers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._base.keys import (
    NAME,
    TopicKeys,
    base_queue,
    check_name,
    check_queue,
    partition_number,
    partitions_registry,
    queue_registry,
    topic_registry,
)
from ..errors import UnknownQueue
from . import commands

if TYPE_CHECKING:
    from .connection import NamespaceView


def known_topics(app: NamespaceView) -> list[str]:
    """The app's topics, then any other topic registered in its namespace."""
    with app.connection.translate_errors():
        names = commands.registered(app.connection.redis, topic_registry(app.namespace))
    registered = sorted(name.decode() for name in names)
    return list(dict.fromkeys([*app.topics(), *registered]))


def known_queues(app: NamespaceView) -> list[str]:
    """The app's queues, then any other queue registered in its namespace (a partitioned
    queue the app does not declare gets the partitions its workers registered)."""
    client = app.connection.redis
    with app.connection.translate_errors():
        names = commands.registered(client, queue_registry(app.namespace))
        partitioned = commands.registered_partitions(client, partitions_registry(app.namespace))
    declared = app.queues()
    for name, count in partitioned.items():
        queue = name.decode()
        if queue not in declared and app.partitions(queue) == 1 and NAME.fullmatch(queue):
            app.queue(queue, partitions=int(count))
    registered = sorted({base_queue(name.decode()) for name in names})
    return list(dict.fromkeys([*declared, *registered]))


def _unknown(kind: str, name: str, namespace: str, known: Sequence[str]) -> UnknownQueue:
    return UnknownQueue(
        f"unknown {kind} {name!r}: namespace {namespace!r} knows {', '.join(known) or 'none'}"
    )


def check_known_queue(app: NamespaceView, name: str) -> None:
    """ConfigurationError for a name no queue can have; UnknownQueue, listing the known
    ones, unless `name` is one of `known_queues` (or a partition of one: `orders~3`)."""
    check_queue(name)
    known = known_queues(app)
    base, number = base_queue(name), partition_number(name)
    if base in known and (name == base or (number is not None and number < app.partitions(base))):
        return
    raise _unknown("queue", name, app.namespace, known)


def check_subscriber_group(app: NamespaceView, topic: str, group: str) -> None:
    """UnknownQueue, listing the known ones, unless `topic` is one of `known_topics` and
    `group` one of its subscriber groups (the app's, or one Redis has); ConfigurationError
    for a name neither can have."""
    check_name("topic", topic)
    check_name("group", group)
    topics = known_topics(app)
    if topic not in topics:
        raise _unknown("topic", topic, app.namespace, topics)
    declared = [g for t, g in app.subscriber_groups() if t == topic]
    with app.connection.translate_errors():
        existing = commands.group_names(
            app.connection.redis, TopicKeys(app.namespace, topic).stream
        )
    groups = list(dict.fromkeys([*declared, *sorted(existing)]))
    if group not in groups:
        raise UnknownQueue(
            f"unknown subscriber group {group!r} of topic {topic!r}: it has "
            f"{', '.join(groups) or 'none'}"
        )
