"""`streamwork worker` in a subprocess: burst runs, clean stops, crashes, and bad input."""

import signal

import pytest

from streamwork import App
from streamwork._base import protocol
from streamwork.ops.stats import queue_state
from streamwork.testing import free_port, wait_until

JOBS = """
    import os, time
    from pathlib import Path
    from streamwork import App

    app = App()
    LOG = Path(os.environ.get("JOB_LOG", "jobs.log"))

    @app.task(queue="jobs")
    def record(n):
        with LOG.open("a") as f:
            f.write(f"{n}\\n")

    @app.task(queue="slow")
    def slow(n):
        Path("started").write_text("yes")
        time.sleep(float(os.environ.get("SLOW_SECONDS", "1")))
        with LOG.open("a") as f:
            f.write(f"slow {n}\\n")
"""

CRASHING = """
    import os
    from pathlib import Path
    from streamwork import App

    app = App()
    LOG = Path("runs.log")

    @app.task(queue="fragile", ack_mode=os.environ["ACK_MODE"])
    def fragile(n):
        with LOG.open("a") as f:
            f.write(f"{n}\\n")
        if not Path("crashed").exists():
            Path("crashed").write_text("once")
            os._exit(17)  # the worker process dies in the middle of the task
"""


def lines(path):
    return path.read_text().split() if path.exists() else []


def test_burst_worker_runs_everything_then_exits_0(processes, write_app, redis_url, tmp_path):
    write_app("jobs", JOBS)
    app = App(redis_url)
    record = app.task(queue="jobs", name="record")(lambda n: None)
    record.send_many(range(50))
    done = processes.run("worker", "jobs:app", "--queues", "jobs", "--burst", "-c", "4", "-p", "2")
    assert done.returncode == 0, done.stderr
    assert sorted(map(int, lines(tmp_path / "jobs.log"))) == list(range(50))
    assert queue_state(app, "jobs").is_empty
    banner = done.stderr
    assert "app:         jobs:app" in banner and "queues:      jobs" in banner
    assert "processes:   2 x concurrency 4  (burst)" in banner
    assert redis_url in banner
    assert banner.count("drained its queues and exited") == 2


def test_sigterm_lets_the_running_task_finish_and_exits_0(
    processes, write_app, redis_url, tmp_path
):
    write_app("jobs", JOBS)
    app = App(redis_url)
    app.task(queue="slow", name="slow")(lambda n: None).send(1)
    worker = processes.start("worker", "jobs:app", "--queues", "slow", SLOW_SECONDS="1")
    wait_until(lambda: (tmp_path / "started").exists(), timeout=20)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert lines(tmp_path / "jobs.log") == ["slow", "1"]
    assert queue_state(app, "slow").is_empty


@pytest.mark.parametrize(("ack_mode", "runs"), [("late", ["1", "1"]), ("auto", ["1"])])
def test_crash_mid_task_late_redelivers_auto_does_not(
    processes, write_app, redis_url, tmp_path, ack_mode, runs
):
    write_app("crashing", CRASHING)
    app = App(redis_url)
    app.task(queue="fragile", name="fragile")(lambda n: None).send(1)
    # One process: it dies mid-task, the supervisor starts a fresh one, which in late mode
    # finds the entry abandoned (idle past the visibility timeout) and runs it again.
    done = processes.run(
        "worker", "crashing:app", "--burst", "-p", "1", "--visibility-timeout", "0.3",
        ACK_MODE=ack_mode,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "exited with code 17; restarting" in done.stderr
    assert lines(tmp_path / "runs.log") == runs
    assert queue_state(app, "fragile").is_empty


def one_line_error(result, code, text):
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "Error" in line]
    assert len(error_lines) == 1, result.stderr
    assert text in error_lines[0], result.stderr


def test_bad_app_specs_are_one_line_errors(processes, write_app):
    write_app("jobs", JOBS)
    one_line_error(processes.run("worker", "jobs"), 2, "is not MODULE:APP")
    one_line_error(processes.run("worker", "nosuch:app"), 2, "cannot import module 'nosuch'")
    one_line_error(processes.run("worker", "jobs:nope"), 2, "has no streamwork App named 'nope'")
    one_line_error(processes.run("worker", "jobs:LOG"), 2, "(it is a PosixPath)")


