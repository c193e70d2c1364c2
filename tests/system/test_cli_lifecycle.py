"""`streamwork status` and `streamwork cancel` in subprocesses against a real Redis."""

import json

from streamwork import App
from streamwork.testing import drain

TASKS = """
    from streamwork import App

    app = App()

    @app.task(queue="video")
    def transcode(n):
        pass

    @app.task(queue="emails")
    def send_email(to):
        pass
"""


def test_status_and_cancel(processes, write_app, redis_url):
    write_app("media", TASKS)
    app = App(redis_url)
    transcode = app.task(queue="video", name="transcode")(lambda n: None)
    done, queued = transcode.send(1), transcode.send(2)
    worker_app = App(redis_url)  # runs what is queued, after the CLI looked
    worker_app.task(queue="video", name="transcode")(lambda n: None)

    shown = processes.run("status", "media:app", queued.id)
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert lines["state"].strip() == "queued" and lines["queue"].strip() == "video"

    cancelled = processes.run("cancel", "media:app", queued.id, "--reason", "duplicate")
    assert cancelled.stdout.strip() == "cancelled: it was queued, it will not run"
    assert drain(worker_app) == 1  # only `done` runs
    as_json = json.loads(processes.run("status", "media:app", queued.id, "--json").stdout)
    assert (as_json["state"], as_json["error"], as_json["task"]) == (
        "cancelled",
        "duplicate",
        "transcode",
    )
    again = processes.run("cancel", "media:app", done.id)
    assert again.stdout.strip() == "not cancelled: it had already ended (done)"

    missing = processes.run("status", "media:app", "0" * 32)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"Error: no status for message {'0' * 32} in any queue of namespace 'sw' "
        "(never sent, or its status expired)"
    )
    bad = processes.run("cancel", "media:app", "not an id!")
    assert bad.returncode == 2 and "is not a message id" in bad.stderr
    elsewhere = processes.run("status", "media:app", done.id, "--queue", "emails")
    assert elsewhere.returncode == 1 and "in queue 'emails'" in elsewhere.stderr
