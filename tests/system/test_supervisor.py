"""The supervisor in a subprocess: restarts, forced stops, rolling restarts, recycling,
orphans, JSON logs, metrics, and a Redis that goes away."""

import json
import os
import signal
import urllib.request

import pytest

from streamwork import App
from streamwork.ops.stats import queue_state
from streamwork.testing import RedisServer, free_port, wait_until

APP = """
    import os, time
    from pathlib import Path
    from streamwork import App

    app = App()

    def log(event):
        with open("events.log", "a") as f:
            f.write(f"{event} {os.getpid()}\\n")

    @app.task(queue="work")
    def work(n, seconds=0.0):
        log(f"start-{n}")
        time.sleep(seconds)
        log(f"done-{n}")
"""


def events(tmp_path):
    path = tmp_path / "events.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def done(tmp_path):
    return sorted(int(e[0].split("-")[1]) for e in events(tmp_path) if e[0].startswith("done"))


def worker_pids(supervisor_pid):
    """The pids of the supervisor's running worker processes."""
    children = f"/proc/{supervisor_pid}/task/{supervisor_pid}/children"
    try:
        with open(children) as f:
            pids = [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []
    # the spawn start method also runs a resource tracker: keep our workers only
    return [p for p in pids if b"run_process" in _cmdline(p) or b"spawn_main" in _cmdline(p)]


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def is_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def work(redis_url):
    app = App(redis_url)
    return app, app.task(queue="work", name="work")(lambda n, seconds=0.0: None)


def test_starts_n_processes_and_restarts_one_that_is_killed(processes, write_app, work, tmp_path):
    write_app("jobs", APP)
    _, task = work
    supervisor = processes.start("worker", "jobs:app", "-p", "2")
    pids = wait_until(lambda: len(worker_pids(supervisor.pid)) == 2 and worker_pids(supervisor.pid))
    os.kill(pids[0], signal.SIGKILL)
    wait_until(lambda: len(set(worker_pids(supervisor.pid)) - set(pids)) == 1, timeout=20)
    task.send_many([(n,) for n in range(20)])
    wait_until(lambda: done(tmp_path) == list(range(20)), timeout=20)
    supervisor.send_signal(signal.SIGTERM)
    stderr = supervisor.communicate(timeout=30)[1]
    assert supervisor.returncode == 0, stderr
    assert f"worker process {pids[0]} was killed by SIGKILL; restarting in 0.5s" in stderr


def test_graceful_stop_drains_every_process_then_exits_0(processes, write_app, work, tmp_path):
    write_app("jobs", APP)
    app, task = work
    supervisor = processes.start("worker", "jobs:app", "-p", "2", "-c", "2")
    task.send_many([(n, 1.0) for n in range(4)])
    wait_until(lambda: sum(e[0].startswith("start") for e in events(tmp_path)) == 4, timeout=20)
    supervisor.send_signal(signal.SIGINT)  # Ctrl-C
    stderr = supervisor.communicate(timeout=30)[1]
    assert supervisor.returncode == 0, stderr
    assert done(tmp_path) == [0, 1, 2, 3]
    assert queue_state(app, "work").is_empty


def test_second_signal_forces_and_the_cut_off_task_stays_pending(
    processes, write_app, work, tmp_path
):
    write_app("jobs", APP)
    app, task = work
    log = tmp_path / "supervisor.log"
    supervisor = processes.start("worker", "jobs:app", "-p", "1", log=log)
    task.send(1, 60.0)
    wait_until(lambda: events(tmp_path), timeout=20)
    supervisor.send_signal(signal.SIGTERM)
    # Signals sent back to back can merge into one: wait until the first was handled.
    wait_until(lambda: "finish their running messages" in log.read_text(), timeout=10)
    supervisor.send_signal(signal.SIGTERM)
    supervisor.wait(30)
    stderr = log.read_text()
    assert supervisor.returncode == 1, stderr
    assert "second signal: killing worker processes now" in stderr
    assert done(tmp_path) == []
    assert queue_state(app, "work").pending == 1  # recovered by the next worker


def test_grace_period_end_cuts_off_long_tasks(processes, write_app, work, tmp_path):
    write_app("jobs", APP)
    app, task = work
    supervisor = processes.start("worker", "jobs:app", "-p", "1", "--grace", "0.5")
    task.send(1, 60.0)
    wait_until(lambda: events(tmp_path), timeout=20)
    supervisor.send_signal(signal.SIGTERM)
    stderr = supervisor.communicate(timeout=30)[1]
    assert supervisor.returncode == 0, stderr
    assert "were cut off; they stay pending" in stderr
    assert queue_state(app, "work").pending == 1


def test_sighup_replaces_processes_one_by_one_without_dropping_work(
    processes, write_app, work, tmp_path
):
    write_app("jobs", APP)
    app, task = work
    supervisor = processes.start("worker", "jobs:app", "-p", "2")
    old = wait_until(lambda: len(worker_pids(supervisor.pid)) == 2 and worker_pids(supervisor.pid))
    task.send_many([(n, 0.05) for n in range(60)])
    supervisor.send_signal(signal.SIGHUP)
    wait_until(lambda: not set(worker_pids(supervisor.pid)) & set(old), timeout=30)
    wait_until(lambda: done(tmp_path) == list(range(60)), timeout=30)
    new = worker_pids(supervisor.pid)
    assert len(new) == 2
    supervisor.send_signal(signal.SIGTERM)
    stderr = supervisor.communicate(timeout=30)[1]
    assert supervisor.returncode == 0, stderr
    assert stderr.count(" replaced by ") == 2
    assert queue_state(app, "work").is_empty


def test_max_tasks_recycles_the_process(processes, write_app, work, tmp_path):
    write_app("jobs", APP)
    _, task = work
    task.send_many([(n,) for n in range(12)])
    run = processes.run("worker", "jobs:app", "-p", "1", "-c", "1", "--burst", "--max-tasks", "5")
    assert run.returncode == 0, run.stderr
    assert done(tmp_path) == list(range(12))
    assert run.stderr.count("recycled itself; starting a fresh one") == 2
    assert len({e[1] for e in events(tmp_path)}) == 3  # three processes did the work


def test_max_memory_recycles_the_process(processes, write_app, work, tmp_path):
    write_app("jobs", APP)
    _, task = work
    task.send_many([(n, 0.5) for n in range(3)])
    run = processes.run(
        "worker", "jobs:app", "-p", "1", "-c", "1", "--burst", "--max-memory", "1"
    )  # 1 MiB: every process is over it
    assert run.returncode == 0, run.stderr
    assert "is over max_memory_mb=1" in run.stderr
    assert "recycled itself" in run.stderr
    assert done(tmp_path) == [0, 1, 2]


def test_worker_processes_do_not_outlive_a_killed_supervisor(processes, write_app, work):
    write_app("jobs", APP)
    supervisor = processes.start("worker", "jobs:app", "-p", "2")
    pids = wait_until(lambda: len(worker_pids(supervisor.pid)) == 2 and worker_pids(supervisor.pid))
    supervisor.kill()
    supervisor.wait(10)
    wait_until(lambda: not any(is_alive(p) for p in pids), timeout=20)


def test_json_logs_carry_task_id_and_outcome(processes, write_app, work):
    write_app("jobs", APP)
    _, task = work
    handle = task.send(1)
    run = processes.run("worker", "jobs:app", "-p", "1", "--burst", "--log-format", "json")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    [record] = [r for r in records if r.get("outcome") == "done"]
    assert (record["task"], record["task_id"], record["level"]) == ("work", handle.id, "info")
    assert all({"time", "level", "pid", "logger", "message"} <= set(r) for r in records)


def test_metrics_are_served_for_all_processes(processes, write_app, work):
    write_app("jobs", APP)
    port = free_port()
    supervisor = processes.start(
        "worker", "jobs:app", "-p", "2", "--metrics-port", str(port),
        "--metrics-host", "127.0.0.1",
    )  # fmt: skip

    def scrape():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return ""

    text = wait_until(lambda: "streamwork_worker_processes 2.0" in scrape() and scrape())
    assert "streamwork_worker_restarts_total" in text
    supervisor.send_signal(signal.SIGTERM)
    _, stderr = supervisor.communicate(timeout=30)
    # the banner says where the metrics and probes listen
    assert f"http://127.0.0.1:{port}/metrics, /healthz, /readyz" in stderr, stderr


def test_metrics_port_in_use_is_a_one_line_error(processes, write_app, work):
    import socket

    write_app("jobs", APP)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = processes.run(
            "worker", "jobs:app", "--metrics-port", str(port), "--metrics-address", "127.0.0.1"
        )
    assert run.returncode == 1
    assert f"Error: cannot serve metrics on 127.0.0.1:{port}" in run.stderr


def test_worker_survives_redis_going_away_and_loses_nothing(processes, write_app, tmp_path):
    write_app("jobs", APP)
    server = RedisServer(["--appendonly", "yes", "--appendfsync", "always"]).start()
    try:
        app = App(server.url)
        task = app.task(queue="work", name="work")(lambda n, seconds=0.0: None)
        log = tmp_path / "supervisor.log"
        # A read Redis applied but whose reply its stop cut off leaves its entries pending
        # with this worker, claimed again after the visibility timeout: keep it short.
        supervisor = processes.start(
            "worker", "jobs:app", "-p", "1", "--visibility-timeout", "3", log=log,
            STREAMWORK_REDIS_URL=server.url,
        )  # fmt: skip
        task.send_many([(n, 0.01) for n in range(20)])
        wait_until(lambda: len(done(tmp_path)) >= 5, timeout=20)
        server.stop()  # Redis goes away mid-stream: the worker keeps retrying, it does not exit
        wait_until(lambda: "cannot reach Redis" in log.read_text(), timeout=20)
        assert supervisor.poll() is None
        server.start()  # ... and comes back with its append-only file
        app.close()
        task.send_many([(n, 0.0) for n in range(20, 30)])
        wait_until(lambda: set(done(tmp_path)) == set(range(30)), timeout=60)
        wait_until(lambda: queue_state(app, "work").is_empty, timeout=30)
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(30)
        stderr = log.read_text()
        assert supervisor.returncode == 0, stderr
        assert "Traceback" not in stderr
        # one warning when Redis went, one line when it came back: not an error per retry
        assert stderr.count("cannot reach Redis") == 1, stderr
        assert stderr.count("Redis is back after") == 1, stderr
    finally:
        server.cleanup()


def test_a_dead_process_leaves_no_stale_in_flight_gauge(processes, write_app, work, tmp_path):
    write_app("jobs", APP)
    _, task = work
    port = free_port()
    supervisor = processes.start(
        "worker", "jobs:app", "-p", "1", "--metrics-port", str(port),
        "--metrics-address", "127.0.0.1",
    )  # fmt: skip

    def in_flight():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        values = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("streamwork_tasks_in_flight{")
        ]
        return sum(values)

    task.send(1, 60.0)
    wait_until(lambda: in_flight() == 1.0, timeout=30)
    [pid] = worker_pids(supervisor.pid)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: worker_pids(supervisor.pid) and pid not in worker_pids(supervisor.pid))
    # the killed process's live gauge went with it (a stale one would stay at 1 for good)
    wait_until(lambda: in_flight() == 0.0, timeout=10)
    supervisor.kill()


