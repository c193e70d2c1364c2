"""Schedules with real worker processes and the `streamwork schedules` CLI: three workers
tick one schedule and each tick is enqueued once, through a SIGKILL; list, pause, resume,
trigger and remove from the command line."""

import itertools
import json
import signal
from collections import defaultdict

import redis

from streamwork import App
from streamwork._base import protocol
from streamwork.testing import wait_until

SCHEDULED = """
    import os

    import redis

    from streamwork import App

    app = App()
    log = redis.Redis.from_url(os.environ["STREAMWORK_REDIS_URL"])

    @app.periodic(every=1, bind=True)
    def beat(message):
        log.rpush("ticks", f"{message.headers['scheduled_for']} {message.id}")

    @app.task
    def job():
        pass

    app.schedule("nightly", job, cron="0 2 * * *", tz="Europe/Paris")
"""


def enqueued_ticks(client):
    """{scheduled_for: {message ids}} from what the handlers logged (runs are at least once;
    a message id per tick says it was enqueued once)."""
    ticks = defaultdict(set)
    for line in client.lrange("ticks", 0, -1):
        due, message_id = line.decode().split()
        ticks[int(due)].add(message_id)
    return ticks


def test_three_workers_enqueue_each_tick_once_through_a_sigkill(
    processes, write_app, redis_url, tmp_path
):
    write_app("scheduled", SCHEDULED)
    client = redis.Redis.from_url(redis_url)
    workers = [
        processes.start("worker", "scheduled:app", "-p", "1", log=tmp_path / f"w{n}.log")
        for n in range(3)
    ]
    wait_until(lambda: len(enqueued_ticks(client)) >= 4, timeout=30, message="first ticks")
    workers[0].send_signal(signal.SIGKILL)  # its child dies with it (PDEATHSIG)
    workers[0].wait(10)
    wait_until(lambda: len(enqueued_ticks(client)) >= 10, timeout=30, message="ten ticks")
    for worker in workers[1:]:
        worker.send_signal(signal.SIGTERM)
    for worker in workers[1:]:
        worker.wait(30)
    ticks = enqueued_ticks(client)
    dues = sorted(ticks)
    assert all(len(ids) == 1 for ids in ticks.values()), ticks  # no tick enqueued twice
    assert [b - a for a, b in itertools.pairwise(dues)] == [1000] * (len(dues) - 1)  # none lost
    app = App(redis_url)
    beat = app.get_schedule("beat")
    assert beat.enqueued >= len(dues) and beat.missed == 0


def test_schedules_cli(processes, write_app, redis_url):
    write_app("scheduled", SCHEDULED)
    empty = processes.run("schedules", "scheduled:app")
    assert empty.returncode == 0
    assert "no schedules (declared ones are written when a worker starts)" in empty.stdout
    processes.run("worker", "scheduled:app", "--burst", timeout=60)  # writes them, exits

    listed = processes.run("schedules", "scheduled:app")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "TASK", "QUEUE", "RULE"]
    nightly = next(line for line in lines if line.startswith("nightly"))
    assert "cron '0 2 * * *' Europe/Paris" in nightly and "CET (" in nightly
    assert " UTC)" in nightly and nightly.rstrip().endswith("active")

    as_json = json.loads(processes.run("schedules", "scheduled:app", "--json").stdout)
    assert [s["id"] for s in as_json] == ["beat", "nightly"]
    assert as_json[1]["next_run"].endswith("T01:00:00+00:00")  # 02:00 Paris in winter

    paused = processes.run("schedules", "pause", "scheduled:app", "nightly")
    assert paused.stdout.strip() == "schedule 'nightly' paused"
    listed = processes.run("schedules", "list", "scheduled:app").stdout
    assert next(line for line in listed.splitlines() if line.startswith("nightly")).endswith(
        "paused"
    )
    resumed = processes.run("schedules", "resume", "scheduled:app", "nightly")
    assert "schedule 'nightly' resumed; next run 20" in resumed.stdout

    triggered = processes.run("schedules", "trigger", "scheduled:app", "nightly")
    message_id = triggered.stdout.split()[-1]
    app = App(redis_url)
    [(_, fields)] = app.connection.redis.xrange(app.keys("default").stream)
    message = protocol.decode(fields[b"m"])
    assert (message.id, message.task, message.headers["schedule"]) == (
        message_id,
        "job",
        "nightly",
    )

    removed = processes.run("schedules", "remove", "scheduled:app", "nightly")
    assert removed.stdout.strip() == "schedule 'nightly' removed"
    assert [s.id for s in app.schedules()] == ["beat"]

    for action in ("pause", "resume", "trigger", "remove"):
        unknown = processes.run("schedules", action, "scheduled:app", "nope")
        assert unknown.returncode == 1
        assert unknown.stderr.strip() == "Error: no schedule 'nope' in namespace 'sw'"
    missing = processes.run("schedules", "pause", "scheduled:app")
    assert missing.returncode == 2 and "Missing argument 'ID'" in missing.stderr
    bad_app = processes.run("schedules", "nomodule:app")
    assert bad_app.returncode == 2


def test_schedules_cli_with_redis_unreachable_is_a_one_line_error(processes, write_app):
    from streamwork.testing import free_port
    from system.test_cli_worker import one_line_error

    write_app("scheduled", SCHEDULED)
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    for args in (("schedules", "scheduled:app"), ("schedules", "pause", "scheduled:app", "beat")):
        result = processes.run(*args, STREAMWORK_REDIS_URL=url)
        one_line_error(result, 1, "cannot reach Redis at redis://user:***@127.0.0.1")
        assert "s3cret" not in result.stderr
