"""What one worker process serves: the queues and topics it was asked for (or every one the
app has), checked against the app, as the Sources it reads; and its consumer name.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._base.keys import Source
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .._app.app import App


def chosen_sources(
    app: App, queues: Sequence[str] | None, topics: Sequence[str] | None
) -> tuple[list[Source], list[str]]:
    """(the sources to read, the topics served): every queue and topic of the app unless
    `queues` or `topics` name some; ConfigurationError for a name the app does not have."""
    is_everything = not queues and not topics
    chosen_queues = _choose("queue", queues, app.queues(), is_everything, "tasks use")
    chosen_topics = _choose("topic", topics, app.topics(), is_everything, "subscribers read")
    if not chosen_queues and not chosen_topics:
        raise ConfigurationError(
            "the app declares no tasks or subscribers, so there is nothing to serve"
        )
    sources = [source for q in chosen_queues for source in app.queue_sources(q)]
    for (topic, _), subscriber in app.subscribers.items():
        if topic in chosen_topics:
            sources += subscriber.sources
    return sources, chosen_topics


def _choose(
    kind: str, asked: Sequence[str] | None, declared: list[str], is_everything: bool, verb: str
) -> list[str]:
    if is_everything:
        return declared
    chosen = list(dict.fromkeys(asked or ()))
    unknown = [name for name in chosen if name not in declared]
    if unknown:
        raise ConfigurationError(
            f"unknown {kind} {unknown[0]!r}: this app's {verb} {', '.join(declared) or 'none'}"
        )
    return chosen


def consumer_name() -> str:
    """A name unique to this process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
