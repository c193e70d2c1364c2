"""What tasks and subscribers share: their options, declared once, and the shape of a handler.

`HandlerArgs` lists the keyword arguments that say how a handler's messages are run
(`@app.task`, `@app.subscriber` and the features to come take them as `**options`);
`HandlerOptions` is their checked, resolved form, filled in from the App's `Defaults`.
`Handler` is what the worker needs of a task or a subscriber. Nothing here runs a handler
or talks to Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

from .errors import ConfigurationError
from .settings import AckMode, Backoff, Duration, check_ack_mode, to_seconds


class HandlerArgs(TypedDict, total=False):
    """How a handler's messages are acknowledged, retried and bounded (all optional: the
    App's defaults fill in what is not given)."""

    ack_mode: AckMode
    max_retries: int
    max_deliveries: int
    retry_on: tuple[type[BaseException], ...]
    backoff: Backoff
    timeout: Duration


def check_count(name: str, value: int, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(f"{name} must be a whole number >= {least}, got {value!r}")
    return value


@dataclass(frozen=True)
class Defaults:
    """The App-wide defaults of every `HandlerArgs` option."""

    ack_mode: AckMode = "late"
    max_retries: int = 3
    max_deliveries: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        check_ack_mode(self.ack_mode)
        check_count("max_retries", self.max_retries, 0)
        check_count("max_deliveries", self.max_deliveries, 1)


@dataclass(frozen=True)
class HandlerOptions:
    """How a task's or subscriber's messages are queued, acknowledged and retried."""

    queue: str
    ack_mode: AckMode
    max_retries: int
    max_deliveries: int
    retry_on: tuple[type[BaseException], ...]
    backoff: Backoff
    timeout: float | None = None
    store_result: bool = False
    bind: bool = False

    @classmethod
    def resolve(
        cls,
        defaults: Defaults,
        queue: str,
        args: HandlerArgs,
        *,
        store_result: bool = False,
        bind: bool = False,
    ) -> HandlerOptions:
        """The options of one handler: those given in `args`, checked, else the defaults."""
        unknown = set(args) - set(HandlerArgs.__annotations__)
        if unknown:
            raise ConfigurationError(f"unknown handler option(s): {', '.join(sorted(unknown))}")
        timeout = args.get("timeout")
        retry_on = args.get("retry_on")
        return cls(
            queue=queue,
            ack_mode=check_ack_mode(args.get("ack_mode") or defaults.ack_mode),
            max_retries=check_count(
                "max_retries", args.get("max_retries", defaults.max_retries), 0
            ),
            max_deliveries=check_count(
                "max_deliveries", args.get("max_deliveries", defaults.max_deliveries), 1
            ),
            retry_on=defaults.retry_on if retry_on is None else tuple(retry_on),
            backoff=args.get("backoff") or defaults.backoff,
            timeout=None if timeout is None else to_seconds("timeout", timeout, allow_zero=False),
            store_result=store_result,
            bind=bind,
        )


class Handler(Protocol):
    """What the worker needs of a task or a subscriber to run its messages."""

    name: str
    fn: Callable[..., Any]
    options: HandlerOptions
    is_async: bool

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise BadArguments unless the call fits the handler."""

    def result_key(self, message_id: str) -> str:
        """Where the result of message `message_id` is stored (store_result handlers)."""
