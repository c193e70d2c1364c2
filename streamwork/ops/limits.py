"""Rate limits changed at run time (Celery's `control rate_limit`): what `streamwork limits
set|show|reset` calls. An override is stored in the namespace's limits hash; every worker
process reads it within about a second (`_worker/overrides.py`) and starts the task's runs
under it, without a restart. `reset` gives the task its declared rate back.

It changes a task's rate limit only (not its concurrency limit, nor a fair task's per-key
rate), and refuses tasks on partitioned queues, whose limits have no one place to be kept.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any

from .._app.app import App
from .._base.keys import limits_registry
from .._redis import commands
from .._worker.overrides import NO_LIMIT, parse_override
from ..errors import ConfigurationError, UnknownTask


@dataclass(frozen=True)
class TaskLimit:
    """A task's rate limit: as declared, and as overridden at run time (None: none)."""

    task: str
    queue: str
    declared: str | None
    override: str | None

    @property
    def in_force(self) -> str:
        """The rate its runs start under now ("none": no rate limit)."""
        return self.override or self.declared or NO_LIMIT

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_force": self.in_force}


def show(app: App) -> list[TaskLimit]:
    """Every task of the app, with its declared rate limit and its override."""
    with app.connection.translate_errors():
        raw = commands.rate_overrides(app.connection.redis, limits_registry(app.namespace))
    overrides = {k.decode(): v.decode() for k, v in raw.items()}
    return [
        TaskLimit(
            name,
            task.options.queue,
            task.options.rate.text if task.options.rate else None,
            overrides.get(name),
        )
        for name, task in app.tasks.items()
    ]


def _task(app: App, name: str) -> str:
    if name not in app.tasks:
        close = difflib.get_close_matches(name, list(app.tasks), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        known = ", ".join(app.tasks) or "none"
        raise UnknownTask(f"the app has no task {name!r}{hint}; its tasks: {known}")
    task = app.tasks[name]
    if app.partitions(task.options.queue) > 1:
        raise ConfigurationError(
            f"task {name!r} is on partitioned queue {task.options.queue!r}, which has no rate "
            "limits: nothing to change"
        )
    if task.options.fair is not None:
        raise ConfigurationError(
            f"task {name!r} is fair (fair_by): its rate is per key (per_key_rate_limit), set "
            "in code"
        )
    return name


def set_rate(app: App, task: str, rate: str) -> TaskLimit:
    """Override `task`'s rate limit with `rate` ("100/s", "10/m", "1000/h", or "none")."""
    name = _task(app, task)
    parse_override(rate)  # refused here, not by each worker
    with app.connection.translate_errors():
        key = limits_registry(app.namespace)
        commands.set_rate_override(app.connection.redis, key, name, rate.strip())
    return next(limit for limit in show(app) if limit.task == name)


def reset(app: App, task: str) -> bool:
    """Give `task` its declared rate limit back; False if it had no override."""
    name = _task(app, task)
    with app.connection.translate_errors():
        key = limits_registry(app.namespace)
        return bool(commands.reset_rate_override(app.connection.redis, key, name))
