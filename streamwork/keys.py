"""Every Redis key name streamwork uses, in one place.

All keys of one queue share the hash tag `{queue}` so that each multi-key step (a Lua
script, a MULTI) stays inside one Redis Cluster slot. Nothing here talks to Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigurationError

QUEUE_GROUP = "workers"
"""The consumer group that reads a queue: one group, so each message goes to one worker."""

_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


def check_name(kind: str, name: str) -> str:
    """Return `name` if it can be a queue, topic, group or namespace name, else raise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"invalid {kind} name {name!r}: use 1-200 letters, digits, '_', '.', ':' or '-'"
        )
    return name


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue (or topic): its stream, delayed set and dead-letter stream."""

    namespace: str
    queue: str

    @property
    def tag(self) -> str:
        return f"{self.namespace}:{{{self.queue}}}"

    @property
    def stream(self) -> str:
        return f"{self.tag}:stream"

    @property
    def delayed(self) -> str:
        return f"{self.tag}:delayed"

    @property
    def dead_letters(self) -> str:
        return f"{self.tag}:dlq"

    @property
    def stats(self) -> str:
        return f"{self.tag}:stats"

    def result(self, task_id: str) -> str:
        return f"{self.tag}:result:{task_id}"

    def dedupe(self, key: str) -> str:
        return f"{self.tag}:dedupe:{key}"


def queue_registry(namespace: str) -> str:
    """The set of every queue name that was sent to or served in `namespace`."""
    return f"{namespace}:queues"


@dataclass(frozen=True)
class Source:
    """A stream as one consumer group reads it: a queue (its one group), or a topic's group.

    Queues delete each entry once acknowledged, so their stream holds only backlog and
    in-flight work; a topic keeps entries until every group is done with them.
    """

    keys: QueueKeys
    group: str = QUEUE_GROUP
    deletes_on_ack: bool = True

    @property
    def name(self) -> str:
        return self.keys.queue
