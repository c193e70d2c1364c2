"""The benchmark command works end to end (tiny sizes; speed itself is not tested here)."""

import json
import subprocess
import sys

from conftest import ROOT


def test_benchmark_command_runs_and_writes_every_scenario(tmp_path, redis_url):
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--runs", "1", "--tasks", "300",
         "--singles", "30", "--no-peers", "--redis-url", redis_url, "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {row["scenario"]: row for row in json.loads(out.read_text())["results"]}
    for scenario in (
        "raw drain: XREADGROUP 100 + XACK + XDEL",
        "raw drain + streamwork's settle step (status on)",
        "task.send_many",
        "drain, one process, async handlers",
        "idle latency send → handler start p50",
        "topic fan-out to 3 groups, deliveries",
        "idle worker process RSS",
        "3-master cluster, -p 2: 6 partitions",
        "drain, one process, async handlers, a partition key per message (1,000 keys in turn)",
        "µs per message, streamwork worker, CLI defaults: Redis",
        "fleet ceiling, drain, async: one Redis drains at most",
    ):
        assert rows[scenario]["median"] > 0, scenario
    assert rows["task.send_many"]["ratio"] is not None
    # a single send against raw XADDs in alternating blocks (the same conditions)
    assert rows["raw XADD, one at a time, alternating with task.send"]["median"] > 0
    assert rows["task.send, one at a time"]["ratio"] is not None
    assert rows["raw drain + streamwork's settle step (status on)"]["ratio"] is not None
    assert rows["3-master cluster, -p 2: 6 partitions"]["ratio"] is not None
    # the fleet's figures: Redis CPU per message against the raw drain's, with a target
    for scenario, target in (
        ("µs per message, drain, async: Redis", "<= 2"),
        ("µs per message, streamwork worker, CLI defaults: Redis", "<= 3"),
    ):
        assert rows[scenario]["ratio"] is not None and rows[scenario]["target"] == target
    # --redis-url: only the benchmark's own namespace was touched, and it was cleaned up
    import redis

    assert redis.Redis.from_url(redis_url).keys("swbench-*") == []


def test_a_peer_of_the_bench_extra_that_does_not_run_is_an_error(monkeypatch):
    """Issue 33: Celery once failed to import and the run printed a skip; now a missing or
    failing peer of the `bench` extra is an error of the benchmark (arq stays optional)."""
    import importlib
    import types

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    peers = importlib.import_module("peers")
    monkeypatch.setattr(peers, "installed", lambda name: name == "celery")

    class Broken:
        def __init__(self, name, bench):
            pass

        def enqueue(self, count):
            raise ModuleNotFoundError("No module named 'packaging'")

    monkeypatch.setattr(peers, "Peer", Broken)
    bench = types.SimpleNamespace(results={}, clean=lambda: None)
    errors = peers.run_all(bench, 1)
    assert errors[0] == "peer celery failed: ModuleNotFoundError: No module named 'packaging'"
    assert errors[1:] == [
        "peer rq: not installed (pip install -e '.[bench]')",
        "peer dramatiq: not installed (pip install -e '.[bench]')",
    ]
