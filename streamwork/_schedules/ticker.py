"""Ticker: enqueues the due ticks of a namespace's schedules, in every worker process.

At least every 0.5 s it reads, by Redis's clock, which schedules are due (a due set per
queue), plans the ticks to enqueue (catch-up policy) and hands them to one Lua step on the
queue's slot that checks the due time is still the one read, claims each tick (SET NX) and
XADDs its message, then moves the schedule on: any number of workers enqueue a tick once.
At a worker's start it reconciles the app's declared schedules. It never runs a handler and
never decides what a schedule is (schedules.py does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from .._base import metrics, protocol
from .._base.keys import ScheduleKeys, queue_registry, schedule_index
from .._redis import commands
from ..errors import StreamworkError
from .definitions import Definition, claim_ttl_ms, tick_body
from .schedules import TICK_EVERY

log = logging.getLogger("streamwork.ticker")


class Ticker:
    """Enqueues the due ticks of the schedules of `queues` (every queue of the namespace if
    None); reconciles an app's declared schedules. Runs on a worker's event loop, with its
    async client. A schedule whose queue no running worker serves is not ticked: its ticks
    are missed, and its catch-up policy applies when a worker for it starts."""

    def __init__(
        self,
        client: Any,
        scripts: Any,
        namespace: str,
        max_message_bytes: int,
        queues: Collection[str] | None = None,
        status_ttl_ms: int = 86_400_000,
        events_cap: Callable[[str], int] = lambda queue: 0,
        records_claims: bool = False,
    ) -> None:
        self._client = client
        self._status_ttl_ms = status_ttl_ms
        self._events_cap = events_cap
        self._queues = None if queues is None else frozenset(queues)
        self._scripts = scripts
        self.namespace = namespace
        self._max_message_bytes = max_message_bytes
        self._unreadable: set[tuple[str, bytes]] = set()
        self.enqueued = 0
        self.passes = 0
        """Looks at the due sets so far."""
        self.exclusive_enqueued = False
        """Set when a tick of a schedule with overlap=False was enqueued (run_until_idle
        runs it before ticking on)."""
        self._records_claims = records_claims
        self.claimed: list[tuple[ScheduleKeys, int]] = []
        """With `records_claims` (run_until_idle's tickers, for `rewind`; never a worker's,
        whose list would grow for ever): the claims of the ticks enqueued (keys, due)."""

    def _keys(self, queue: str, id: str) -> ScheduleKeys:
        return ScheduleKeys(self.namespace, queue, id)

    async def _index(self) -> dict[str, str]:
        raw = await commands.schedule_queues(self._client, schedule_index(self.namespace))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def _served(self) -> list[str]:
        """The queues holding schedules this ticker ticks: those of the queues it serves."""
        queues = set((await self._index()).values())
        return sorted(queues if self._queues is None else queues & self._queues)

    async def reconcile(
        self,
        declared: Sequence[Definition],
        owned_queues: Iterable[str],
        paused: Mapping[str, bool] | None = None,
    ) -> None:
        """Write the app's declared schedules (created, or their definition updated: paused
        state and last run kept); remove code-declared schedules of the app's queues that
        it no longer declares. Runtime schedules (add_schedule) are never touched."""
        index = await self._index()
        now = protocol.now_ms()
        for definition in declared:
            try:
                first_due = definition.next_after(now)
            except StreamworkError as exc:
                # declared by code this version refuses (a cron with no tick in sight): the
                # worker and the other schedules go on; what Redis holds of it is untouched
                self._skip_once(
                    definition.id, definition.rev.encode(), f"schedule {definition.id!r}: {exc}"
                )
                continue
            old_queue = index.get(definition.id)
            if old_queue is not None and old_queue != definition.queue:
                await self._scripts.schedule_state(
                    self._keys(old_queue, definition.id), "remove", None
                )
            await commands.index_schedule(
                self._client, schedule_index(self.namespace), definition.id, definition.queue
            )
            await commands.register(self._client, queue_registry(self.namespace), definition.queue)
            written = await self._scripts.schedule_put(
                self._keys(definition.queue, definition.id),
                definition.rev,
                first_due,
                (paused or {}).get(definition.id, False),
                "code",
                definition.fields(),
            )
            if written:
                log.info("schedule %s %s", definition.id, "created" if written == 1 else "updated")
        names = {d.id for d in declared}
        owned = set(owned_queues)
        for id, queue in index.items():
            if id in names or queue not in owned:
                continue
            keys = self._keys(queue, id)
            if await commands.schedule_origin(self._client, keys) != b"code":
                continue
            await commands.unindex_schedule(self._client, schedule_index(self.namespace), id)
            await self._scripts.schedule_state(keys, "remove", None)
            log.info("schedule %s removed: the app no longer declares it", id)

    async def tick(self) -> float:
        """Enqueue every due tick; returns how long to wait before looking again (s)."""
        wait = TICK_EVERY
        offset = protocol.clock_offset_ms()
        for queue in await self._served():
            due_set = self._keys(queue, "").due
            reply = await self._scripts.schedules_due(due_set, offset)
            now, earliest = int(reply[0]), int(reply[1])
            for i in range(2, len(reply), 2):
                await self._fire(queue, reply[i].decode(), int(float(reply[i + 1])), now)
            if earliest > now:
                wait = min(wait, (earliest - now) / 1000)
        self.passes += 1
        return max(0.005, wait)

    async def next_due(self) -> int | None:
        """The earliest due time over every schedule of the namespace (Unix ms), or None."""
        earliest = None
        for queue in await self._served():
            first = await commands.first_of_due_set(self._client, self._keys(queue, "").due)
            if first:
                due = int(first[0][1])
                earliest = due if earliest is None else min(earliest, due)
        return earliest

    async def rewind(self, now_ms: int, claimed: Iterable[tuple[ScheduleKeys, int]]) -> int:
        """Undo what a test clock ahead of `now_ms` did to the schedules (run_until_idle
        on a real Redis): each schedule due after `now_ms` gets its next tick from `now_ms`
        again, and the `claimed` ticks after `now_ms` (what tickers recording their claims
        enqueued) are released, so that workers on the real clock enqueue those ticks when
        they come. Counters and last runs stay. Returns how many schedules moved back."""
        moved = 0
        for queue in await self._served():
            due_set = self._keys(queue, "").due
            ahead = await commands.due_after(self._client, due_set, now_ms)
            for raw_id, score in ahead:
                id = raw_id.decode()
                keys = self._keys(queue, id)
                raw = await commands.schedule_fields(self._client, keys)
                try:
                    nxt = Definition.from_fields(id, raw).next_after(now_ms) if raw else None
                except (ValueError, TypeError, StreamworkError):
                    continue  # one it cannot plan was not moved by it either
                if nxt is not None and nxt != int(score):
                    await commands.set_due(self._client, due_set, id, nxt)
                    moved += 1
        for keys, due in claimed:
            if due > now_ms:
                await commands.release_claim(self._client, keys, due)  # one key a call: many slots
        return moved

    async def _fire(self, queue: str, id: str, due: int, now: int) -> None:
        keys = self._keys(queue, id)
        raw = await commands.schedule_fields(self._client, keys)
        if not raw:
            await commands.forget_due(self._client, keys.due, id)  # removed under us
            return
        try:
            definition = Definition.from_fields(id, raw)
            ticks, missed, next_due = definition.plan(due, now)
            messages = []
            for tick in ticks:
                message_id = protocol.new_id()
                body = tick_body(definition, message_id, tick, now)
                protocol.check_size(body, self._max_message_bytes, f"schedule {id!r}'s message")
                messages.append((tick, message_id, body))
        except (ValueError, TypeError, StreamworkError) as exc:
            # One schedule that cannot be read or encoded (written by another version, or
            # with another max_message_bytes) must not stop the others' ticks.
            self._skip_once(id, raw.get(b"rev", b""), f"schedule {id!r}: {exc}")
            return
        enqueued, skipped, status = await self._scripts.schedule_tick(
            keys,
            due,
            raw.get(b"rev", b"").decode(),
            next_due,
            definition.overlap,
            claim_ttl_ms(definition, now),
            missed,
            messages,
            self._status_ttl_ms,
            self._events_cap(queue),
            (raw.get(b"last_message") or b"").decode() or None,
        )
        if status != 1:
            return  # another worker took it, or it changed, paused or went: nothing to do
        if self._records_claims:
            self.claimed.extend((keys, tick) for tick, _, _ in messages)
        self.enqueued += int(enqueued)
        if enqueued and not definition.overlap:
            self.exclusive_enqueued = True
        metrics.schedule_ticks(id, "enqueued", int(enqueued))
        if skipped:
            metrics.schedule_ticks(id, "skipped", int(skipped))
            log.warning(
                "schedule %s: tick skipped, its previous run is still queued or running "
                "(overlap=False)",
                id,
            )
        if missed:
            metrics.schedule_ticks(id, "missed", missed)
            log.warning(
                "schedule %s: %d tick(s) missed while no worker ran (catch_up=%r)",
                id,
                missed,
                definition.catch_up,
            )

    def _skip_once(self, id: str, rev: bytes, reason: str) -> None:
        """Log a schedule that cannot be planned, once per definition (id and revision)."""
        key = (id, rev)
        if key not in self._unreadable:
            self._unreadable.add(key)
            log.error("%s; its ticks are not enqueued", reason)
