"""A chord of 200 header tasks on two worker processes, one SIGKILLed right after it
recorded a header child in the workflow (before that child's XACK): the callback runs
exactly once, with every result; then `streamwork workflow show` prints the tree."""

import json
import signal

from streamwork import App, chord
from streamwork.testing import wait_until

CHORDS = """
    import os, signal, threading, time
    from pathlib import Path
    import redis
    from streamwork import App

    app = App()

    def die_once_recorded(workflow, node):
        # Poll the workflow record from a thread: SIGKILL this process the moment its
        # outcome is recorded, while its worker is between that step and the XACK.
        client = redis.Redis.from_url(os.environ["STREAMWORK_REDIS_URL"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if client.hget(f"sw:{{wf:{workflow}}}:workflow", f"s:{node}"):
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.0005)

    @app.task(queue="parts", bind=True)
    def part(message, n):
        if n == 7 and not Path("killed").exists():
            Path("killed").write_text(str(os.getpid()))
            headers = message.headers
            threading.Thread(
                target=die_once_recorded, args=(headers["workflow"], headers["node"]), daemon=True
            ).start()
        return n * 2

    @app.task(queue="totals")
    def total(values):
        with open("callbacks.log", "a") as f:
            f.write(f"{len(values)} {sum(values)}\\n")
        return sum(values)
"""


def test_chord_callback_runs_once_when_a_worker_is_killed_mid_child(
    processes, write_app, redis_url, tmp_path
):
    write_app("chords", CHORDS)
    app = App(redis_url)
    part = app.task(queue="parts", name="part")(lambda n: None)
    total = app.task(queue="totals", name="total")(lambda values: None)
    handle = chord([part.s(n) for n in range(200)], total.s()).send()
    worker = processes.start(
        "worker", "chords:app", "-p", "2", "--visibility-timeout", "1", "--concurrency", "8"
    )
    try:
        assert handle.result(timeout=90) == sum(2 * n for n in range(200))
        callbacks = tmp_path / "callbacks.log"
        wait_until(callbacks.exists, timeout=10)
    finally:
        worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=60)
    killed = (tmp_path / "killed").read_text()
    assert f"worker process {killed} was killed by SIGKILL" in stderr
    assert callbacks.read_text().splitlines() == [f"200 {sum(2 * n for n in range(200))}"]

    shown = processes.run("workflow", "show", "chords:app", handle.id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"workflow {handle.id}  chord  done")
    assert lines[1] == "chord (on_failure=fail)  done"
    assert lines[2] == "├─ group  done"
    assert lines[-1].startswith("└─ total  [totals]") and lines[-1].endswith("done")
    assert sum(" part  [parts] " in line for line in lines) == 200
    as_json = json.loads(
        processes.run("workflow", "show", "chords:app", handle.id, "--json").stdout
    )
    assert as_json["state"] == "done" and len(as_json["nodes"]) == 203


def test_workflow_cli_refuses_bad_ids_and_unknown_workflows(processes, write_app, redis_url):
    write_app("chords", CHORDS)
    app = App(redis_url)
    part = app.task(queue="parts", name="part")(lambda n: None)
    handle = chord([part.s(1)], part.s()).send()  # no worker: it stays running
    shown = processes.run("workflow", "show", "chords:app", handle.id).stdout.splitlines()
    assert shown[0] == f"workflow {handle.id}  chord  running"
    assert shown[2].startswith("├─ group  running")
    assert shown[3].startswith("│  └─ part  [parts]") and shown[3].endswith("  queued")
    assert shown[4].startswith("└─ part  [parts]") and shown[4].endswith("  waiting")
    assert processes.run("workflow", "cancel", "chords:app", handle.id).stdout == "cancelled\n"
    again = processes.run("workflow", "cancel", "chords:app", handle.id, "--reason", "x")
    assert again.stdout == "cancelled\n"  # a repeat answers as the first did
    shown = processes.run("workflow", "show", "chords:app", handle.id).stdout.splitlines()
    assert shown[0].startswith(f"workflow {handle.id}  chord  cancelled")
    assert shown[2].startswith("├─ group  cancelled")
    assert shown[3].endswith("  cancelled") and shown[4].endswith("  cancelled"), shown
    assert handle.status().state == "cancelled"
    bad = processes.run("workflow", "show", "chords:app", "not-an-id!")
    assert bad.returncode == 2 and "is not a workflow id" in bad.stderr
    unknown = processes.run("workflow", "show", "chords:app", "0" * 32)
    assert unknown.returncode == 1
    assert f"no workflow {'0' * 32}: never sent, or it expired" in unknown.stderr
    cancelled = processes.run("workflow", "cancel", "chords:app", "0" * 32)
    assert cancelled.returncode == 1 and "no workflow" in cancelled.stderr
