"""The dashboards and alerts against real software: a real worker, scraped by a real
Prometheus started with the shipped configuration; every dashboard query and every alert
rule is evaluated through Prometheus' HTTP API and must give a valid, non-empty result."""

import importlib.util
import json
import re
import shutil
import signal
import subprocess
import threading
import urllib.request

import pytest
import yaml
from conftest import ROOT
from prometheus_client.parser import text_string_to_metric_families

from streamwork import App
from streamwork.testing import free_port, wait_until

GRAFANA = ROOT / "grafana"
VARIABLES = {"$queue": ".*", "$task": ".*", "$__rate_interval": "1m"}


def generator():
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards():
    return {
        p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panel_queries():
    for name, board in dashboards().items():
        for item in board["panels"]:
            for target in item["targets"]:
                yield f"{name}: {item['title']} [{target['refId']}]", target["expr"]


def concrete(expr):
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def alert_rules():
    rules = yaml.safe_load((GRAFANA / "alerts.yml").read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


# -- the shipped files, without running anything -------------------------------------------


def test_committed_dashboards_are_what_the_generator_makes():
    module = generator()
    for name, build in module.DASHBOARDS.items():
        committed = (GRAFANA / "dashboards" / name).read_text()
        assert committed == module.render(build), (
            f"grafana/dashboards/{name} is out of date: run python grafana/generate.py"
        )


def test_the_metrics_reference_is_what_the_code_defines():
    from streamwork.ops.metrics import reference_markdown

    committed = (GRAFANA.parent / "docs" / "reference" / "metrics.md").read_text()
    assert committed == reference_markdown(), (
        "docs/reference/metrics.md is out of date: run python grafana/generate.py"
    )


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_structure(name):
    board = dashboards()[name]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in variables
    for item in board["panels"]:
        assert item["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        position = item["gridPos"]
        assert position["x"] + position["w"] <= 24
        for target in item["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, f"{item['title']} uses undefined {used - variables}"
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"


def test_promtool_accepts_the_shipped_config_and_rules():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus"
    for command in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        result = subprocess.run([promtool, *command], cwd=GRAFANA, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


# -- a real worker scraped by a real Prometheus ----------------------------------------------

OBSERVED = """
    import time
    from streamwork import App, Backoff

    app = App()

    @app.task(queue="orders")
    def ok(n):
        time.sleep(0.002)

    @app.task(queue="orders", max_retries=1, backoff=Backoff(0.01, 0.02))
    def broken(n):
        raise ValueError("always")

    @app.task(queue="unserved")
    def later(n):
        pass

    @app.subscriber("events", group="audit")
    def audit(message):
        pass

    @app.task(queue="orders")
    async def sleeper():
        import asyncio

        await asyncio.sleep(30)  # cancelled by the test while it runs

    @app.periodic(every=1, queue="orders")
    def heartbeat():
        pass

    @app.periodic(every=1, queue="unserved")
    def stale():
        pass  # no worker serves its queue: StreamworkScheduleNotRunning

    @app.task(queue="orders", rate_limit="2/s")
    def throttled(n):
        pass  # fed faster than 2/s: held back by its rate

    @app.task(queue="orders", fair_by="customer")
    def invoice(customer):
        pass  # round-robin between customers

    @app.task(queue="orders", priority="low")
    def backfill(n):
        pass  # gives "orders" priority bands

    @app.task(queue="orders", concurrency_limit=1)
    async def single(n):
        import asyncio

        await asyncio.sleep(0.5)  # fed faster than it runs: messages wait for its slot

    @app.task(queue="orders", batch_size=10, batch_wait=0.2)
    def bulk(messages):
        pass  # a batch handler: streamwork_batch_messages

    @app.task(queue="ledger", partitions=3)
    def post(account, n):
        pass  # a partitioned queue: streamwork_partition_*

    @app.periodic(every=1, queue="orders")
    def flows():
        from streamwork import chain

        chain(ok.si(1), ok.si(2)).send()  # started and finished by worker processes
"""


@pytest.fixture
def prometheus_for(tmp_path):
    from system.prometheus import PrometheusServer

    servers = []

    def start(metrics_port):
        config = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(GRAFANA / "alerts.yml")]
        config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{metrics_port}"]
        server = PrometheusServer(yaml.safe_dump(config))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_every_dashboard_query_and_alert_rule_gives_data(
    processes, write_app, redis_url, tmp_path, prometheus_for
):
    write_app("observed", OBSERVED)
    port = free_port()
    worker = processes.start(
        "worker", "observed:app", "--queues", "orders,ledger", "--topics", "events",
        "-p", "2",
        "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
        log=tmp_path / "worker.log",
    )  # fmt: skip
    wait_until(lambda: _scrape(port), timeout=30)
    prometheus = prometheus_for(port)

    app = App(redis_url)
    ok = app.task(queue="orders", name="ok")(lambda n: None)
    broken = app.task(queue="orders", name="broken")(lambda n: None)
    later = app.task(queue="unserved", name="later")(lambda n: None)
    sleeper = app.task(queue="orders", name="sleeper")(lambda: None)
    throttled = app.task(queue="orders", name="throttled")(lambda n: None)
    single = app.task(queue="orders", name="single")(lambda n: None)
    backfill = app.task(queue="orders", name="backfill", priority="low")(lambda n: None)
    invoice = app.task(queue="orders", name="invoice", fair_by="customer")(lambda customer: None)
    bulk = app.task(queue="orders", name="bulk", batch_size=10)(lambda messages: None)
    post = app.task(queue="ledger", name="post", partitions=3)(lambda account, n: None)
    stop = threading.Event()

    def feed():
        n = 0
        while not stop.is_set():
            ok.send_many(range(20))
            broken.send(n)
            later.send(n)
            app.publish("events", n)
            throttled.send_many(range(2))
            backfill.send(n)
            invoice.send(f"customer-{n % 3}")
            single.send(n)
            bulk.send_many([(n, i) for i in range(15)])
            post.send_with(args=(f"account-{n % 4}", n), partition_key=f"account-{n % 4}")
            if n % 4 == 0:
                running = sleeper.send()
                stop.wait(0.3)
                running.cancel("test")
            n += 1
            stop.wait(0.25)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    failures = {}
    try:
        for title, expr in [
            *panel_queries(),
            *[(a, e) for a, e in alert_rules().items() if a != "StreamworkNoWorkers"],
        ]:
            query = concrete(expr)
            try:
                wait_until(lambda q=query: _has_data(prometheus.query(q)), timeout=60, interval=0.5)
            except TimeoutError:
                failures[title] = (query, prometheus.query(query))
    finally:
        stop.set()
        feeder.join(10)
    assert not failures, json.dumps(failures, indent=1, default=str)[:4000]

    rules = prometheus.api("rules")["data"]["groups"][0]["rules"]
    assert {r["name"] for r in rules} == set(alert_rules())
    assert all(r["health"] == "ok" for r in rules), rules

    # what the supervisor serves is what the metrics reference lists, labels included,
    # and no prometheus-client `*_created` series
    from streamwork.ops.metrics import families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        exposed = answer.read().decode()
    assert "_created" not in exposed
    listed = {family.name: family for family in families()}
    for family in text_string_to_metric_families(exposed):
        if not family.name.startswith("streamwork_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        assert name in listed, f"{name} is served but not in docs/reference/metrics.md"
        for sample in family.samples:
            labels = set(sample.labels) - {"le"}
            assert labels == set(listed[name].labels), (name, sample.labels)

    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    no_workers = concrete(alert_rules()["StreamworkNoWorkers"])
    wait_until(lambda: _has_data(prometheus.query(no_workers)), timeout=60, interval=0.5)


def _scrape(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return b"streamwork_backlog" in r.read()
    except OSError:
        return False


def _has_data(answer):
    return answer.get("status") == "success" and bool(answer["data"]["result"])
