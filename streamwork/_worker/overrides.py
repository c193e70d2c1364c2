"""Rate limits changed at run time (`streamwork limits set`, Celery's `control rate_limit`):
what one worker process reads of them and applies to the start step of its runs.

The overrides live in one hash per namespace (`NS:limits`: task -> "100/s", or "none" for no
rate limit), written by `streamwork.ops.limits`. Every worker process reads it once a second
(a scanner step), so a change reaches every worker within about a second, without a restart.
What it never does: write the hash, or change a task's concurrency limit or fair keys' rates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .._base.handler import Handler, Rate
from .._base.keys import limits_registry
from .._redis import commands
from ..errors import ConfigurationError

log = logging.getLogger("streamwork.worker")

NO_LIMIT = "none"
"""The override that lifts a task's rate limit."""
REFRESH_SECONDS = 1.0


def parse_override(text: str) -> Rate | None:
    """The rate an override gives (None: no rate limit); ConfigurationError if it is none."""
    if text.strip().lower() == NO_LIMIT:
        return None
    return Rate.parse(text)


class RateOverrides:
    """The rate limit overrides of the tasks a worker serves, refreshed once a second."""

    def __init__(self, client: Any, namespace: str, tasks: Mapping[str, Handler]) -> None:
        self._client = client
        self._key = limits_registry(namespace)
        self._tasks = tasks
        self._texts: dict[str, str] = {}
        self.rates: dict[str, Rate | None] = {}

    def rate_of(self, task: Handler) -> Rate | None:
        """The rate limit a run of `task` starts under now (its override, else its own)."""
        if task.name in self.rates:
            return self.rates[task.name]
        return task.options.rate

    def limits(self, task: Handler) -> bool:
        """Whether runs of `task` need the start step for their rate (an override adds one)."""
        return self.rate_of(task) is not None

    async def refresh(self) -> float:
        """Read the overrides again; seconds to the next look."""
        raw = await commands.rate_overrides(self._client, self._key)
        texts = {k.decode(): v.decode() for k, v in raw.items() if k.decode() in self._tasks}
        if texts == self._texts:
            return REFRESH_SECONDS
        rates: dict[str, Rate | None] = {}
        for task, text in texts.items():
            try:
                rates[task] = parse_override(text)
            except ConfigurationError as exc:
                if self._texts.get(task) != text:
                    log.warning("ignoring the rate limit override of task %s: %s", task, exc)
                continue
            if self._texts.get(task) != text:
                log.info("task %s: rate limit now %s (override)", task, text)
        for task in self._texts.keys() - texts.keys():
            own = self._tasks[task].options.rate
            log.info("task %s: rate limit back to %s", task, own.text if own else NO_LIMIT)
        self._texts, self.rates = texts, rates
        return REFRESH_SECONDS
