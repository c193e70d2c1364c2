"""The App's topics: `@subscriber`, retention, and publishing (a base class of App)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._base import tracing
from .._base.handler import Defaults, HandlerArgs, HandlerOptions
from .._base.keys import (
    TopicKeys,
    check_name,
)
from .._base.settings import Duration, to_seconds
from .._send.producer import Plan, Producer, due_ms
from ..errors import ConfigurationError
from .parts import AppParts
from .topic import Retention, Subscriber, destination, event

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_RETENTION = Retention()


class TopicMethods(AppParts):
    """The App's topic calls (a base class of App)."""

    defaults: Defaults
    subscribers: dict[tuple[str, str], Subscriber]
    retention: dict[str, Retention]
    _producer: Producer

    def subscriber(
        self,
        topic: str,
        *,
        group: str,
        start: str = "new",
        **options: Unpack[HandlerArgs],
    ) -> Callable[[Callable[..., Any]], Subscriber]:
        """Declare a subscriber: `@app.subscriber("orders.created", group="billing")`.

        Its function takes one `Message` (`message.payload`, `.headers`, `.ack()` in manual
        mode). Every group receives every event; inside a group each event goes to one
        consumer. A group created after events were published starts with new events, or
        with `start="beginning"` from the oldest event the topic still retains. `options`
        are the handler options, as for `task`.
        """

        def declare(function: Callable[..., Any]) -> Subscriber:
            key = (check_name("topic", topic), check_name("group", group))
            if key in self.subscribers:
                raise ConfigurationError(
                    f"topic {topic!r} already has a subscriber group {group!r}"
                )
            resolved = HandlerOptions.resolve(self.defaults, topic, options, bind=True)
            declared = Subscriber(
                self.namespace,
                function,
                topic,
                group,
                resolved,
                start,
                self.events_cap(f"{topic}/{group}"),
            )
            self.subscribers[key] = declared
            return declared

        return declare

    def topic(
        self,
        name: str,
        *,
        max_len: int | None = None,
        max_age: Duration | None = 86400.0,
        drop_unread: bool = False,
    ) -> Retention:
        """Set how long topic `name` keeps events (default: one day, never unread ones)."""
        age = None if max_age is None else to_seconds("max_age", max_age, allow_zero=False)
        retention = Retention(max_len=max_len, max_age=age, drop_unread=drop_unread)
        self.retention[check_name("topic", name)] = retention
        return retention

    def retention_of(self, topic: str) -> Retention:
        return self.retention.get(topic, DEFAULT_RETENTION)

    def subscriber_groups(self) -> list[tuple[str, str]]:
        """(topic, group) of each subscriber, in declaration order."""
        return list(self.subscribers)

    def topics(self) -> list[str]:
        """The topics this app's subscribers read, in declaration order."""
        return list(dict.fromkeys(topic for topic, _ in self.subscribers))

    def _plan_publish(
        self,
        topic: str,
        payloads: list[Any],
        headers: dict[str, Any] | None,
        due: int | None,
        is_many: bool,
        creations: tracing.Creations | None = None,
    ) -> Any:
        """The plan of a publish: one event (its trace context the active span's, the
        send span), or many (each its own, from `creations`)."""
        topic = check_name("topic", topic)
        envelopes = (
            event(topic, payload, headers, due, None if creations is None else creations.next())
            for payload in payloads
        )
        what = f"an event of topic {topic!r}"
        target = destination(self.namespace, topic)
        return self._producer.plan(target, envelopes, what, due=due, is_many=is_many)

    def publish(
        self,
        topic: str,
        payload: Any,
        *,
        headers: dict[str, Any] | None = None,
        delay: Duration | None = None,
        eta: datetime | None = None,
    ) -> str:
        """Publish one event to `topic` (every subscriber group gets it); returns its id.

        With `delay` or `eta` the event is published when due (workers serving the topic
        move it), and then reaches every group.
        """
        with self._planned_one(topic, payload, headers, due_ms(delay, eta)) as plan:
            return self._producer.write(plan)

    async def publish_async(
        self,
        topic: str,
        payload: Any,
        *,
        headers: dict[str, Any] | None = None,
        delay: Duration | None = None,
        eta: datetime | None = None,
    ) -> str:
        """Like `publish`, for asyncio code."""
        with self._planned_one(topic, payload, headers, due_ms(delay, eta)) as plan:
            return await self._producer.write_async(plan)

    def publish_many(
        self, topic: str, payloads: Iterable[Any], *, headers: dict[str, Any] | None = None
    ) -> list[str]:
        """Publish one event per payload: one command (one round trip) per 1000 events.

        If Redis fails after some batches were published, SendIncomplete says which
        (`.sent` event ids, `.index` of the first payload not published).
        """
        with self._planned_many(topic, payloads, headers) as plan:
            self._producer.write(plan)
        return list(plan.ids)

    async def publish_many_async(
        self, topic: str, payloads: Iterable[Any], *, headers: dict[str, Any] | None = None
    ) -> list[str]:
        """Like `publish_many`, for asyncio code."""
        with self._planned_many(topic, payloads, headers) as plan:
            await self._producer.write_async(plan)
        return list(plan.ids)

    def _planned_one(
        self, topic: str, payload: Any, headers: dict[str, Any] | None, due: int | None
    ) -> contextlib.AbstractContextManager[Plan]:
        """The plan of a `publish`, made inside its send span (tracing.planned_send)."""
        return tracing.planned_send(
            topic,
            self._producer.server,
            lambda: self._plan_publish(topic, [payload], headers, due, False),
        )

    def _planned_many(
        self, topic: str, payloads: Iterable[Any], headers: dict[str, Any] | None
    ) -> contextlib.AbstractContextManager[Plan]:
        """The plan of a `publish_many`, made inside its send span (tracing.planned_many)."""
        return tracing.planned_many(
            topic,
            self._producer.server,
            lambda creations: self._plan_publish(
                topic, list(payloads), headers, None, True, creations
            ),
        )

    def topic_keys(self, topic: str) -> TopicKeys:
        return TopicKeys(self.namespace, check_name("topic", topic))
