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
        "raw drain + streamwork's start and settle steps (status on)",
        "task.send_many",
        "drain, one process, async handlers",
        "idle latency send → handler start p50",
        "topic fan-out to 3 groups, deliveries",
        "idle worker process RSS",
        "3-master cluster, -p 2: 6 partitions",
        "drain, one process, async handlers, a partition key per message (1,000 keys in turn)",
    ):
        assert rows[scenario]["median"] > 0, scenario
    assert rows["task.send_many"]["ratio"] is not None
    assert rows["raw drain + streamwork's start and settle steps (status on)"]["ratio"] is not None
    assert rows["3-master cluster, -p 2: 6 partitions"]["ratio"] is not None
    # --redis-url: only the benchmark's own namespace was touched, and it was cleaned up
    import redis

    assert redis.Redis.from_url(redis_url).keys("swbench-*") == []
