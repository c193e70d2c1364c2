"""The Lua scripts, typed: `Scripts` wraps every script on one client or pipeline, sync or
asyncio; each method returns what redis-py returns (a value, or an awaitable). Loading and
running them by name is script_base.py's; the schedule scripts are schedule_scripts.py's.
Each script's header names its KEYS and ARGV, which tests check against these wrappers.
Nothing here decides what a message means (the worker's execution does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgpack

from .._base import ids
from .._base.keys import QUEUE_GROUP, OrderKeys, QueueKeys, Source, WorkflowKeys
from .rows import (
    NO_STATE,
    PlainDoneValues,
    SendState,
    SettleRow,
    SettleValues,
    StartRow,
)
from .schedule_scripts import ScheduleScripts
from .script_base import _text


class Scripts(ScheduleScripts):
    """Typed wrappers around the Lua scripts (lua/*.lua), registered on one client: the
    queue, worker, workflow and operator scripts here, the schedule scripts inherited."""

    def settle(
        self,
        source: Source,
        consumer: str,
        outcomes: Sequence[SettleRow],
        *,
        is_pending: bool,
        result_ttl_ms: int,
        status_ttl_ms: int = 86_400_000,
        now_ms: int = 0,
    ) -> Any:
        """Write `outcomes` and XACK their entries; one 1 (written) or 0 (lost) per outcome."""
        keys = [source.stream, source.delayed, source.dead_letters, source.stats, source.events]
        rows = _settle_rows(source, outcomes, keys)
        args = [
            source.group,
            consumer,
            "1" if is_pending else "0",
            "1" if source.deletes_on_ack else "0",
            result_ttl_ms,
            # Redis's Lua cmsgpack reads msgpack's older raw type, not bin.
            msgpack.packb(rows, use_bin_type=False),
            status_ttl_ms,
            now_ms,
            source.events_max_len,
        ]
        return self._run("settle", keys, args)

    def move_due(self, delayed: str, ready: str, now_ms: int, limit: int = 500) -> Any:
        """Move due messages from a delayed set to a stream: [moved, next due ms or -1]."""
        return self._scripts["move_due"](keys=[delayed, ready], args=[now_ms, limit])

    def renew_lease(self, source: Source, consumer: str, entry_ids: Iterable[bytes]) -> Any:
        """Reset the idle time of entries still owned by `consumer`; returns the ids it lost."""
        return self._scripts["renew_lease"](
            keys=[source.stream], args=[source.group, consumer, *entry_ids]
        )

    def remove_idle_consumers(self, source: Source, min_idle_ms: int) -> Any:
        """Remove consumers with nothing pending idle for `min_idle_ms`; returns their names."""
        return self._scripts["remove_idle_consumers"](
            keys=[source.stream], args=[source.group, min_idle_ms]
        )

    def enqueue(
        self,
        stream: str,
        delayed: str,
        status: str,
        message_id: str,
        body: bytes,
        due_ms: int | None,
        state: SendState,
        dedupe: tuple[str, int] | None = None,
        workflow: str = "",
        order: tuple[str, str] | None = None,
    ) -> Any:
        """Add one message (to the stream, or the delayed set when due later) with its
        status and "sent" event; `state` is (task, now ms, status ttl ms, event stream, its
        cap or 0); `dedupe` (idempotency key, ms it holds) enqueues it at most once per
        key; `workflow` names the workflow of a child; `order` (the queue's order prefix,
        the partition key) puts it last in its partition key's order. Returns the id of the
        message holding the key (its own when it has none)."""
        task, now_ms, ttl_ms, events, cap = state
        key, key_ttl_ms = dedupe or (status, 0)
        args = [body, due_ms or 0, task, now_ms, ttl_ms, cap, message_id, key_ttl_ms, workflow]
        keys = [stream, delayed, status, events or stream, key]
        if order is not None:
            prefix, partition_key = order
            found = OrderKeys.of(prefix, partition_key)
            keys += [found.order, found.ordered]
            args.append(partition_key)
        return self._scripts["enqueue"](keys=keys, args=args)

    def start(
        self,
        source: Source,
        runs: Sequence[StartRow],
        worker: str,
        now_ms: int,
        ttl_ms: int,
        visibility_ms: int = 30_000,
        offset_ms: int = 0,
    ) -> Any:
        """Admit messages of `source`: per run (task, attempt, message id, entry id, status
        key or None, rate key or None, interval ms, tolerance ms, slot set or None, limit,
        its reserved start (Unix ms, 0 for none), partition key or ""); per message 0 to
        run it, the reason it was cancelled before it started, -1 (held for a slot), -2
        (waits for its partition key's turn) or the Redis time its rate-limited start is
        due."""
        keys = [source.events]
        where: dict[str, int] = {}

        def ref(key: str | None) -> int:
            if key is None:
                return 0
            if key not in where:
                keys.append(key)
                where[key] = len(keys)
            return where[key]

        rows: list[tuple[Any, ...]] = []
        for (
            task,
            attempt,
            message_id,
            entry,
            status,
            rate,
            interval,
            tolerance,
            slots,
            limit,
            reserved,
            partition_key,
        ) in runs:
            if rate is None and slots is None and not partition_key:
                # status only: four values instead of twelve (see start.lua)
                rows.append((task, attempt, message_id, ref(status)))
                continue
            order = 0
            if partition_key and source.order_prefix:
                order = ref(OrderKeys.of(source.order_prefix, partition_key).order)
            rows.append(
                (
                    task,
                    attempt,
                    message_id,
                    f"{source.stream}|{_text(entry)}",
                    ref(status),
                    ref(rate),
                    interval,
                    tolerance,
                    ref(slots),
                    limit,
                    int(reserved),
                    order,
                )
            )
        args = [
            now_ms,
            worker,
            ttl_ms,
            source.events_max_len,
            source.group,
            visibility_ms,
            offset_ms,
            # Redis's Lua cmsgpack reads msgpack's older raw type, not bin.
            msgpack.packb(rows, use_bin_type=False),
        ]
        return self._run("start", keys, args)

    def fair_send(
        self,
        stream: str,
        prefix: str,
        messages: Sequence[tuple[str, bytes, str]],
        statuses: Sequence[str],
        state: SendState,
        concurrency: int,
    ) -> Any:
        """Queue messages (id, body, key) of a fair task in their keys' lists, with their
        statuses and "sent" events; `state` is (task, now ms, status ttl ms, event stream,
        cap); `concurrency` per key (0: none)."""
        task, now_ms, ttl_ms, events, cap = state
        args: list[Any] = [prefix, task, now_ms, ttl_ms if statuses else 0, cap, concurrency]
        for message in messages:
            args.extend(message)
        return self._scripts["fair_send"](
            keys=[stream, prefix + "ring", prefix + "keys", events or stream, *statuses],
            args=args,
        )

    def fair_pull(
        self,
        stream: str,
        prefix: str,
        count: int,
        concurrency: int,
    ) -> Any:
        """Feed up to `count` of a fair task's messages to `stream`, round-robin between
        keys, each key at most `concurrency` fed and unfinished (0: no limit); returns how
        many."""
        return self._scripts["fair_pull"](
            keys=[stream, prefix + "ring", prefix + "keys"], args=[prefix, count, concurrency]
        )

    def read_bands(
        self, streams: Sequence[str], group: str, consumer: str, count: int, starvation_ms: int
    ) -> Any:
        """Read up to `count` new entries of a queue's band streams (highest first), the
        bands starving past `starvation_ms` first: [stream, entries, stream, entries...]."""
        return self._scripts["read_bands"](
            keys=list(streams), args=[group, consumer, count, starvation_ms]
        )

    def release_held(
        self, source: Source, slots: str, held: str, limit: int, visibility_ms: int
    ) -> Any:
        """Move messages waiting for a concurrency slot back to `source`'s ready stream, as
        many as slots are free; returns how many."""
        return self._scripts["release_held"](
            keys=[slots, held, source.ready], args=[source.group, limit, visibility_ms]
        )

    def cancel(
        self,
        keys: QueueKeys,
        message_id: str,
        reason: str,
        now_ms: int,
        ttl_ms: int,
        events_cap: int = 0,
        unsent: bool = False,
    ) -> Any:
        """Cancel message `message_id` of the queue of `keys`: [what it did, the state
        before]; with its "cancelled" event when `events_cap` > 0. `unsent`: a workflow
        child that may not be sent yet is cancelled even without a status."""
        return self._scripts["cancel"](
            keys=[
                keys.status(message_id),
                keys.delayed,
                keys.events,
                keys.band_delayed("high"),
                keys.band_delayed("low"),
                keys.stream,
                keys.band_stream("high"),
                keys.band_stream("low"),
                keys.stats,
            ],
            args=[
                reason,
                now_ms,
                ttl_ms,
                events_cap,
                message_id,
                "1" if unsent else "0",
                QUEUE_GROUP,
                ids.entry_of(message_id, keys.queue) or "",
            ],
        )

    def status(self, keys: QueueKeys, message_id: str) -> Any:
        """Message `message_id`'s status hash, flat, with "running" read from the pending
        entries list for a recorded message (status.lua); `as_fields` makes it a dict."""
        return self._scripts["status"](
            keys=[
                keys.status(message_id),
                keys.stream,
                keys.band_stream("high"),
                keys.band_stream("low"),
            ],
            args=[QUEUE_GROUP, ids.entry_of(message_id, keys.queue) or ""],
        )

    def workflow_record(
        self, keys: WorkflowKeys, children: Sequence[tuple[int, bool, bytes]], now_ms: int
    ) -> Any:
        """Record the final outcomes (node, ok, value) of children of one workflow:
        [transitions, (node, spec, input)...] — what to send now."""
        args: list[Any] = [now_ms]
        for node, ok, value in children:
            args += [node, "done" if ok else "failed", value]
        return self._scripts["workflow_record"](keys=[keys.workflow, keys.finished], args=args)

    def workflow_cancel(self, keys: WorkflowKeys, reason: str, now_ms: int) -> Any:
        """Cancel a workflow: [what it did, the state before, spec of each child to cancel...]."""
        return self._scripts["workflow_cancel"](
            keys=[keys.workflow, keys.finished], args=[reason, now_ms]
        )

    def progress(
        self,
        status: str,
        fraction: float,
        note: str,
        now_ms: int,
        ttl_ms: int,
        events: tuple[str, int, str] = ("", 0, ""),
        data: bytes = b"",
        run: tuple[str, str, int] = ("", "", 0),
    ) -> Any:
        """Record a running message's progress (and its data, packed: b"" keeps the last):
        1 written, 0 not running any more. `run` (task, worker, attempt) makes its status
        when it has none (a message sent by entry: ids.py)."""
        stream, cap, message_id = events
        task, worker, attempt = run
        return self._scripts["progress"](
            keys=[status, stream or status],
            args=[fraction, note, now_ms, ttl_ms, cap, message_id, data, task, worker, attempt],
        )

    def replay(
        self,
        source: Source,
        moves: Sequence[tuple[bytes, bytes, str, str]],
        now_ms: int = 0,
        status_ttl_ms: int = 86_400_000,
    ) -> Any:
        """Move dead letters (entry id, message to enqueue, message id, task) back to the
        source's ready stream, their status queued again and a "replayed" event each."""
        args: list[Any] = [source.events_max_len, now_ms, status_ttl_ms]
        statuses = []
        for entry_id, body, message_id, task in moves:
            args += [entry_id, body, message_id, task]
            status = source.status(message_id) if message_id else None
            statuses.append(status or source.status("-") or "")
        keys = [source.dead_letters, source.ready, source.events]
        if source.status("-") is not None:
            keys += statuses
        return self._scripts["replay"](keys=keys, args=args)

    def purge(
        self, source: Source, limit: int, with_delayed: bool, partition_keys: Sequence[str] = ()
    ) -> Any:
        """Delete up to `limit` undelivered entries (and the delayed set; and the orders of
        `partition_keys`, with the messages waiting for their turn): [entries, delayed]."""
        keys = [source.stream, source.delayed]
        for partition_key in partition_keys:
            keys += OrderKeys.of(source.order_prefix, partition_key).all()
        return self._scripts["purge"](
            keys=keys, args=[source.group, limit, "1" if with_delayed else "0"]
        )

    def trim_topic(
        self, stream: str, max_len: int | None, oldest_ms: int | None, drop_unread: bool
    ) -> Any:
        """Apply retention to a topic stream: [trimmed, held back, dropped unread]."""
        return self._scripts["trim_topic"](
            keys=[stream],
            args=[max_len or 0, f"{oldest_ms or 0}-0", "1" if drop_unread else "0"],
        )

    def add_many(
        self,
        stream: str,
        delayed: str,
        bodies: Sequence[bytes],
        *,
        ids: Sequence[str] = (),
        due_ms: int | None = None,
        statuses: Sequence[str] = (),
        state: SendState = NO_STATE,
        by_entry: bool = False,
    ) -> Any:
        """Add many messages (to the stream, or the delayed set when due later) in one
        command, each with its status and "sent" event when `statuses` names them; returns
        how many, or `by_entry` (no statuses: ids.py) the entry id of each."""
        task, now_ms, ttl_ms, events, cap = state
        with_ids = bool(statuses)  # ids are only for statuses and events
        args: list[Any] = [due_ms or 0, task, now_ms, ttl_ms, cap if with_ids else 0]
        if with_ids:
            args.append("1")
            for message_id, body in zip(ids, bodies, strict=True):
                args += [message_id, body]
        else:
            args.append("2" if by_entry else "0")
            args.extend(bodies)
        return self._scripts["add_many"](
            keys=[stream, delayed, events or stream, *statuses], args=args
        )


def _settle_rows(
    source: Source, outcomes: Sequence[SettleRow], keys: list[str]
) -> list[SettleValues | PlainDoneValues]:
    """The rows settle.lua reads, one per outcome; the keys they reference are appended to
    `keys` (result lists, status hashes, held lists, partition keys' order keys)."""
    rows: list[SettleValues | PlainDoneValues] = []
    with_events = source.events_max_len > 0  # else leave the event fields out of rows
    orders: dict[str, int] = {}
    for outcome in outcomes:
        if (
            outcome.kind == "done"
            and outcome.result_key is None
            and not (outcome.error or outcome.partition_key or with_events)
        ):  # the common row, five values instead of seventeen (see settle.lua)
            status = 0
            if outcome.status_key is not None:
                keys.append(outcome.status_key)
                status = len(keys)
            record_task = outcome.task if status and outcome.record else ""
            rows.append(
                PlainDoneValues(
                    outcome.entry_id,
                    outcome.wait_ms,
                    outcome.run_ms,
                    status,
                    outcome.attempt,
                    record_task,
                )
            )
            continue
        order = 0
        if outcome.partition_key and source.order_prefix:
            order = orders.get(outcome.partition_key, 0)
            if not order:
                keys += OrderKeys.of(source.order_prefix, outcome.partition_key).all()
                order = orders[outcome.partition_key] = len(keys) - 2
        index = status = 0
        if outcome.result_key is not None:
            keys.append(outcome.result_key)
            index = len(keys)
        if outcome.status_key is not None:
            keys.append(outcome.status_key)
            status = len(keys)
        held = 0
        if outcome.held_key is not None:
            keys.append(outcome.held_key)
            held = len(keys)
        rows.append(
            SettleValues(
                outcome.kind,
                outcome.entry_id,
                outcome.data,
                outcome.due_ms,
                index,
                outcome.result,
                outcome.wait_ms,
                outcome.run_ms,
                status,
                outcome.state,
                outcome.error,
                outcome.message_id if with_events or outcome.partition_key else "",
                outcome.task,  # events, and the status of a message that had none
                outcome.attempt,
                held,
                outcome.partition_key,
                order,
            )
        )
    return rows


def as_fields(flat: Any) -> dict[bytes, bytes]:
    """A flat [field, value, ...] reply (a script's HGETALL) as HGETALL's dict."""
    items = [v if isinstance(v, bytes) else str(v).encode() for v in flat or ()]
    return dict(zip(items[::2], items[1::2], strict=True))
