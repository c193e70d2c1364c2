"""What a new user types wrong, and what a new user should see: one line per error, the
right exit code, and output that says what happened."""

import json

from streamwork import App
from streamwork._base import protocol
from streamwork.testing import drain

TASKS = """
    from streamwork import App

    app = App(namespace="shop")

    @app.task(queue="payments", max_retries=0)
    def charge(order_id):
        raise RuntimeError(f"card declined for order {order_id}")
"""


def one_line_error(run, code):
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    return run.stderr.strip()


def test_a_path_or_relative_name_is_not_a_module(processes):
    for spec in (".app:app", "../x:app", "tasks.py:app"):
        error = one_line_error(processes.run("stats", spec), 2)
        assert "not a module name" in error and "not a file path" in error


def test_a_module_whose_import_fails_is_named_in_one_line(processes, write_app):
    write_app("tasks", "import this_dependency_does_not_exist\n")
    error = one_line_error(processes.run("stats", "tasks:app"), 2)
    assert (
        "could not import 'tasks': ModuleNotFoundError: No module named "
        "'this_dependency_does_not_exist'" in error
    )
    write_app("broken", "x = 1 / 0\n")
    error = one_line_error(processes.run("send", "broken:app", "job"), 2)
    assert "could not import 'broken': ZeroDivisionError: division by zero" in error


def test_a_malformed_url_is_one_line(processes, write_app):
    write_app("badurl", 'from streamwork import App\n\napp = App("redis://host:notaport/0")\n')
    error = one_line_error(processes.run("stats", "badurl:app"), 2)
    assert "invalid Redis URL 'redis://host:notaport/0' (given to App() or with --url)" in error
    assert "Port could not be cast to integer value as 'notaport'" in error
    error = one_line_error(processes.run("dlq", "list", "default", "--url", "redis://h:x/0"), 1)
    assert "invalid Redis URL 'redis://h:x/0'" in error


def test_debug_level_shows_the_users_frames_only(processes, write_app):
    write_app("tasks", "import json\n\nimport this_dependency_does_not_exist\n")
    run = processes.run("--log-level", "debug", "stats", "tasks:app")
    assert run.returncode == 2
    assert "Traceback" in run.stderr and 'tasks.py", line 3' in run.stderr
    assert "importlib" not in run.stderr and "streamwork/" not in run.stderr


def test_purge_of_an_unknown_queue_exits_1(processes, write_app):
    write_app("tasks", TASKS)
    error = one_line_error(processes.run("purge", "tasks:app", "nosuchqueue", "--yes"), 1)
    assert "unknown queue 'nosuchqueue'" in error and "payments" in error


def test_dlq_takes_module_app_and_shows_the_last_error(processes, write_app, redis_url):
    write_app("tasks", TASKS)
    app = App(redis_url, namespace="shop")

    @app.task(queue="payments", max_retries=0)
    def charge(order_id):
        raise RuntimeError(f"card declined for order {order_id}")

    charge.send(7)
    app.connection.redis.xadd(app.keys("payments").stream, {b"m": b"\xc1 not msgpack"})
    drain(app)
    # without MODULE:APP the default namespace has no such queue; with it, it is found
    elsewhere = processes.run("dlq", "list", "payments")
    assert elsewhere.returncode == 1
    assert "unknown queue 'payments': namespace 'sw' knows none" in elsewhere.stderr
    listed = processes.run("dlq", "list", "tasks:app", "payments")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    [declined] = [row for row in rows if "charge" in row]
    assert "failed 1 attempt (max_retries=0) — RuntimeError: card declined for order 7" in declined
    [undecodable] = [row for row in rows if "undecodable" in row]
    assert undecodable.split()[1] != "-"  # it has a time, like the others
    entry_id = declined.split()[0]
    shown = processes.run("dlq", "show", "tasks:app", "payments", entry_id)
    assert "card declined for order 7" in shown.stdout, shown.stderr
    replayed = processes.run("dlq", "replay", "tasks:app", "payments", entry_id)
    assert replayed.stdout.strip() == "replayed 1 dead letter(s) onto 'payments'"
    assert [protocol.decode(f[b"m"]).args for _, f in app.connection.redis.xrange(
        app.keys("payments").stream)] == [(7,)]  # fmt: skip


def test_errors_from_redis_are_one_line_in_the_cli(processes, write_app, redis_server, client):
    write_app("tasks", TASKS)
    client.execute_command("ACL", "SETUSER", "reader", "reset", "on", ">pw", "~*", "+ping")
    try:
        url = f"redis://reader:pw@127.0.0.1:{redis_server.port}/0"
        error = one_line_error(
            processes.run("send", "tasks:app", "charge", "1", STREAMWORK_REDIS_URL=url), 1
        )
        assert "denied the command" in error and "pw@" not in error
    finally:
        client.acl_deluser("reader")
    url = f"redis://127.0.0.1:{redis_server.port}/99"
    error = one_line_error(
        processes.run("send", "tasks:app", "charge", "1", STREAMWORK_REDIS_URL=url), 1
    )
    assert "no such database" in error


def test_json_worker_prints_only_json_and_warns_about_persistence_once(processes, write_app):
    write_app("tasks", TASKS)
    run = processes.run(
        "worker", "tasks:app", "--burst", "--processes", "2", "--log-format", "json"
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines()]  # every line is JSON
    [banner] = [line for line in lines if line["message"].endswith("worker starting")]
    assert banner["queues"] == ["payments"] and banner["processes"] == 2
    warnings = [line for line in lines if "persists nothing" in line["message"]]
    assert len(warnings) == 1