def probe(port, path):
    """(status, JSON body) of GET http://127.0.0.1:port/path; (None, None) if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None, None


def test_health_and_readiness_probes(processes, write_app, tmp_path):
    write_app("jobs", APP)
    server = RedisServer().start()
    try:
        port = free_port()
        log = tmp_path / "supervisor.log"
        supervisor = processes.start(
            "worker", "jobs:app", "-p", "2", "--metrics-port", str(port),
            "--metrics-address", "127.0.0.1", log=log, STREAMWORK_REDIS_URL=server.url,
        )  # fmt: skip
        status, body = wait_until(lambda: probe(port, "/healthz")[0] and probe(port, "/healthz"))
        assert status == 200 and body["status"] == "ok" and body["pid"] == supervisor.pid
        status, body = wait_until(lambda: (r := probe(port, "/readyz"))[0] == 200 and r, 30)
        assert body == {
            "status": "ready",
            "redis": "ok",
            "processes": {"expected": 2, "serving": 2},
        }
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"streamwork_worker_processes 2.0" in response.read()

        # a worker process dies: not ready until its replacement serves
        os.kill(worker_pids(supervisor.pid)[0], signal.SIGKILL)
        status, body = wait_until(lambda: (r := probe(port, "/readyz"))[0] == 503 and r, 10, 0.005)
        assert body["status"] == "not ready" and body["processes"]["serving"] < 2
        wait_until(lambda: probe(port, "/readyz")[0] == 200, 30)

        # Redis goes away: not ready (saying why), while /healthz still answers
        server.stop()
        status, body = wait_until(lambda: (r := probe(port, "/readyz"))[0] == 503 and r, 30)
        assert body["redis"] != "ok" and "127.0.0.1" in body["redis"]
        assert probe(port, "/healthz")[0] == 200
        server.start()
        wait_until(lambda: probe(port, "/readyz")[0] == 200, 60)

        # stopping: not ready at once, while the processes finish what they run
        app = App(server.url)
        app.task(queue="work", name="work")(lambda n, seconds=0.0: None).send(1, 3.0)
        wait_until(lambda: "start-1" in [e[0] for e in events(tmp_path)], 30)
        supervisor.send_signal(signal.SIGTERM)
        status, body = wait_until(lambda: (r := probe(port, "/readyz"))[0] == 503 and r, 10)
        assert body["stopping"] is True
        supervisor.wait(30)
        app.close()
        assert supervisor.returncode == 0, log.read_text()
    finally:
        server.cleanup()
