"""`streamwork status` and `streamwork cancel` in subprocesses against a real Redis."""

import json
from concurrent.futures import ThreadPoolExecutor

from streamwork import App
from streamwork._base import protocol
from streamwork.testing import drain, wait_until

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


EVENTFUL = """
    from streamwork import App

    app = App(events=True)

    @app.task(queue="video")
    def transcode(n):
        pass

    @app.task(queue="emails")
    def notify(n):
        pass
"""


def test_events_of_every_queue_are_merged_in_time_order(processes, write_app, redis_url):
    write_app("eventful", EVENTFUL)
    app = App(redis_url, events=True)
    transcode = app.task(queue="video", name="transcode")(lambda n: None)
    notify = app.task(queue="emails", name="notify")(lambda n: None)
    for n in range(3):  # video, emails, video, emails, ...: each in a millisecond of its own
        for task in (transcode, notify):
            task.send(n)
            sent_at = protocol.now_ms()
            wait_until(lambda: protocol.now_ms() > sent_at, interval=0.001)  # noqa: B023
    shown = processes.run("events", "eventful:app")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()[1:]]
    assert [row[1] for row in rows] == ["video", "emails"] * 3  # not all video first
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)


def test_events_command(processes, write_app, redis_url):
    write_app("eventful", EVENTFUL)
    app = App(redis_url, events=True)
    transcode = app.task(queue="video", name="transcode")(lambda n: None)
    handle = transcode.send(1)
    drain(app)
    shown = processes.run("events", "eventful:app")
    assert shown.returncode == 0, shown.stderr
    header, *lines = shown.stdout.splitlines()
    assert header.startswith("TIME (UTC)")
    rows = [line.split() for line in lines]
    assert [row[2] for row in rows] == ["sent", "started", "done"]
    assert all(row[1] == "video" and row[3] == handle.id for row in rows)
    as_json = [
        json.loads(line)
        for line in processes.run("events", "eventful:app", "--json").stdout.splitlines()
    ]
    assert [e["event"] for e in as_json] == ["sent", "started", "done"]
    after = processes.run("events", "eventful:app", "--since", as_json[1]["id"], "--json")
    assert [json.loads(line)["event"] for line in after.stdout.splitlines()] == ["done"]

    follower = processes.start("events", "eventful:app", "--follow", "--since", "$", "--json")
    try:
        clients = app.connection.redis.client_list
        wait_until(lambda: any("b" in c["flags"] for c in clients()), message="a blocked read")
        later = transcode.send(2)
        with ThreadPoolExecutor(1) as pool:
            line = pool.submit(follower.stdout.readline).result(timeout=20)
        assert json.loads(line)["message_id"] == later.id
    finally:
        follower.kill()
        follower.wait(10)

    write_app("quiet", TASKS)
    refused = processes.run("events", "quiet:app")
    assert refused.returncode == 1
    assert "this app records no events: create it with events=True" in refused.stderr


def test_a_misspelt_queue_option_exits_1_listing_the_known_queues(processes, write_app):
    write_app("media", TASKS)
    for args in (
        ("cancel", "media:app", "0" * 32, "--queue", "vidoe"),
        ("status", "media:app", "0" * 32, "--queue", "vidoe"),
        ("events", "media:app", "--queue", "vidoe"),
    ):
        run = processes.run(*args)
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        assert run.stderr.strip() == (
            "Error: unknown queue 'vidoe': namespace 'sw' knows video, emails"
        ), args


def test_status_and_events_show_progress_data(processes, write_app, redis_url):
    write_app("eventful", EVENTFUL)
    app = App(redis_url, events=True)

    @app.task(queue="video", name="transcode", bind=True)
    def transcode(message, n):
        message.progress(0.5, "half", data={"frames": n})

    handle = transcode.send(120)
    drain(app)
    shown = processes.run("status", "eventful:app", handle.id)
    lines = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert json.loads(lines["data"]) == {"frames": 120}
    as_json = json.loads(processes.run("status", "eventful:app", handle.id, "--json").stdout)
    assert as_json["data"] == {"frames": 120} and as_json["note"] == "half"
    events = processes.run("events", "eventful:app")
    [progress] = [line for line in events.stdout.splitlines() if " progress " in line]
    assert progress.endswith('50% half {"frames": 120}')
