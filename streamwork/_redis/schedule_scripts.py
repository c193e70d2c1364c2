"""The Lua scripts of schedules, typed: writing a schedule, ticking it once, pausing,
resuming or removing it, and finding the due ones (lua/schedule_*.lua, schedules_due.lua)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._base.keys import ScheduleKeys
from .script_base import ScriptSet, _ms_or_empty


class ScheduleScripts(ScriptSet):
    """The schedule scripts (see ScriptSet for how they run)."""

    def schedule_put(
        self,
        keys: ScheduleKeys,
        rev: str,
        first_due_ms: int | None,
        paused: bool,
        origin: str,
        fields: dict[str, Any],
    ) -> Any:
        """Create or update a schedule: 0 unchanged, 1 created, 2 updated."""
        pairs = [item for pair in fields.items() for item in pair]
        return self._scripts["schedule_put"](
            keys=[keys.schedule, keys.due],
            args=[keys.id, rev, _ms_or_empty(first_due_ms), "1" if paused else "0", origin, *pairs],
        )

    def schedule_tick(
        self,
        keys: ScheduleKeys,
        due: int | None,
        rev: str,
        next_due_ms: int | None,
        overlap: bool,
        claim_ttl_ms: int,
        missed: int,
        messages: Sequence[tuple[int, str, bytes]],
        status_ttl_ms: int = 86_400_000,
        events_cap: int = 0,
        last_message: str | None = None,
    ) -> Any:
        """Enqueue ticks (due ms, task id, body) once: [enqueued, skipped, status]. `due`
        None is a trigger: a run now, the due time untouched. `last_message`: the id of the
        schedule's last message (overlap=False looks at its status)."""
        args: list[Any] = [
            keys.id,
            "trigger" if due is None else due,
            rev,
            _ms_or_empty(next_due_ms),
            "1" if overlap else "0",
            claim_ttl_ms,
            missed,
            status_ttl_ms,
            events_cap,
        ]
        per_message: list[str] = []
        for message in messages:
            args.extend(message)
            per_message += [keys.claim(message[0]), keys.status(message[1])]
        return self._scripts["schedule_tick"](
            keys=[
                keys.schedule,
                keys.due,
                keys.stream,
                keys.events,
                keys.status(last_message) if last_message else keys.schedule,
                *per_message,
            ],
            args=args,
        )

    def schedule_state(self, keys: ScheduleKeys, action: str, next_due_ms: int | None) -> Any:
        """Pause, resume or remove a schedule: 1 done, 0 no such schedule."""
        return self._scripts["schedule_state"](
            keys=[keys.schedule, keys.due], args=[keys.id, action, _ms_or_empty(next_due_ms)]
        )

    def schedules_due(self, due_set: str, offset_ms: int, limit: int = 100) -> Any:
        """[now ms, earliest due ms or -1, id, due ms, ...] by Redis's clock (+ `offset_ms`)."""
        return self._scripts["schedules_due"](keys=[due_set], args=[offset_ms, limit])
