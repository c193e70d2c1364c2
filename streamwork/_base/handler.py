"""What tasks and subscribers share: their options, declared once, and the shape of a handler.

`HandlerArgs` lists the keyword arguments that say how a handler's messages are run
(`@app.task`, `@app.subscriber` and the features to come take them as `**options`);
`HandlerOptions` is their checked, resolved form, filled in from the App's `Defaults`.
`Handler` is what the worker needs of a task or a subscriber. Nothing here runs a handler
or talks to Redis.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

from ..errors import ConfigurationError
from .settings import AckMode, Backoff, Duration, check_ack_mode, to_seconds


class HandlerArgs(TypedDict, total=False):
    """How a handler's messages are acknowledged, retried and bounded (all optional: the
    App's defaults fill in what is not given)."""

    ack_mode: AckMode
    max_retries: int
    max_deliveries: int
    retry_on: tuple[type[BaseException], ...]
    backoff: Backoff
    retry_delay: Duration
    expires: Duration
    dead_letter_expired: bool
    timeout: Duration
    rate_limit: str
    rate_burst: int
    concurrency_limit: int
    priority: Priority
    fair_by: str | Callable[..., Any]
    per_key_concurrency: int
    per_key_rate_limit: str
    batch_size: int
    batch_wait: Duration


Priority = Literal["high", "default", "low"]
BANDS: tuple[Priority, ...] = ("high", "default", "low")
"""Priority bands, served in this order (each a stream of its own)."""


def check_priority(priority: Any) -> Priority:
    if priority not in BANDS:
        raise ConfigurationError(f"priority must be 'high', 'default' or 'low', got {priority!r}")
    return priority  # type: ignore[no-any-return]


PERIODS = {"s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*")


@dataclass(frozen=True)
class Rate:
    """A rate limit as the start step applies it (GCRA): one start per `interval_ms`, and
    up to `tolerance_ms` of them early (the burst)."""

    text: str
    """As declared: "100/s"."""
    per_second: float
    interval_ms: float
    tolerance_ms: float

    @classmethod
    def parse(cls, text: str, burst: int | None = None) -> Rate:
        """`"100/s"`, `"10/m"`, `"1000/h"`. Without `burst`, as many at once as keeps any
        one-second window within the rate plus 20% (the first one included)."""
        found = RATE.fullmatch(text) if isinstance(text, str) else None
        count = float(found.group(1)) if found else 0.0
        if found is None or count <= 0:
            raise ConfigurationError(
                f"rate_limit must look like '100/s', '10/m' or '1000/h', got {text!r}"
            )
        interval = PERIODS[found.group(2)] / count
        per_second = 1000.0 / interval
        if burst is None:
            burst = max(1, int(0.2 * per_second))
        else:
            check_count("rate_burst", burst, 1)
        return cls(text.strip(), per_second, interval, (burst - 1) * interval)


@dataclass(frozen=True)
class Fair:
    """A fair task: its messages wait in one list per key and are fed to the queue one key
    after another, each key at most `concurrency` running and `rate` starting."""

    by: str | Callable[..., Any]
    """The argument whose value is the key, or a callable on (*args, **kwargs)."""
    concurrency: int | None = None
    rate: Rate | None = None


@dataclass(frozen=True)
class Batch:
    """A batch handler: it receives a list of up to `size` messages, gathered for at most
    `wait` seconds after the first one arrived."""

    size: int
    wait: float


DEFAULT_BATCH_WAIT = 1.0


