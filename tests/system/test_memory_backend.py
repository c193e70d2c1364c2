"""memory:// as a user meets it: the example test file runs with no redis-server anywhere on
PATH, separate URLs are separate servers, and the CLI refuses an in-process URL."""

import asyncio
import os
import shutil
import subprocess
import sys

from conftest import ROOT

from streamwork import App
from streamwork._redis import memory
from streamwork.testing import run_until_idle, run_until_idle_async


def test_the_example_test_file_runs_with_no_redis_server_on_path(tmp_path):
    directories = os.environ["PATH"].split(os.pathsep)
    stripped = os.pathsep.join(
        d for d in directories if not os.path.exists(os.path.join(d, "redis-server"))
    )
    assert shutil.which("redis-server", path=stripped) is None
    env = {k: v for k, v in os.environ.items() if k != "STREAMWORK_REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_shop.py"],
        cwd=ROOT / "examples",
        env={**env, "PATH": stripped},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_each_memory_url_is_its_own_server_shared_by_sync_and_async_clients():
    first, second = App("memory://first"), App("memory://second")
    runs = []
    for app in (first, second):
        app.task(name="job")(lambda n, app=app: runs.append((app.url, n)))
    try:
        first.tasks["job"].send(1)

        async def send_async():
            await second.tasks["job"].send_async(2)
            await second.aclose()

        asyncio.run(send_async())
        assert run_until_idle(first).done == 1
        assert asyncio.run(run_until_idle_async(second)).done == 1
        assert sorted(runs) == [("memory://first", 1), ("memory://second", 2)]
    finally:
        memory.forget("memory://first")
        memory.forget("memory://second")


def test_the_cli_refuses_memory_urls_in_one_line(processes, write_app):
    write_app(
        "jobs", "from streamwork import App\napp = App('memory://')\napp.task(name='j')(len)\n"
    )
    for args in (["worker", "jobs:app"], ["stats", "jobs:app"]):
        run = processes.run(*args)
        assert run.returncode == 2, run.stderr
        [line] = run.stderr.strip().splitlines()
        assert "in-process Redis: a command in another process cannot see it" in line


def test_an_idle_worker_on_memory_does_not_spin_and_still_serves(monkeypatch):
    """fakeredis answers XREADGROUP BLOCK at once; memory://'s clients wait as Redis does."""
    import time

    from streamwork._redis import commands
    from streamwork.testing import WorkerThread, wait_until

    reads = []
    real_read = commands.read

    def counted(*args, **kwargs):
        reads.append(1)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(commands, "read", counted)
    app = App("memory://idle")
    done = []
    app.task(name="job")(lambda: done.append(1))
    try:
        with WorkerThread(app, block=1.0):
            wait_until(lambda: reads, message="the first read")
            time.sleep(0.5)  # idle on purpose: what is measured is what an idle loop does
            idle_reads = len(reads)
            app.tasks["job"].send()
            wait_until(lambda: done == [1], message="the job sent to the idle worker to run")
        assert idle_reads <= 5, f"{idle_reads} reads in 0.5 s: XREADGROUP BLOCK did not block"
    finally:
        app.close()
        memory.forget("memory://idle")
