"""When a worker process should be replaced by a fresh one.

After `max_tasks` messages, past `max_memory_mb` of resident memory, or once a sync handler
is stuck past its timeout (Python cannot stop its thread). This module only decides; the
worker stops itself gracefully and the supervisor starts the replacement.
"""

from __future__ import annotations

import os
import time


def resident_memory_mb() -> float:
    """This process's resident memory in MiB (Linux /proc; elsewhere the peak from rusage)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RecyclePolicy:
    """Says why a worker process should be recycled now, if it should."""

    def __init__(self, max_tasks: int | None, max_memory_mb: float | None) -> None:
        self.max_tasks = max_tasks
        self.max_memory_mb = max_memory_mb
        self._memory_checked = 0.0

    def reason(self, processed: int, stuck_threads: int) -> str | None:
        """Checked after every message; memory at most once a second (reading /proc per
        message would cost too much)."""
        if self.max_tasks is not None and processed >= self.max_tasks:
            return f"ran {processed} messages (max_tasks={self.max_tasks})"
        if stuck_threads:
            return "a sync handler is still running past its timeout"
        if self.max_memory_mb is None:
            return None
        now = time.monotonic()
        if now - self._memory_checked < 1.0:
            return None
        self._memory_checked = now
        rss = resident_memory_mb()
        if rss > self.max_memory_mb:
            return f"resident memory {rss:.0f} MiB is over max_memory_mb={self.max_memory_mb:g}"
        return None
