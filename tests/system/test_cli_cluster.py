"""The real CLI against a Redis Cluster: a supervised worker, stats and dead letters."""

import json

from streamwork import App

TASKS = """
    from streamwork import App

    app = App()

    @app.task(queue="alpha")
    def a(n):
        pass

    @app.task(queue="beta", max_retries=0)
    def b(n):
        raise ValueError(n)
"""


def test_worker_stats_and_dlq_on_a_cluster(processes, write_app, cluster, cluster_app):
    write_app("tasks", TASKS)
    app = App(cluster.url)
    app.task(queue="alpha", name="a")(lambda n: None).send_many(range(30))
    app.task(queue="beta", name="b")(lambda n: None).send_many(range(3))
    env = {"STREAMWORK_REDIS_URL": cluster.url}
    run = processes.run("worker", "tasks:app", "--burst", "-p", "2", **env)
    assert run.returncode == 0, run.stderr
    stats = processes.run("stats", "tasks:app", "--interval", "0.1", "--json", **env)
    assert stats.returncode == 0, stats.stderr
    rows = {row["queue"]: row for row in json.loads(stats.stdout)["queues"]}
    assert (rows["alpha"]["done"], rows["alpha"]["ready"]) == (30, 0)
    assert (rows["beta"]["dead"], rows["beta"]["dead_letters"]) == (3, 3)
    replay = processes.run("dlq", "replay", "beta", "--all", **env)
    assert "replayed 3 dead letter(s)" in replay.stdout, replay.stderr


def test_the_exporter_on_a_cluster(processes, write_app, cluster, cluster_app):
    """What autoscaling reads, served from a cluster: queues on several nodes, summed."""
    import urllib.request

    from streamwork.testing import free_port, wait_until

    write_app("tasks", TASKS)
    app = App(cluster.url)
    app.task(queue="alpha", name="a")(lambda n: None).send_many(range(7))
    app.task(queue="beta", name="b")(lambda n: None).send_many(range(4))
    port = free_port()
    processes.start("exporter", "tasks:app", "--port", str(port), STREAMWORK_REDIS_URL=cluster.url)

    def read():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/backlog", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    found = wait_until(read, timeout=30)
    assert found["total"] == 11
    assert (found["queues"]["alpha"]["ready"], found["queues"]["beta"]["ready"]) == (7, 4)
