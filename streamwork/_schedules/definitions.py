"""What a schedule is (cron or every, time zone, start/end, catch-up, overlap) and how its
ticks are computed (croniter, in the schedule's time zone, for cron): `Definition`,
`define` (the checks of a declaration) and the message of one tick. Pure: no Redis.
"""

from __future__ import annotations

import hashlib
import logging
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypedDict

import msgpack
from croniter import CroniterError, croniter

from .._base import protocol
from .._base.keys import check_name
from .._base.settings import Duration, to_seconds
from ..errors import ConfigurationError

log = logging.getLogger("streamwork.schedules")

CatchUp = Literal["latest", "none", "all"]
CATCH_UP = ("latest", "none", "all")
CATCH_UP_LIMIT = 100
"""The most missed ticks `catch_up="all"` enqueues (the latest ones)."""
ON_TIME_MS = 10_000
"""With `catch_up="none"`, a tick runs if it is the only one due and at most this late."""
COUNT_LIMIT = 10_000
"""Missed ticks are counted up to this many (a schedule down for longer counts this)."""
CRON_HORIZON_YEARS = 10
"""A cron with no tick within this many years is refused (Feb 29 ticks every 4 to 8)."""


class ScheduleError(ConfigurationError):
    """A schedule whose ticks cannot be planned (a cron with no tick in sight)."""


def _cron_tick(cron: str, tz: str, after_ms: int, *, previous: bool = False) -> int:
    """The cron's first tick after `after_ms` (or last before, with `previous`), Unix ms.

    Raises ScheduleError, never croniter's own errors: one schedule that cannot tick must
    fail on its own, not stop a worker's other schedules."""
    zone = zoneinfo.ZoneInfo(tz)
    start = datetime.fromtimestamp(after_ms / 1000, zone)
    try:
        found = croniter(
            cron,
            start,
            second_at_beginning=len(cron.split()) == 6,
            max_years_between_matches=CRON_HORIZON_YEARS,
        )
        tick = found.get_prev(datetime) if previous else found.get_next(datetime)
    except (CroniterError, ValueError, OverflowError) as exc:
        raise ScheduleError(
            f"cron {cron!r} has no tick within {CRON_HORIZON_YEARS} years of "
            f"{start.isoformat(timespec='seconds')} ({type(exc).__name__}: {exc})"
        ) from None
    return int(tick.timestamp() * 1000)


