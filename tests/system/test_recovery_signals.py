"""Workers frozen (SIGSTOP) or killed (SIGKILL) mid-task: exactly one outcome, nothing lost."""

import os
import signal

from streamwork import App
from streamwork.ops import dead_letters
from streamwork.ops.stats import queue_state
from streamwork.testing import wait_until

PAYMENTS = """
    import os, time
    from pathlib import Path
    from streamwork import App

    app = App()

    def log(event):
        with open("runs.log", "a") as f:
            f.write(f"{event} {os.getpid()}\\n")

    @app.task(queue="pay", max_retries=3, max_deliveries=int(os.environ.get("MAX_DELIVERIES", "5")))
    def pay(n):
        log("start")
        if os.environ.get("ALWAYS_DIE"):
            os._exit(17)
        if not Path("first").exists():
            Path("first").write_text(str(os.getpid()))
            time.sleep(float(os.environ.get("HOLD", "1.5")))
            log("fail")
            raise RuntimeError("fails after being frozen")
        log("done")
"""


def events(tmp_path):
    path = tmp_path / "runs.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def worker_args(*extra):
    return ("worker", "payments:app", "-p", "1", "--visibility-timeout", "1", *extra)


def first_runner(tmp_path):
    """The pid of the worker process that began the first run."""
    wait_until(lambda: (tmp_path / "first").exists(), timeout=20)
    return int(wait_until(lambda: (tmp_path / "first").read_text(), timeout=5))


def test_frozen_worker_cannot_retry_or_dead_letter_what_another_completed(
    processes, write_app, redis_url, tmp_path
):
    write_app("payments", PAYMENTS)
    app = App(redis_url)
    app.task(queue="pay", name="pay")(lambda n: None).send(1)
    first = processes.start(*worker_args())
    frozen = first_runner(tmp_path)
    os.kill(frozen, signal.SIGSTOP)  # frozen mid-task, past the visibility timeout
    try:
        second = processes.start(*worker_args())
        wait_until(lambda: any(e[0] == "done" for e in events(tmp_path)), timeout=20)
        wait_until(lambda: queue_state(app, "pay").pending == 0, timeout=10)
    finally:
        os.kill(frozen, signal.SIGCONT)
    # Resumed, the frozen handler fails: its retry must be dropped, not written.
    wait_until(lambda: ["fail", str(frozen)] in events(tmp_path), timeout=20)
    for process in (first, second):
        process.send_signal(signal.SIGTERM)
    first_err = first.communicate(timeout=30)[1]
    second.communicate(timeout=30)
    assert first.returncode == 0 and second.returncode == 0
    assert "lost ownership" in first_err
    assert [e[0] for e in events(tmp_path)] == ["start", "start", "done", "fail"]
    assert events(tmp_path)[2][1] != str(frozen)
    state = queue_state(app, "pay")
    assert state.is_empty and state.dead_letters == 0, state


def test_sigkilled_worker_task_runs_once_elsewhere(processes, write_app, redis_url, tmp_path):
    write_app("payments", PAYMENTS)
    app = App(redis_url)
    app.task(queue="pay", name="pay")(lambda n: None).send(1)
    first = processes.start(*worker_args(), HOLD="30")
    killed = first_runner(tmp_path)
    second = processes.start(*worker_args())
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: any(e[0] == "done" for e in events(tmp_path)), timeout=20)
    wait_until(lambda: queue_state(app, "pay").is_empty, timeout=10)
    for supervisor in (first, second):
        supervisor.send_signal(signal.SIGTERM)
    first_err = first.communicate(timeout=30)[1]
    second.communicate(timeout=30)
    assert f"worker process {killed} was killed by SIGKILL; restarting" in first_err
    assert [e[0] for e in events(tmp_path)] == ["start", "start", "done"]
    assert events(tmp_path)[2][1] != str(killed)
    assert queue_state(app, "pay").dead_letters == 0


def test_message_that_kills_every_worker_is_dead_lettered_after_max_deliveries(
    processes, write_app, redis_url, tmp_path
):
    write_app("payments", PAYMENTS)
    app = App(redis_url)
    app.task(queue="pay", name="pay")(lambda n: None).send(1)
    # Its process dies each time; the supervisor restarts it; the third delivery is refused.
    run = processes.run(
        "worker", "payments:app", "--burst", "-p", "1", "--visibility-timeout", "0.3",
        ALWAYS_DIE="1", MAX_DELIVERIES="2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("exited with code 17; restarting") == 2
    assert len(events(tmp_path)) == 2
    [entry] = dead_letters.list_dead_letters(app.connection, app.queue_source("pay"))
    assert "delivered 3 times without an outcome (max_deliveries=2)" in entry.letter.reason
    assert queue_state(app, "pay").is_empty
