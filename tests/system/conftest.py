"""System tests run the real `streamwork` command in subprocesses, with apps written to a
temporary directory; every process they start is ended by its PID."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

STREAMWORK = [sys.executable, "-m", "streamwork"]


class Processes:
    """Starts subprocesses with the test's Redis URL and kills leftovers by PID."""

    def __init__(self, cwd: Path, redis_url: str) -> None:
        self.cwd = cwd
        self.env = {**os.environ, "STREAMWORK_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str, log: Path | None = None, **env: str) -> subprocess.Popen[str]:
        """Start `streamwork ARGS`; with `log`, stderr goes to that file, readable meanwhile."""
        stderr = open(log, "w") if log is not None else subprocess.PIPE  # noqa: SIM115
        process = subprocess.Popen(
            [*STREAMWORK, *args],
            cwd=self.cwd,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        if log is not None:
            stderr.close()
        self.started.append(process)
        return process

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        process = self.start(*args, **env)
        stdout, stderr = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def cleanup(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture
def processes(tmp_path: Path, redis_url: str) -> Iterator[Processes]:
    procs = Processes(tmp_path, redis_url)
    yield procs
    procs.cleanup()


@pytest.fixture
def write_app(tmp_path: Path):
    """Write a module named `name` with `source` into the processes' working directory."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return write