def _ms(value: datetime | None, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigurationError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return int(value.timestamp() * 1000)


def _utc(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc)


@dataclass(frozen=True)
class Definition:
    """What decides a schedule's ticks and messages: validated, comparable by `rev`."""

    id: str
    task: str
    queue: str
    cron: str | None
    every_ms: int | None
    tz: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    start_ms: int | None = None
    end_ms: int | None = None
    catch_up: CatchUp = "latest"
    overlap: bool = True

    @property
    def rev(self) -> str:
        """A digest of every field: equal definitions have equal revisions."""
        packed = msgpack.packb(
            [
                self.task,
                self.queue,
                self.cron,
                self.every_ms,
                self.tz,
                list(self.args),
                self.kwargs,
                self.start_ms,
                self.end_ms,
                self.catch_up,
                self.overlap,
            ],
            use_bin_type=True,
        )
        return hashlib.sha1(packed).hexdigest()[:16]

    def fields(self) -> dict[str, Any]:
        """The definition as hash fields."""
        return {
            "task": self.task,
            "queue": self.queue,
            "cron": self.cron or "",
            "every_ms": self.every_ms or "",
            "tz": self.tz,
            "args": msgpack.packb(list(self.args), use_bin_type=True),
            "kwargs": msgpack.packb(self.kwargs, use_bin_type=True),
            "start_ms": "" if self.start_ms is None else self.start_ms,
            "end_ms": "" if self.end_ms is None else self.end_ms,
            "catch_up": self.catch_up,
            "overlap": "1" if self.overlap else "0",
        }

    @classmethod
    def from_fields(cls, id: str, raw: dict[bytes, bytes]) -> Definition:
        """The definition stored in a schedule's hash (raise ValueError if it is not one)."""

        def text(name: str) -> str:
            return raw.get(name.encode(), b"").decode()

        def number(name: str) -> int | None:
            value = text(name)
            return int(value) if value else None

        catch_up = text("catch_up")
        if catch_up not in CATCH_UP or not text("task"):
            raise ValueError("not a schedule this version of streamwork can read")
        return cls(
            id=id,
            task=text("task"),
            queue=text("queue"),
            cron=text("cron") or None,
            every_ms=number("every_ms"),
            tz=text("tz") or "UTC",
            args=tuple(msgpack.unpackb(raw.get(b"args", b"\x90"), raw=False)),
            kwargs=msgpack.unpackb(raw.get(b"kwargs", b"\x80"), raw=False),
            start_ms=number("start_ms"),
            end_ms=number("end_ms"),
            catch_up=catch_up,  # type: ignore[arg-type]
            overlap=text("overlap") != "0",
        )

    # -- ticks --------------------------------------------------------------------------

    def next_after(self, after_ms: int) -> int | None:
        """The first tick strictly after `after_ms` (Unix ms), or None past `end`."""
        if self.start_ms is not None and after_ms < self.start_ms:
            # the start itself is a tick of an `every` schedule; cron ticks from it on
            after_ms = self.start_ms - 1
        if self.every_ms is not None:
            anchor = self.start_ms if self.start_ms is not None else None
            if anchor is None:
                tick = after_ms + self.every_ms
            else:
                periods = (after_ms - anchor) // self.every_ms + 1
                tick = anchor + max(0, periods) * self.every_ms
        else:
            assert self.cron is not None
            tick = _cron_tick(self.cron, self.tz, after_ms)
        if self.end_ms is not None and tick > self.end_ms:
            return None
        return tick

    def last_at_or_before(self, due_ms: int, now_ms: int) -> int:
        """The last tick at or before `now_ms`, counting from the tick due at `due_ms`."""
        if self.every_ms is not None:
            return due_ms + (now_ms - due_ms) // self.every_ms * self.every_ms
        assert self.cron is not None
        return max(due_ms, _cron_tick(self.cron, self.tz, now_ms + 1, previous=True))

    def period_ms(self, now_ms: int) -> int:
        """The time between two ticks (for cron: the next two from now, an estimate)."""
        if self.every_ms is not None:
            return self.every_ms
        unbounded = replace(self, start_ms=None, end_ms=None)
        try:
            first = unbounded.next_after(now_ms)
            second = unbounded.next_after(first) if first is not None else None
        except ScheduleError:
            return 86_400_000
        return max(1000, (second or 0) - (first or 0)) if second else 86_400_000

    def runs_from(self, first_ms: int | None, count: int = 3) -> list[int]:
        """Up to `count` tick times from `first_ms` on (fewer past the end, or if the
        schedule cannot plan further)."""
        runs: list[int] = []
        tick = first_ms
        try:
            while tick is not None and len(runs) < count:
                runs.append(tick)
                tick = self.next_after(tick)
        except ScheduleError:
            pass
        return runs

    def plan(self, due_ms: int, now_ms: int) -> tuple[list[int], int, int | None]:
        """For a schedule found due at `due_ms` at `now_ms`: the ticks to enqueue, how many
        are missed (not enqueued, by the catch-up policy), and the next due time."""
        ticks = [due_ms]
        nxt = self.next_after(due_ms)
        counted = 1
        while nxt is not None and nxt <= now_ms:
            counted += 1
            ticks.append(nxt)
            if len(ticks) > CATCH_UP_LIMIT:
                del ticks[0]
            if counted >= COUNT_LIMIT:  # far behind: jump to the last tick due now
                ticks[-1] = self.last_at_or_before(nxt, now_ms)
                nxt = self.next_after(ticks[-1])
                break
            nxt = self.next_after(nxt)
        latest = ticks[-1]
        if self.catch_up == "all":
            chosen = ticks
        elif self.catch_up == "latest":
            chosen = [latest]
        elif counted == 1 and now_ms - latest <= ON_TIME_MS:
            chosen = [latest]  # "none": the one tick due now, found on time, is not missed
        else:
            chosen = []
        return chosen, counted - len(chosen), nxt


class ScheduleArgs(TypedDict, total=False):
    """What decides a schedule's ticks and messages (`app.schedule`, `@app.periodic`,
    `app.add_schedule`): exactly one of `cron` / `every`; the rest optional."""

    cron: str
    """5 fields, or 6 with seconds first, in time zone `tz`."""
    every: Duration
    """Seconds (or a timedelta) between ticks, at least one."""
    tz: str
    """An IANA time zone ("UTC" when not given)."""
    args: Iterable[Any]
    kwargs: dict[str, Any]
    start: datetime
    end: datetime
    catch_up: CatchUp
    """What missed ticks become: "latest" (default), "none", "all" (up to 100)."""
    overlap: bool
    """False: skip a tick while the previous run is not over (default True)."""


SCHEDULE_ARGS = frozenset(ScheduleArgs.__annotations__)


def define(
    id: str,
    task: str,
    queue: str,
    check_arguments: Callable[[tuple[Any, ...], dict[str, Any]], None],
    rule: ScheduleArgs,
) -> Definition:
    """A checked definition; raise ConfigurationError naming what is wrong."""
    unknown = set(rule) - SCHEDULE_ARGS
    if unknown:
        raise ConfigurationError(
            f"schedule {id!r}: unknown argument(s): {', '.join(sorted(unknown))}"
        )
    cron, every = rule.get("cron"), rule.get("every")
    tz, catch_up = rule.get("tz", "UTC"), rule.get("catch_up", "latest")
    check_name("schedule", id)
    if (cron is None) == (every is None):
        raise ConfigurationError(f"schedule {id!r}: give exactly one of cron= or every=")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(f"schedule {id!r}: unknown time zone {tz!r}") from None
    every_ms = None
    if cron is not None:
        if not isinstance(cron, str) or len(cron.split()) not in (5, 6):
            raise ConfigurationError(
                f"schedule {id!r}: cron must have 5 fields (minute hour day month weekday) "
                f"or 6 (seconds first), got {cron!r}"
            )
        if not croniter.is_valid(cron, second_at_beginning=len(cron.split()) == 6):
            raise ConfigurationError(f"schedule {id!r}: invalid cron expression {cron!r}")
        _check_cron_ticks(id, cron, tz, rule.get("start"))
    else:
        assert every is not None
        try:
            every_ms = round(to_seconds("every", every, allow_zero=False) * 1000)
        except ConfigurationError as exc:
            raise ConfigurationError(f"schedule {id!r}: {exc}") from None
        if every_ms < 1000:
            raise ConfigurationError(f"schedule {id!r}: every must be at least 1 second")
    if catch_up not in CATCH_UP:
        raise ConfigurationError(
            f"schedule {id!r}: catch_up must be one of {', '.join(CATCH_UP)}, got {catch_up!r}"
        )
    call_args = tuple(rule.get("args", ()))
    call_kwargs = dict(rule.get("kwargs") or {})
    check_arguments(call_args, call_kwargs)
    protocol.check_plain(call_args, "args")
    protocol.check_plain(call_kwargs, "kwargs")
    try:
        start_ms, end_ms = _ms(rule.get("start"), "start"), _ms(rule.get("end"), "end")
    except ConfigurationError as exc:
        raise ConfigurationError(f"schedule {id!r}: {exc}") from None
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ConfigurationError(f"schedule {id!r}: end must be after start")
    return Definition(
        id=id,
        task=task,
        queue=queue,
        cron=cron,
        every_ms=every_ms,
        tz=tz,
        args=call_args,
        kwargs=call_kwargs,
        start_ms=start_ms,
        end_ms=end_ms,
        catch_up=catch_up,
        overlap=bool(rule.get("overlap", True)),
    )


def _check_cron_ticks(id: str, cron: str, tz: str, start: datetime | None) -> None:
    """Refuse a cron that never ticks (Feb 31); warn about a 6-field cron that looks
    written seconds-last (croniter's own convention) by ticking more than a day apart."""
    after = protocol.now_ms()
    if isinstance(start, datetime) and start.tzinfo is not None:
        after = max(after, int(start.timestamp() * 1000))
    try:
        first = _cron_tick(cron, tz, after)
        second = _cron_tick(cron, tz, first)
    except ScheduleError as exc:
        raise ScheduleError(f"schedule {id!r}: {exc}") from None
    if len(cron.split()) == 6 and second - first > 86_400_000:
        log.warning(
            "schedule %s: the 6-field cron %r is read seconds first "
            "(second minute hour day month weekday) and ticks %s apart; croniter's own "
            "convention puts seconds last",
            id,
            cron,
            timedelta(milliseconds=second - first),
        )


def tick_body(definition: Definition, message_id: str, due_ms: int, now_ms: int) -> bytes:
    """The message of one tick: headers `schedule` (id) and `scheduled_for` (due, Unix ms)."""
    return protocol.encode(
        protocol.Envelope(
            id=message_id,
            task=definition.task,
            args=definition.args,
            kwargs=definition.kwargs,
            headers={protocol.SCHEDULE: definition.id, protocol.SCHEDULED_FOR: due_ms},
            enqueued_ms=now_ms,
        )
    )


def claim_ttl_ms(definition: Definition, now_ms: int) -> int:
    """How long a tick's claim key lives: two periods, between 10 s and a day."""
    return min(86_400_000, max(10_000, 2 * definition.period_ms(now_ms)))
