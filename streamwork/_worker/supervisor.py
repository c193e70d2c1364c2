"""Supervisor: runs N worker processes — starts them, restarts the dead, drains on signals.

Owns the worker processes' lifecycle and nothing else: it never talks to Redis and never
runs a handler. Each process runs `run_process`: it loads the app, runs one Worker, and
exits 0 when stopped (or drained, in burst mode), RECYCLE_EXIT when it recycled itself (max
tasks, memory, a stuck sync handler), anything else when it crashed.

- SIGTERM / SIGINT: every process stops fetching and finishes its running messages within
  the grace period, then exits; the supervisor exits 0. A second signal, or the grace
  period plus a margin, kills what is left: cut-off messages stay pending in Redis and are
  recovered by the scanner, so nothing is lost either way.
- SIGHUP: processes are replaced one at a time (new one ready, then the old one drained),
  so new code is picked up without dropping work.
- A process that dies is restarted with backoff, logged with its exit code or signal.
- No orphans: a worker process gets SIGTERM when the supervisor dies (PR_SET_PDEATHSIG on
  Linux) and also watches its parent pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .._base import logs
from .._base.settings import WorkerSettings
from .serving import Serving, SupervisorMetrics

log = logging.getLogger("streamwork.supervisor")

RECYCLE_EXIT = 75
"""Exit code of a worker process that stopped itself to be replaced by a fresh one."""
FORCE_MARGIN = 5.0
"""Seconds past the grace period after which the supervisor kills worker processes."""
READY_TIMEOUT = 60.0
"""How long a replacement process may take to start serving during a rolling restart."""

_spawn = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class ProcessSpec:
    """What each worker process runs (sent to it when it is spawned)."""

    app_spec: str
    queues: tuple[str, ...]
    settings: WorkerSettings
    topics: tuple[str, ...] = ()
    burst: bool = False
    log_level: str = "info"
    log_format: str = "text"


# -- the worker process ---------------------------------------------------------------------


def run_process(spec: ProcessSpec, ready: Any, parent_pid: int) -> None:
    """Entry point of a worker process: run one Worker until stopped, then exit."""
    from .._app.app import load_app
    from .worker import Worker

    logs.configure(spec.log_level, spec.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the
    _die_with_parent(parent_pid)  # supervisor decides, and forwards SIGTERM.
    worker = Worker(load_app(spec.app_spec), spec.queues, spec.settings, spec.topics)
    code = asyncio.run(_serve(worker, spec.burst, ready, parent_pid))
    logging.shutdown()
    os._exit(code)  # do not wait for a sync handler's thread stuck past its timeout


async def _serve(worker: Any, burst: bool, ready: Any, parent_pid: int) -> int:
    loop = asyncio.get_running_loop()
    terms = 0

    def on_term() -> None:
        nonlocal terms
        terms += 1
        if terms == 1:
            worker.stop()
        else:
            log.warning("forced stop: running messages stay pending and are recovered later")
            logging.shutdown()
            os._exit(1)

    loop.add_signal_handler(signal.SIGTERM, on_term)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    watch = asyncio.create_task(_watch_parent(worker, parent_pid))
    # The supervisor's preflight warned about persistence once for all processes.
    await worker.run(burst=burst, on_ready=ready.set, warn_persistence=False)
    watch.cancel()
    return RECYCLE_EXIT if worker.recycle_reason else 0


async def _watch_parent(worker: Any, parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(1.0)
    log.error("the supervisor (pid %d) is gone: stopping", parent_pid)
    worker.stop()


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def dump_tasks() -> None:
    """Print the stack of every asyncio task to stderr (SIGUSR1): what is the worker doing?"""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


# -- the supervisor -------------------------------------------------------------------------


@dataclass
class _Child:
    process: Any
    ready: Any
    started: float = field(default_factory=time.monotonic)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Keeps `processes` worker processes running `spec`."""

    def __init__(
        self, spec: ProcessSpec, processes: int, metrics: SupervisorMetrics | None = None
    ) -> None:
        self.spec = spec
        self.processes = processes
        self.children: dict[int, _Child] = {}
        self._restart_at: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._signals = 0
        self._stop_deadline: float | None = None
        self._roll_requested = False
        self.metrics = metrics
        self.restarts = 0
        self.exit_code = 0
        if metrics is not None:
            metrics.health.processes = self.serving

    def serving(self) -> Serving:
        """How many worker processes are alive and serving, of how many (for /readyz)."""
        children = list(self.children.values())
        serving = sum(1 for c in children if c.ready.is_set() and c.process.is_alive())
        return Serving(self.processes, serving, self._stop_deadline is not None)

    # signals arrive between loop steps; the handlers only set flags
    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1

    def _on_hup(self, signum: int, frame: Any) -> None:
        self._roll_requested = True

    def run(self) -> int:
        """Run until stopped (or, in burst mode, until every process drained); exit code."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        for slot in range(self.processes):
            self._start(slot)
        handled = 0
        while self.children or self._restart_at:
            self._wait(0.2)
            if self._signals > handled:
                handled = self._signals
                self._on_stop(forced=handled > 1)
            if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                log.error("worker processes still running past the grace period: killing them")
                self._kill_all()
                self.exit_code = 1
            self._reap()
            self._restart_due()
            if self._roll_requested and self._stop_deadline is None:
                self._roll_requested = False
                self._roll()
        log.info("supervisor exits (%d restart(s))", self.restarts)
        return self.exit_code

    def _wait(self, timeout: float) -> None:
        sentinels = [child.process.sentinel for child in self.children.values()]
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout)
        else:
            time.sleep(timeout)

    def _start(self, slot: int) -> _Child:
        ready = _spawn.Event()
        process = _spawn.Process(
            target=run_process,
            args=(self.spec, ready, os.getpid()),
            name=f"streamwork-worker-{slot}",
            daemon=False,
        )
        process.start()
        child = self.children[slot] = _Child(process, ready)
        log.info("worker process %d started (slot %d)", process.pid, slot)
        self._count_processes()
        return child

    def _count_processes(self) -> None:
        if self.metrics is not None:
            self.metrics.processes.set(len(self.children))

    def _on_exit(self, pid: int) -> None:
        if self.metrics is not None:
            self.metrics.process_exited(pid)
        self._count_processes()

    def _count_restart(self, reason: str) -> None:
        self.restarts += 1
        if self.metrics is not None:
            self.metrics.restarts.labels(reason).inc()

    def _on_stop(self, *, forced: bool) -> None:
        self._restart_at.clear()
        if forced:
            log.warning("second signal: killing worker processes now")
            self._kill_all()
            self.exit_code = 1
            return
        log.info(
            "stopping: worker processes finish their running messages (grace %.0fs)",
            self.spec.settings.grace,
        )
        self._stop_deadline = time.monotonic() + self.spec.settings.grace + FORCE_MARGIN
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)

    def _kill_all(self) -> None:
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()

    def _reap(self) -> None:
        for slot, child in list(self.children.items()):
            if child.process.is_alive():
                continue
            child.process.join()
            del self.children[slot]
            self._on_exit(child.process.pid)
            self._after_exit(slot, child)

    def _after_exit(self, slot: int, child: _Child) -> None:
        code = child.process.exitcode
        pid = child.process.pid
        if self._stop_deadline is not None or self._signals:
            log.info("worker process %d %s", pid, describe_exit(code))
            return
        if code == 0 and self.spec.burst:
            log.info("worker process %d drained its queues and exited", pid)
            return
        if code == RECYCLE_EXIT:
            self._count_restart("recycled")
            log.info("worker process %d recycled itself; starting a fresh one", pid)
            self._restart_at[slot] = time.monotonic()
            return
        self._count_restart("died")
        lived = time.monotonic() - child.started
        failures = 1 if lived > 30 else self._failures.get(slot, 0) + 1
        self._failures[slot] = failures
        delay = min(30.0, 0.5 * 2 ** (failures - 1))
        log.error("worker process %d %s; restarting in %.1fs", pid, describe_exit(code), delay)
        self._restart_at[slot] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self._restart_at.items()):
            if when <= now:
                del self._restart_at[slot]
                self._start(slot)

    def _roll(self) -> None:
        """Replace every process, one at a time: the new one serving before the old stops."""
        log.info("SIGHUP: restarting %d worker process(es) one by one", len(self.children))
        for slot in sorted(self.children):
            if self._signals:
                return
            old = self.children.pop(slot)
            new = self._start(slot)
            deadline = time.monotonic() + READY_TIMEOUT
            while not new.ready.is_set() and new.process.is_alive():
                if self._signals or time.monotonic() > deadline:
                    break
                new.ready.wait(0.1)
            if not new.ready.is_set():
                log.error(
                    "replacement worker process %d did not start serving; keeping "
                    "worker process %d",
                    new.process.pid,
                    old.process.pid,
                )
                self.children[slot] = old
                with contextlib.suppress(ProcessLookupError):
                    new.process.kill()
                new.process.join()
                self._on_exit(new.process.pid)
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(old.process.pid, signal.SIGTERM)
            old.process.join(self.spec.settings.grace + FORCE_MARGIN)
            if old.process.is_alive():
                old.process.kill()
                old.process.join()
            self._on_exit(old.process.pid)
            log.info("worker process %d replaced by %d", old.process.pid, new.process.pid)
