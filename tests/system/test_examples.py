"""The examples and the README's first command, run end to end as a newcomer would."""

import os
import subprocess
import sys

from conftest import ROOT

EXAMPLES = ROOT / "examples"


def run(command, cwd, redis_url, timeout=120, **env):
    result = subprocess.run(
        command,
        cwd=cwd,
        env={
            **os.environ,
            "STREAMWORK_REDIS_URL": redis_url,
            "PYTHONPATH": str(EXAMPLES),
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_hello_world_sends_and_receives(redis_url, tmp_path):
    out = run([sys.executable, str(EXAMPLES / "hello.py")], tmp_path, redis_url)
    assert " [x] Sent 'Hello World!'" in out
    assert " [x] Received 'Hello World!'" in out
    assert "Queue 'hello' now: 0 ready, 0 pending" in out


def test_orders_producer_worker_and_report(redis_url, tmp_path):
    out = run([sys.executable, str(EXAMPLES / "orders.py"), "send", "15"], tmp_path, redis_url)
    assert "sent 15 orders" in out
    worker = [sys.executable, "-m", "streamwork", "worker", "orders:app", "--burst"]
    out = run(worker, tmp_path, redis_url)
    assert out.count("mail to customer") == 15
    out = run([sys.executable, str(EXAMPLES / "orders.py"), "report"], tmp_path, redis_url)
    assert "15 orders confirmed" in out
    assert "queue 'orders': 0 ready, 0 pending, 0 delayed, 0 dead letters  (empty)" in out
    assert "queue 'notifications': 0 ready, 0 pending, 0 delayed, 0 dead letters  (empty)" in out


def test_fanout_reaches_every_group_with_two_workers(redis_url, tmp_path):
    out = run([sys.executable, str(EXAMPLES / "fanout.py"), "publish", "12"], tmp_path, redis_url)
    assert "published 12 events" in out
    worker = [sys.executable, "-m", "streamwork", "worker", "fanout:app", "-p", "2", "--burst"]
    out = run(worker, tmp_path, redis_url)
    for group in ("billing", "shipping", "notifications"):
        lines = [line.split() for line in out.splitlines() if line.split()[:1] == [group]]
        assert sorted(int(line[4].rstrip(":")) for line in lines) == list(range(1, 13)), group

    out = run([sys.executable, str(EXAMPLES / "fanout.py"), "report"], tmp_path, redis_url)
    for group in ("billing", "shipping", "notifications"):
        assert f"group {group:<13} lag 0, pending 0, dead letters 0  (caught up)" in out


def quickstart(*args, **env):
    """The README's first command, in the suite's own interpreter (an active environment)."""
    environment = {**os.environ, "VIRTUAL_ENV": sys.prefix, "PYTHON": sys.executable, **env}
    environment.pop("STREAMWORK_REDIS_URL", None)
    return subprocess.run(
        ["bash", str(EXAMPLES / "quickstart.sh"), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_quickstart_installs_starts_a_private_redis_and_runs_the_examples():
    # By default it never writes into a Redis it was not told about: a private server.
    result = quickstart()
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "started a private redis-server" in out
    assert "Received 'Hello World!'" in out
    assert "20 orders confirmed" in out
    assert "queue 'orders': 0 ready, 0 pending, 0 delayed, 0 dead letters  (empty)" in out
    assert "group shipping      lag 0, pending 0, dead letters 0  (caught up)" in out
    assert f"run the test suite with: {sys.executable} -m pytest" in out
    pid = int(out.split("(pid ")[1].split(")")[0])
    assert not os.path.exists(f"/proc/{pid}"), "the private redis-server was left running"


def test_quickstart_uses_the_redis_it_is_given(redis_url, client):
    result = quickstart("--redis-url", redis_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "using the Redis you named" in result.stdout
    assert "private redis-server" not in result.stdout
    assert client.exists("sw:queues")  # the examples ran against it


def test_quickstart_refuses_an_unknown_argument():
    result = quickstart("--redis", "x")
    assert result.returncode == 2
    assert "unknown argument: --redis" in result.stderr


def test_the_celery_port_runs_end_to_end(redis_url, tmp_path):
    """examples/from_celery: tasks.py ported from celery_original.py (a retried task, a
    chord, a routed message that expires, a schedule), run by run.py."""
    port = EXAMPLES / "from_celery"
    out = run([sys.executable, str(port / "run.py")], tmp_path, redis_url, PYTHONPATH=str(port))
    assert "average: 21.0" in out
    assert "notified: ['prices updated'] from queue lopri" in out
    assert "report: done" in out
    assert "nightly-report next at 02:00 UTC, cron '0 2 * * *'" in out
    assert "ran 7 messages, 1 retried, 0 dead" in out
