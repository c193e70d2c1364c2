"""The cross-language proof: a Node.js producer written from docs/PROTOCOL.md alone
(examples/node) enqueues plain, delayed and keyed tasks and an event, and reads a result,
against a real worker."""

import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

from streamwork.testing import wait_until

NODE_EXAMPLE = ROOT / "examples" / "node"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed (apt-get install nodejs npm)"
)


@pytest.fixture(scope="module")
def node_modules():
    """The example's npm packages, installed from its lock file when missing."""
    if not (NODE_EXAMPLE / "node_modules" / "ioredis").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_EXAMPLE,
            check=True,
            timeout=300,
        )


def test_node_producer_reaches_a_python_worker(node_modules, redis_url, tmp_path):
    env = {**os.environ, "STREAMWORK_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    output = tmp_path / "worker.out"
    with open(output, "w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streamwork", "worker", "tasks:app", "-p", "1"],
            cwd=NODE_EXAMPLE,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        producer = subprocess.run(
            ["node", "producer.js"],
            cwd=NODE_EXAMPLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert producer.returncode == 0, producer.stdout + producer.stderr
        assert "result of add: 5" in producer.stdout
        assert "keyed sends returned one id" in producer.stdout

        def ran():
            text = output.read_text()
            return (
                "hello, later" in text
                and "hello, keyed" in text
                and "event node.events: {'n': 7}" in text
            )

        wait_until(ran, timeout=20, message="the worker to run every message Node sent")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    text = output.read_text()
    assert text.count("hello, keyed") == 1  # the second keyed send queued nothing
    assert "dead-lettered" not in text and "undecodable" not in text, text
