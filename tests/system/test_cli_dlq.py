"""`streamwork dlq list|show|replay|purge` in subprocesses against a real Redis."""

import json

from streamwork import App
from streamwork.ops import dead_letters
from streamwork.testing import drain


def make_dead_letters(redis_url, n=3):
    app = App(redis_url)

    @app.task(queue="payments", max_retries=0)
    def charge(order_id):
        raise RuntimeError(f"card declined for order {order_id}")

    charge.send_many(range(n))
    drain(app)
    return app


def test_list_and_show(processes, redis_url):
    make_dead_letters(redis_url)
    listed = processes.run("dlq", "list", "payments")
    assert listed.returncode == 0, listed.stderr
    assert "3 dead letter(s) in 'payments'" in listed.stdout
    assert listed.stdout.count("charge") == 3
    assert "not retryable" in listed.stdout or "failed 1 attempt (max_retries=0)" in listed.stdout
    as_json = json.loads(processes.run("dlq", "list", "payments", "--json").stdout)
    assert [e["message"]["args"] for e in as_json] == [[0], [1], [2]]
    shown = processes.run("dlq", "show", "payments", as_json[1]["id"])
    assert shown.returncode == 0, shown.stderr
    assert "RuntimeError" in shown.stdout
    assert "card declined for order 1" in shown.stdout
    assert "traceback:" in shown.stdout and 'raise RuntimeError(f"card declined' in shown.stdout


def test_replay_ids_then_all(processes, redis_url):
    app = make_dead_letters(redis_url)
    ids = [
        e.id for e in dead_letters.list_dead_letters(app.connection, app.queue_source("payments"))
    ]
    first = processes.run("dlq", "replay", "payments", ids[0])
    assert first.returncode == 0, first.stderr
    assert "replayed 1 dead letter(s)" in first.stdout
    rest = processes.run("dlq", "replay", "payments", "--all")
    assert "replayed 2 dead letter(s)" in rest.stdout
    assert app.connection.redis.xlen(app.keys("payments").stream) == 3
    assert dead_letters.count(app.connection, app.queue_source("payments")) == 0


def test_purge_needs_confirmation(processes, redis_url):
    app = make_dead_letters(redis_url)
    refused = processes.run("dlq", "purge", "payments")  # no stdin: the prompt aborts
    assert refused.returncode == 1
    assert dead_letters.count(app.connection, app.queue_source("payments")) == 3
    purged = processes.run("dlq", "purge", "payments", "--yes")
    assert "purged 3 dead letter(s)" in purged.stdout
    assert dead_letters.count(app.connection, app.queue_source("payments")) == 0


def test_errors_are_one_line(processes, redis_url):
    make_dead_letters(redis_url, 1)
    missing = processes.run("dlq", "show", "payments", "1-1")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: no dead letter 1-1 in 'payments'"
    both = processes.run("dlq", "replay", "payments", "1-1", "--all")
    assert both.returncode == 2 and "not both" in both.stderr
    absent = processes.run("dlq", "replay", "payments", "1-1")
    assert absent.returncode == 1 and absent.stdout == ""
    assert absent.stderr.strip() == "Error: no such dead letter(s) in 'payments': 1-1"
    bad_name = processes.run("dlq", "list", "bad name")
    assert bad_name.returncode == 1 and "invalid queue name 'bad name'" in bad_name.stderr
    assert "Traceback" not in missing.stderr + both.stderr + absent.stderr + bad_name.stderr


