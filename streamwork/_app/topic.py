"""Topics: subscriber groups (`@app.subscriber`), publishing, and retention settings.

A topic is one stream read by one consumer group per subscriber group: every group gets
every event, and inside a group the events are shared between its consumers. Subscribers
run through exactly the same worker code as tasks (acks, retries, dead letters); this
module declares them and builds events (producer.py writes them). It never runs a handler.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._base import protocol, tracing
from .._base.handler import HandlerOptions
from .._base.keys import Source, TopicKeys, topic_registry, topic_sources
from .._base.settings import to_seconds
from .._send.producer import Destination
from ..errors import ConfigurationError

STARTS = ("new", "beginning")


@dataclass(frozen=True)
class Retention:
    """How long a topic keeps events that every subscriber group is done with.

    Retention never drops an event some group still has pending or has not yet read:
    such events are held and reported (a warning and the metric
    `streamwork_topic_held_entries`) — unless `drop_unread`, which drops them (counted in
    `streamwork_topic_dropped_entries_total`).
    """

    max_len: int | None = None
    max_age: float | None = 86400.0
    drop_unread: bool = False

    def __post_init__(self) -> None:
        if self.max_len is not None and (not isinstance(self.max_len, int) or self.max_len < 1):
            raise ConfigurationError(f"max_len must be at least 1, got {self.max_len!r}")
        if self.max_age is not None:
            age = to_seconds("max_age", self.max_age, allow_zero=False)
            object.__setattr__(self, "max_age", age)


class Subscriber:
    """A function that receives every event of `topic` delivered to subscriber `group`."""

    def __init__(
        self,
        namespace: str,
        fn: Callable[..., Any],
        topic: str,
        group: str,
        options: HandlerOptions,
        start: str,
        events_max_len: int = 0,
    ) -> None:
        if start not in STARTS:
            raise ConfigurationError(f"start must be 'new' or 'beginning', got {start!r}")
        try:
            inspect.signature(fn).bind(None)
        except TypeError:
            raise ConfigurationError(
                f"subscriber {fn.__name__!r} must take exactly one argument: the Message"
            ) from None
        self.fn = fn
        self.topic = topic
        self.group = group
        self.options = options
        self.start = start
        self.name = f"{topic}/{group}"
        self.is_async = inspect.iscoroutinefunction(fn)
        self.sources: tuple[Source, Source] = topic_sources(
            namespace,
            topic,
            group,
            from_beginning=start == "beginning",
            events_max_len=events_max_len,
        )
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Subscriber {self.fn.__name__} topic={self.topic} group={self.group}>"

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Events carry a payload, not arguments: nothing to check."""


def destination(namespace: str, topic: str) -> Destination:
    """Where events published to `topic` go: its stream, or its delayed set until due."""
    keys = TopicKeys(namespace, topic)
    return Destination(
        name=topic, registry=topic_registry(namespace), stream=keys.stream, delayed=keys.delayed
    )


def event(
    topic: str,
    payload: Any,
    headers: dict[str, Any] | None,
    due_ms: int | None = None,
    trace_context: dict[str, str] | None = None,
) -> protocol.Envelope:
    """The envelope of one event (ready now, or at `due_ms`)."""
    return protocol.Envelope(
        id=protocol.new_id(),
        topic=topic,
        payload=payload,
        headers=tracing.with_context(headers, trace_context),
        enqueued_ms=due_ms or protocol.now_ms(),
    )