def _batch(args: HandlerArgs, store_result: bool) -> Batch | None:
    size, wait = args.get("batch_size"), args.get("batch_wait")
    if size is None:
        if wait is not None:
            raise ConfigurationError("batch_wait needs a batch_size")
        return None
    check_count("batch_size", size, 1)
    refused = [
        name
        for name, given in (
            ("store_result", store_result),
            ("rate_limit", "rate_limit" in args),
            ("concurrency_limit", "concurrency_limit" in args),
            ("fair_by", "fair_by" in args),
        )
        if given
    ]
    if refused:
        raise ConfigurationError(
            f"a batch handler (batch_size) takes no {', '.join(refused)}: it receives a list "
            "of Messages and its outcome is per message"
        )
    seconds = (
        DEFAULT_BATCH_WAIT if wait is None else to_seconds("batch_wait", wait, allow_zero=True)
    )
    return Batch(size, seconds)


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
    retry_delay: float | None = None
    """Seconds before a retry that gives no delay of its own (None: the backoff's)."""
    expires: float | None = None
    """Seconds after its send by which a message must start, or never run (None: never)."""
    dead_letter_expired: bool = False
    """Whether an expired message is also moved to the dead letters (to inspect, replay)."""
    store_result: bool = False
    bind: bool = False
    rate: Rate | None = None
    """`rate_limit` (and `rate_burst`): starts per period, across every worker."""
    concurrency_limit: int | None = None
    """At most this many runs at once, across every worker."""
    priority: Priority | None = None
    """Its messages' band (None: not declared; its queue has bands if any task's is)."""
    fair: Fair | None = None
    """`fair_by` (with per_key_concurrency, per_key_rate_limit): round-robin between keys."""
    batch: Batch | None = None
    """`batch_size` (and `batch_wait`): the handler receives a list of Messages."""

    @property
    def is_limited(self) -> bool:
        """Whether the start step must admit its messages (a rate or a concurrency limit)."""
        return self.rate is not None or self.concurrency_limit is not None

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
        known = [*HandlerArgs.__annotations__, "queue", "name", "bind", "store_result"]
        unknown = set(args) - set(known)
        if unknown:
            said = []
            for name in sorted(unknown):
                close = difflib.get_close_matches(name, known, n=1)
                said.append(f"{name} (did you mean {close[0]}?)" if close else name)
            raise ConfigurationError(f"unknown handler option(s): {', '.join(said)}")
        timeout, retry_delay = args.get("timeout"), args.get("retry_delay")
        expires = args.get("expires")
        retry_on = args.get("retry_on")
        rate_limit, burst = args.get("rate_limit"), args.get("rate_burst")
        if burst is not None and rate_limit is None:
            raise ConfigurationError("rate_burst needs a rate_limit")
        concurrency = args.get("concurrency_limit")
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
            retry_delay=None if retry_delay is None else to_seconds("retry_delay", retry_delay),
            expires=None if expires is None else to_seconds("expires", expires, allow_zero=False),
            dead_letter_expired=_flag("dead_letter_expired", args.get("dead_letter_expired")),
            store_result=store_result,
            bind=bind,
            rate=None if rate_limit is None else Rate.parse(rate_limit, burst),
            concurrency_limit=None
            if concurrency is None
            else check_count("concurrency_limit", concurrency, 1),
            priority=None if "priority" not in args else check_priority(args["priority"]),
            fair=_fair(args),
            batch=_batch(args, store_result),
        )


def _flag(name: str, value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def _fair(args: HandlerArgs) -> Fair | None:
    by = args.get("fair_by")
    if by is None:
        for name in ("per_key_concurrency", "per_key_rate_limit"):
            if name in args:
                raise ConfigurationError(f"{name} needs fair_by")
        return None
    if not (isinstance(by, str) and by.isidentifier()) and not callable(by):
        raise ConfigurationError(
            f"fair_by must name an argument of the task, or be a callable, got {by!r}"
        )
    concurrency = args.get("per_key_concurrency")
    rate = args.get("per_key_rate_limit")
    if rate is not None and "rate_limit" in args:
        raise ConfigurationError("give rate_limit or per_key_rate_limit, not both")
    return Fair(
        by,
        None if concurrency is None else check_count("per_key_concurrency", concurrency, 1),
        None if rate is None else Rate.parse(rate),
    )


class Handler(Protocol):
    """What the worker needs of a task or a subscriber to run its messages."""

    name: str
    fn: Callable[..., Any]
    options: HandlerOptions
    is_async: bool

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise BadArguments unless the call fits the handler."""
