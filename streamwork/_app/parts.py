"""What the App's groups of calls (ScheduleMethods, TopicMethods, QueueMethods: base
classes of App, one per feature) use of the App, declared once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._redis.connection import Connection
    from .task import Task


class AppParts:
    """The App's attributes its groups of calls read (the App sets them)."""

    namespace: str
    connection: Connection
    tasks: dict[str, Task]

    def events_cap(self, queue: str) -> int:
        raise NotImplementedError  # App's
