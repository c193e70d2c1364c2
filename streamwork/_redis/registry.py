"""What an app's namespace has registered: the queues and topics its workers and producers
named, and the partitions of each partitioned queue — listed after the ones the app itself
declares. Every tool that lists queues (stats, status, events, dead letters, the console,
the metrics server) starts here. It reads; it never registers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._base.keys import NAME, base_queue, partitions_registry, queue_registry, topic_registry
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
