"""Topics: subscriber groups (`@app.subscriber`), publishing, and retention settings.

A topic is one stream read by one consumer group per subscriber group: every group gets
every event, and inside a group the events are shared between its consumers. Subscribers
run through exactly the same worker code as tasks (acks, retries, dead letters); this
module only declares them and writes events. It never runs a handler.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import metrics, protocol, redis_ops
from .errors import ConfigurationError
from .keys import Source, TopicKeys, topic_sources
from .settings import to_seconds
from .task import write_batches

if TYPE_CHECKING:
    from .app import App
    from .task import TaskOptions

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
        app: App,
        fn: Callable[..., Any],
        topic: str,
        group: str,
        options: TaskOptions,
        start: str,
    ) -> None:
        if start not in STARTS:
            raise ConfigurationError(f"start must be 'new' or 'beginning', got {start!r}")
        try:
            inspect.signature(fn).bind(None)
        except TypeError:
            raise ConfigurationError(
                f"subscriber {fn.__name__!r} must take exactly one argument: the Message"
            ) from None
        self.app = app
        self.fn = fn
        self.topic = topic
        self.group = group
        self.options = options
        self.start = start
        self.name = f"{topic}/{group}"
        self.is_async = inspect.iscoroutinefunction(fn)
        self.sources: tuple[Source, Source] = topic_sources(
            app.namespace, topic, group, from_beginning=start == "beginning"
        )
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Subscriber {self.fn.__name__} topic={self.topic} group={self.group}>"

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Events carry a payload, not arguments: nothing to check."""


def event(
    app: App, topic: str, payload: Any, headers: dict[str, Any] | None, due_ms: int | None = None
) -> tuple[str, bytes]:
    """The id and encoded message of one event (ready now, or at `due_ms`)."""
    event_id = protocol.new_id()
    body = protocol.encode(
        protocol.Envelope(
            id=event_id,
            topic=topic,
            payload=payload,
            headers=headers or {},
            enqueued_ms=due_ms or protocol.now_ms(),
        )
    )
    return event_id, protocol.check_size(
        body, app.max_message_bytes, f"an event of topic {topic!r}"
    )


def _write(client: Any, keys: TopicKeys, body: bytes, due_ms: int | None) -> Any:
    if due_ms is None:
        return redis_ops.append(client, keys.stream, body)
    return redis_ops.schedule(client, keys.delayed, body, due_ms)


def publish(
    app: App, topic: str, payload: Any, headers: dict[str, Any] | None, due_ms: int | None
) -> str:
    event_id, body = event(app, topic, payload, headers, due_ms)
    started = time.perf_counter()
    with app.translate_errors():
        app.register_topic_sync(topic)
        _write(app.redis, TopicKeys(app.namespace, topic), body, due_ms)
    metrics.sent(topic, 1, time.perf_counter() - started)
    return event_id


async def publish_async(
    app: App, topic: str, payload: Any, headers: dict[str, Any] | None, due_ms: int | None
) -> str:
    event_id, body = event(app, topic, payload, headers, due_ms)
    started = time.perf_counter()
    with app.translate_errors():
        client = app.async_redis()
        await app.register_topic_async(topic, client)
        await _write(client, TopicKeys(app.namespace, topic), body, due_ms)
    metrics.sent(topic, 1, time.perf_counter() - started)
    return event_id


def publish_many(
    app: App, topic: str, payloads: Iterable[Any], headers: dict[str, Any] | None
) -> list[str]:
    encoded = [event(app, topic, payload, headers) for payload in payloads]
    keys = TopicKeys(app.namespace, topic)
    started = time.perf_counter()
    with app.translate_errors():
        app.register_topic_sync(topic)
    ids = [event_id for event_id, _ in encoded]
    write_batches(
        app,
        [body for _, body in encoded],
        lambda bodies: app.scripts.add_many(keys.stream, bodies),
        ids,
        "event(s)",
    )
    metrics.sent(topic, len(encoded), time.perf_counter() - started)
    return ids
