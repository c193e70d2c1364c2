"""A private Prometheus server for tests: loopback port, temporary storage, stopped by PID."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from streamwork.testing import free_port, wait_until


class PrometheusServer:
    def __init__(self, config: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus was not found: apt-get install prometheus")
        self.dir = Path(tempfile.mkdtemp(prefix="streamwork-prometheus-"))
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(config)
        self.port = free_port()
        self.log = self.dir / "prometheus.log"
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"),  # noqa: SIM115 - closed with the process
        )
        wait_until(self._is_ready, timeout=30, message=f"prometheus did not start: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""

    def _is_ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1):
                return True
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a bad query answers 400 with a JSON error
            return json.loads(exc.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