def test_a_partitioned_queues_dead_letters_read_as_one_queue(processes, redis_url):
    app = App(redis_url)

    @app.task(queue="ledger", partitions=3, max_retries=0)
    def post(n):
        raise RuntimeError(f"ledger closed for {n}")

    handles = [post.send(n) for n in range(3)]
    drain(app)  # its worker records the partitions: the CLI below has no app code
    listed = processes.run("dlq", "list", "ledger")
    assert listed.returncode == 0, listed.stderr
    assert "3 dead letter(s) in 'ledger'" in listed.stdout
    assert all(f"-- partition ledger~{n}" in listed.stdout for n in range(3))
    rows = json.loads(processes.run("dlq", "list", "ledger", "--json").stdout)
    assert sorted(row["partition"] for row in rows) == ["ledger~0", "ledger~1", "ledger~2"]
    third = next(row for row in rows if row["partition"] == f"ledger~{handles[2].partition}")
    alone = processes.run("dlq", "list", f"ledger~{handles[2].partition}")
    assert "1 dead letter(s) in 'ledger'" in alone.stdout and "ledger closed" in alone.stdout
    shown = processes.run("dlq", "show", f"ledger~{handles[2].partition}", third["id"])
    assert "ledger closed for 2" in shown.stdout, shown.stderr
    ids = {row["id"] for row in rows}
    if len(ids) == 3:  # ids of different partitions may coincide (the same millisecond)
        found = processes.run("dlq", "show", "ledger", third["id"])
        assert "ledger closed for 2" in found.stdout, found.stderr
    missing = processes.run("dlq", "replay", "ledger", "1-0")
    assert missing.returncode == 1 and "no such dead letter(s) in 'ledger': 1-0" in missing.stderr
    replayed = processes.run("dlq", "replay", "ledger", "--all")
    assert "replayed 3 dead letter(s) onto 'ledger'" in replayed.stdout, replayed.stderr
    assert sum(app.connection.redis.xlen(app.keys(f"ledger~{n}").stream) for n in range(3)) == 3
    drain(app)
    assert "purged 3 dead letter(s) from 'ledger'" in (
        processes.run("dlq", "purge", "ledger", "--yes").stdout
    )


def test_an_id_in_two_partitions_must_be_asked_of_one(processes, redis_url):
    app = App(redis_url)
    app.queue("ledger", partitions=2)
    app.task(queue="ledger", name="post")(lambda: None)
    drain(app)
    for n in range(2):  # the same entry id in both partitions' dead letters
        app.connection.redis.xadd(app.keys(f"ledger~{n}").dead_letters, {"m": b"x"}, id="5-0")
    shown = processes.run("dlq", "show", "ledger", "5-0")
    assert shown.returncode == 1
    assert "dead letter 5-0 is in partitions ledger~0, ledger~1: name one" in shown.stderr


def test_a_misspelt_queue_topic_or_group_exits_1_listing_the_known_ones(processes, redis_url):
    app = make_dead_letters(redis_url, 1)
    app.subscriber("orders.created", group="billing")(lambda message: None)
    app.publish("orders.created", {"order_id": 1})
    drain(app)  # the group exists in Redis; an app without its code still finds it
    for args in (
        ("list", "paymnets"),
        ("show", "paymnets", "1-1"),
        ("replay", "paymnets", "--all"),
        ("replay", "paymnets", "1-1"),
        ("purge", "paymnets", "--yes"),
    ):
        run = processes.run("dlq", *args)
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        assert run.stderr.strip() == (
            "Error: unknown queue 'paymnets': namespace 'sw' knows payments"
        ), args
    topic = processes.run("dlq", "list", "orders.createdd", "--group", "billing")
    assert topic.returncode == 1
    assert topic.stderr.strip() == (
        "Error: unknown topic 'orders.createdd': namespace 'sw' knows orders.created"
    )
    group = processes.run("dlq", "replay", "orders.created", "--group", "biling", "--all")
    assert group.returncode == 1 and group.stdout == ""
    assert group.stderr.strip() == (
        "Error: unknown subscriber group 'biling' of topic 'orders.created': it has billing"
    )
    known = processes.run("dlq", "list", "orders.created", "--group", "billing")
    assert known.returncode == 0 and "no dead letters in 'orders.created/billing'" in known.stdout
    partition = processes.run("dlq", "list", "payments~1")
    assert partition.returncode == 1 and "unknown queue 'payments~1'" in partition.stderr