def test_unknown_queue_and_bad_options_are_one_line_errors(processes, write_app):
    write_app("jobs", JOBS)
    one_line_error(processes.run("worker", "jobs:app", "-q", "nope"), 1, "unknown queue 'nope'")
    one_line_error(processes.run("worker", "jobs:app", "-c", "0"), 2, "--concurrency")


def test_unreachable_redis_is_a_one_line_error(processes, write_app):
    write_app("jobs", JOBS)
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    result = processes.run("worker", "jobs:app", STREAMWORK_REDIS_URL=url)
    one_line_error(result, 1, "cannot reach Redis at redis://user:***@127.0.0.1")
    assert "s3cret" not in result.stderr


EVENTS = """
    from pathlib import Path
    from streamwork import App

    app = App()

    @app.subscriber("audit", group="archive", start="beginning")
    def archive(message):
        with open("audit.log", "a") as f:
            f.write(f"{message.payload}\\n")

    @app.task(queue="jobs")
    def job():
        pass
"""


def test_worker_runs_the_subscribers_of_the_topics_it_is_given(
    processes, write_app, redis_url, tmp_path
):
    write_app("events", EVENTS)
    App(redis_url).publish_many("audit", range(5))
    done = processes.run("worker", "events:app", "--topics", "audit", "--burst", "-p", "1")
    assert done.returncode == 0, done.stderr
    assert sorted(map(int, lines(tmp_path / "audit.log"))) == list(range(5))
    assert "topics:      audit/archive" in done.stderr and "queues:      -" in done.stderr
    one_line_error(
        processes.run("worker", "events:app", "--topics", "nope"),
        1,
        "unknown topic 'nope': this app's subscribers read audit",
    )


POISON = """
    import os
    import time

    import redis

    from streamwork import App

    app = App()
    counts = redis.Redis.from_url(os.environ["STREAMWORK_REDIS_URL"])

    @app.task(queue="jobs", max_deliveries=3)
    def poison():
        time.sleep(0.2)  # its neighbours are surely running (and counted) by now
        os._exit(1)  # kills its worker process, whatever runs beside it

    @app.task(queue="jobs")
    def neighbour(n):
        counts.incr(f"runs:{n}")
        time.sleep(0.5)
"""


def test_poison_message_costs_its_neighbours_at_most_one_rerun(processes, write_app, redis_url):
    write_app("poisoned", POISON)
    app = App(redis_url)
    neighbour = app.task(queue="jobs", name="neighbour")(lambda n: None)
    poison = app.task(queue="jobs", name="poison")(lambda: None)
    neighbour.send(0)
    neighbour.send(1)
    poison.send()
    for n in range(2, 6):
        neighbour.send(n)
    done = processes.run(
        "worker", "poisoned:app", "--burst", "-p", "1", "-c", "4", "--visibility-timeout", "1",
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = {n: int(app.connection.redis.get(f"runs:{n}") or 0) for n in range(6)}
    assert all(1 <= count <= 2 for count in runs.values()), runs
    assert "alone" in done.stderr
    [(_, fields)] = app.connection.redis.xrange(app.keys("jobs").dead_letters)
    assert protocol.decode_dead_letter(fields[b"m"]).task == "poison"
    assert queue_state(app, "jobs").is_empty


def test_the_global_log_level_applies_to_the_worker_unless_it_has_its_own(
    processes, write_app, redis_url
):
    write_app("jobs", JOBS)
    App(redis_url).task(queue="jobs", name="record")(lambda n: None).send(1)

    def info_lines(*args):
        run = processes.run(*args)
        assert run.returncode == 0, run.stderr
        return [line for line in run.stderr.splitlines() if " INFO " in line]

    burst = ("worker", "jobs:app", "--queues", "jobs", "--burst", "-p", "1")
    assert info_lines(*burst)  # a worker logs at info by default
    assert info_lines("--log-level", "error", *burst) == []
    assert info_lines("--log-level", "error", *burst, "--log-level", "info")  # its own wins
