"""`streamwork send`, `stats` and `purge` in subprocesses against a real Redis."""

import json

from streamwork import App
from streamwork._base import ids, protocol
from streamwork.ops.stats import queue_state
from streamwork.testing import drain

TASKS = """
    from streamwork import App

    app = App()

    @app.task(queue="emails")
    def send_email(to, subject="hi", tags=()):
        pass

    @app.task(queue="reports")
    async def build(day):
        pass
"""

LEDGER = """
    from streamwork import App

    app = App()

    @app.task(queue="ledger", partitions=3)
    def post(account, n):
        pass
"""


def sent(app, queue):
    """The messages in `queue`'s stream, named (a plain send's is its entry's: ids.py)."""
    return [
        ids.named(protocol.decode(f[b"m"]), queue, None, entry_id)
        for entry_id, f in app.connection.redis.xrange(app.keys(queue).stream)
    ]


def test_send_parses_json_arguments_and_prints_the_id(processes, write_app, redis_url):
    write_app("tasks", TASKS)
    run = processes.run(
        "send", "tasks:app", "send_email", "a@example.com", "--kwargs",
        '{"subject": "welcome", "tags": ["new", 1]}',
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    [message] = sent(App(redis_url), "emails")
    assert run.stdout.strip() == message.id
    assert message.args == ("a@example.com",)
    assert message.kwargs == {"subject": "welcome", "tags": ["new", 1]}
    numbers = processes.run("send", "tasks:app", "build", "20261125")
    assert numbers.returncode == 0
    assert sent(App(redis_url), "reports")[0].args == (20261125,)


def test_send_with_delay_and_key(processes, write_app, redis_url):
    write_app("tasks", TASKS)
    first = processes.run("send", "tasks:app", "build", "1", "--delay", "60", "--key", "day-1")
    again = processes.run("send", "tasks:app", "build", "1", "--delay", "60", "--key", "day-1")
    assert first.returncode == again.returncode == 0
    assert again.stdout.split()[0] == first.stdout.strip()
    assert "duplicate" in again.stdout
    assert queue_state(App(redis_url), "reports").delayed == 1


def test_send_errors_are_one_line(processes, write_app):
    write_app("tasks", TASKS)
    unknown = processes.run("send", "tasks:app", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "Error: unknown task 'nope': tasks:app has build, send_email"
    bad = processes.run("send", "tasks:app", "build")
    assert bad.returncode == 1
    assert "build(): missing a required argument: 'day'" in bad.stderr
    not_json = processes.run("send", "tasks:app", "build", "1", "--kwargs", "{oops")
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr
    for run in (unknown, bad, not_json):
        assert "Traceback" not in run.stderr


def test_stats_shows_counts_rates_and_littles_law(processes, write_app, redis_url):
    write_app("tasks", TASKS)
    app = App(redis_url)
    build = app.task(queue="reports", name="build")(lambda day: None)
    build.send_many(range(30))
    drain(app, ["reports"])
    build.send_many(range(5))
    build.send_with(args=(9,), delay=300)
    run = processes.run("stats", "tasks:app", "--interval", "0.2", "--json")
    assert run.returncode == 0, run.stderr
    by_queue = {row["queue"]: row for row in json.loads(run.stdout)["queues"]}
    reports = by_queue["reports"]
    assert (reports["ready"], reports["pending"], reports["delayed"]) == (5, 0, 1)
    assert (reports["done"], reports["runs"], reports["added"]) == (30, 30, 35)
    assert reports["wait"] is not None and reports["wait"] >= 0
    assert by_queue["emails"]["ready"] == 0
    table = processes.run("stats", "tasks:app", "--interval", "0.2")
    assert table.returncode == 0
    assert "L=λW" in table.stdout and "reports" in table.stdout and "emails" in table.stdout


def test_stats_shows_a_partitioned_queue_as_one_with_a_row_per_partition(
    processes, write_app, redis_url
):
    write_app("ledger", LEDGER)
    post = App(redis_url).task(queue="ledger", name="post", partitions=3)(lambda a, n: None)
    for n in range(4):
        post.send(f"account-{n}", n)
    run = processes.run("stats", "ledger:app", "--interval", "0.2", "--json")
    assert run.returncode == 0, run.stderr
    ledger = {row["queue"]: row for row in json.loads(run.stdout)["queues"]}["ledger"]
    assert ledger["ready"] == 4
    assert [(p["queue"], p["ready"]) for p in ledger["partitions"]] == [
        ("ledger~0", 2),
        ("ledger~1", 1),
        ("ledger~2", 1),
    ]
    table = processes.run("stats", "ledger:app", "--interval", "0.2").stdout
    rows = [line.split() for line in table.splitlines()]
    assert next(r for r in rows if r[0] == "ledger")[:6] == ["ledger", "4", "0", "0", "0", "0"]
    assert next(r for r in rows if r[0] == "ledger~0") == ["ledger~0", "2", "0", "0", "0"]


def test_purge_deletes_waiting_and_delayed_but_not_running_messages(
    processes, write_app, redis_url
):
    write_app("tasks", TASKS)
    app = App(redis_url)
    build = app.task(queue="reports", name="build")(lambda day: None)
    build.send_many(range(3))
    stream = app.keys("reports").stream
    app.connection.redis.xgroup_create(stream, "workers", id="0")
    app.connection.redis.xreadgroup(
        "workers", "busy-worker", {stream: ">"}, count=1
    )  # one is running
    build.send_many(range(2500))
    build.send_with(args=(1,), delay=60)
    refused = processes.run("purge", "tasks:app", "reports")
    assert refused.returncode == 1 and queue_state(app, "reports").ready == 2502
    run = processes.run("purge", "tasks:app", "reports", "--yes")
    assert run.returncode == 0, run.stderr
    assert "purged 2502 waiting and 1 delayed message(s) from 'reports'" in run.stdout
    state = queue_state(app, "reports")
    assert (state.ready, state.pending, state.delayed) == (0, 1, 0)


def test_top_redraws_a_live_view_of_queues_topics_and_workers(processes, write_app, redis_url):
    write_app("tasks", TASKS)
    app = App(redis_url)
    app.task(queue="reports", name="build")(lambda day: None).send_many(range(7))
    app.publish("audit", {"x": 1})
    run = processes.run("top", "tasks:app", "--interval", "0.2", "--iterations", "3")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("streamwork top — tasks:app") == 3
    assert run.stdout.count("rates over 0.2s") == 3
    [reports] = {line for line in run.stdout.splitlines() if line.startswith("reports ")}
    assert reports.split()[1] == "7"  # READY
    assert "audit" in run.stdout  # the topic, found through the registry
    assert "LIVE" in run.stdout


def test_top_lists_running_messages_with_their_progress(processes, write_app, redis_url):
    write_app("tasks", TASKS)
    app = App(redis_url)
    build = app.task(queue="reports", name="build")(lambda day: None)
    first, second = build.send(1), build.send(2)
    stream = app.keys("reports").stream
    app.connection.redis.xgroup_create(stream, "workers", id="0", mkstream=True)
    [[_, entries]] = app.connection.redis.xreadgroup(
        "workers", "busy-worker", {stream: ">"}, count=2
    )
    scripts = app.connection.scripts
    status = app.keys("reports").status
    scripts.start(
        app.queue_source("reports"),
        [
            ("build", 1, h.id, entry_id, status(h.id), None, 0, 0, None, 0, False, "")
            for h, (entry_id, _) in zip((first, second), entries, strict=True)
        ],
        "busy-worker",
        protocol.now_ms(),
        60_000,
    )
    scripts.progress(
        app.keys("reports").status(first.id), 0.4, "encoding", protocol.now_ms(), 60_000
    )
    run = processes.run("top", "tasks:app", "--interval", "0.1", "--iterations", "1")
    assert run.returncode == 0, run.stderr
    rows = {
        line.split()[0]: line
        for line in run.stdout.splitlines()
        if line[:8] in (first.id[:8], second.id[:8])
    }
    assert rows[first.id].split()[1:3] == ["reports", "build"]
    assert rows[first.id].split()[-2:] == ["40%", "encoding"]
    assert rows[second.id].split()[-1] == "-"  # no progress reported
    idle = processes.run("top", "tasks:app", "--interval", "0.1", "--iterations", "1")
    assert "RUNNING" in idle.stdout


LIMITED = """
    from streamwork import App

    app = App()

    @app.task(queue="emails", rate_limit="50/s")
    def send_email(to):
        pass

    @app.task(queue="reports")
    def build(day):
        pass
"""


def test_limits_show_set_and_reset(processes, write_app):
    write_app("limited", LIMITED)
    done = processes.run("limits", "set", "limited:app", "send_email", "5/s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "rate limit of send_email is 5/s (declared: 50/s); workers use it within a second"
    )
    shown = json.loads(processes.run("limits", "show", "limited:app", "--json").stdout)
    assert [(row["task"], row["declared"], row["override"], row["in_force"]) for row in shown] == [
        ("send_email", "50/s", "5/s", "5/s"),
        ("build", None, None, "none"),
    ]
    table = processes.run("limits", "show", "limited:app").stdout.splitlines()
    assert table[0].split() == ["TASK", "QUEUE", "DECLARED", "OVERRIDE", "IN", "FORCE"]
    assert table[1].split() == ["send_email", "emails", "50/s", "5/s", "5/s"]
    back = processes.run("limits", "reset", "limited:app", "send_email")
    assert back.stdout.strip() == "rate limit of send_email is 50/s again"
    again = processes.run("limits", "reset", "limited:app", "send_email")
    assert again.stdout.strip() == "send_email had no override"

    unknown = processes.run("limits", "set", "limited:app", "send_emial", "5/s")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().startswith(
        "Error: the app has no task 'send_emial' (did you mean send_email?)"
    )
    bad = processes.run("limits", "set", "limited:app", "build", "fast")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "rate_limit must look like" in bad.stderr
