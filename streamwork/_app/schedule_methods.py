"""The App's schedules: `schedule`, `@periodic`, `add_schedule` and the calls that list,
pause, resume, trigger and remove schedules (a base class of App; the schedules themselves
are the _schedules feature's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._base import protocol
from .._schedules.definitions import Definition, ScheduleArgs, define, tick_body
from .._schedules.schedules import Schedule, Schedules
from ..errors import BadArguments, ConfigurationError, EncodeError
from .task import Task

if TYPE_CHECKING:
    from typing_extensions import Unpack

from .parts import AppParts


class ScheduleMethods(AppParts):
    """The App's schedule calls (a base class of App)."""

    status_ttl_ms: int
    declared_schedules: dict[str, Definition]
    _paused_at_start: dict[str, bool]

    @property
    def max_message_bytes(self) -> int:
        raise NotImplementedError  # App's

    def _define(self, id: str, task: Task | str, rule: ScheduleArgs) -> Definition:
        if isinstance(task, str):
            if task not in self.tasks:
                raise ConfigurationError(f"schedule {id!r}: the app has no task {task!r}")
            task = self.tasks[task]
        elif not isinstance(task, Task) or self.tasks.get(task.name) is not task:
            raise ConfigurationError(f"schedule {id!r}: {task!r} is not a task of this app")
        try:
            definition = define(id, task.name, task.home_queue, task.check_arguments, rule)
            sample = tick_body(definition, protocol.new_id(), 0, 0)
            protocol.check_size(sample, self.max_message_bytes, "its message")
            return definition
        except (BadArguments, EncodeError) as exc:
            raise ConfigurationError(f"schedule {id!r}: {exc}") from None

    def schedule(
        self, id: str, task: Task | str, *, paused: bool = False, **rule: Unpack[ScheduleArgs]
    ) -> Definition:
        """Declare a schedule: run `task` on a `cron` expression (5 fields, or 6 with seconds
        first, in time zone `tz`) or `every` N seconds (or a timedelta); the arguments are
        `schedules.ScheduleArgs`.

        Declaring writes nothing: workers write the app's declared schedules when they
        start (and remove the ones it declared before and no longer does). `catch_up` says
        what a tick missed while no worker ran becomes: "latest" (one run), "none", "all"
        (up to 100); with `overlap=False` a tick is skipped while the previous run is not
        over. `paused` is the state a new schedule starts in.
        """
        definition = self._define(id, task, rule)
        if id in self.declared_schedules:
            raise ConfigurationError(f"schedule {id!r} is declared twice")
        self.declared_schedules[id] = definition
        self._paused_at_start[id] = paused
        return definition

    def starts_paused(self, id: str) -> bool:
        """Whether declared schedule `id` is written paused when a worker first writes it."""
        return self._paused_at_start.get(id, False)

    def add_schedule(
        self, id: str, task: Task | str, *, paused: bool = False, **rule: Unpack[ScheduleArgs]
    ) -> Schedule:
        """Write a schedule now (created, or its definition updated): a schedule added at
        runtime lasts until `unschedule`, whatever code workers run. Same arguments as
        `schedule`; returns it as stored."""
        store = self._schedules()
        store.put(self._define(id, task, rule), origin="runtime", paused=paused)
        return store.get(id)

    def _schedules(self) -> Schedules:
        return Schedules(self.connection, self.namespace, self.status_ttl_ms, self.events_cap)

    def schedules(self) -> list[Schedule]:
        """Every schedule stored in the app's namespace (declared ones once a worker wrote
        them), by id."""
        return self._schedules().all()

    def get_schedule(self, id: str) -> Schedule:
        """One stored schedule; UnknownSchedule if there is none with that id."""
        return self._schedules().get(id)

    def unschedule(self, id: str) -> None:
        """Remove a schedule (UnknownSchedule if there is none). One the app declares in
        code comes back when a worker starts with code that still declares it."""
        self._schedules().remove(id)

    def pause_schedule(self, id: str) -> None:
        """Stop enqueuing ticks of `id` until `resume_schedule`."""
        self._schedules().pause(id)

    def resume_schedule(self, id: str) -> None:
        """Enqueue ticks of `id` again from its next tick (ticks missed meanwhile never run)."""
        self._schedules().resume(id)

    def trigger_schedule(self, id: str) -> str:
        """Enqueue one run of `id` now (its next tick is unchanged); returns the message id."""
        return self._schedules().trigger(id)
