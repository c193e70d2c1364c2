"""Private redis-servers for tests: one server (`RedisServer`) or a Redis Cluster
(`RedisClusterServers`) on loopback ports, in temporary directories.

Each starts real `redis-server` processes and stops only the processes it started, by PID;
it never touches a Redis it did not start. Public through `streamwork.testing`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import redis.crc

from .._base.polling import wait_until

INSTALL_HINT = (
    "redis-server was not found on PATH: install it (Debian/Ubuntu: "
    "apt-get install redis-server; macOS: brew install redis)"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server on 127.0.0.1: `start()`, `url`, `restart()`, `stop()`."""

    def __init__(self, args: Sequence[str] = (), port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.binary = binary
        self.args = list(args)
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="streamwork-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server (a no-op if it runs: a second process would orphan the first)."""
        if self.process is not None and self.process.poll() is None:
            return self
        if self.process is not None:
            self.process.wait()  # reap a server that was killed, before starting again
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
            *self.args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_until(
                lambda: self._answers(client),
                timeout,
                message=f"redis-server did not answer on port {self.port}: {self.log_tail()}",
            )
        finally:
            client.close()
        return self

    def _answers(self, client: redis.Redis) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited at start: {self.log_tail()}")
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False
        except redis.exceptions.BusyLoadingError:
            return False

    def log_tail(self, lines: int = 5) -> str:
        path = self.dir / "redis.log"
        if not path.exists():
            return "(no log)"
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server this object started (SIGTERM, then SIGKILL), by its PID."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisClusterServers:
    """A private Redis Cluster of `masters` redis-servers (each with `replicas` replicas)
    on loopback, for tests.

    `start()` launches the servers, joins them with `redis-cli --cluster create` and waits
    until the cluster answers `cluster_state:ok`; `cleanup()` stops them by PID.
    """

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        self.replicas = replicas
        self.servers = [
            RedisServer(
                ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "2000"],
                port=free_cluster_port(),
            )
            for _ in range(masters * (1 + replicas))
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        for server in self.servers:
            server.start()
        nodes = [f"127.0.0.1:{server.port}" for server in self.servers]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas",
             str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-500:]}")
        for server in self.servers:
            client = redis.Redis(port=server.port)
            try:
                wait_until(
                    lambda c=client: c.cluster("info").get("cluster_state") == "ok",  # type: ignore[misc]
                    timeout,
                    interval=0.05,
                    message="the cluster did not reach cluster_state:ok",
                )
            finally:
                client.close()
        for server in self.servers:  # a replica that never synced cannot take over
            client = redis.Redis(port=server.port)
            try:
                wait_until(
                    lambda c=client: (  # type: ignore[misc]
                        c.info("replication")["role"] == "master"
                        or c.info("replication").get("master_link_status") == "up"
                    ),
                    timeout,
                    interval=0.05,
                    message="a replica did not finish its first sync",
                )
            finally:
                client.close()
        return self

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()

    def node_of(self, key: str) -> RedisServer:
        """The server that holds the slot of `key` now."""
        slot = redis.crc.key_slot(key.encode())
        alive = next(s for s in self.servers if s.process and s.process.poll() is None)
        client = redis.Redis(port=alive.port)
        try:
            for start, end, master, *_ in client.cluster("slots"):
                if start <= slot <= end:
                    port = master[1]
                    return next(s for s in self.servers if s.port == port)
        finally:
            client.close()
        raise LookupError(f"no node serves slot {slot}")

    def migrate_slot(self, key: str, to: RedisServer, batch: int = 10) -> None:
        """Move the slot of `key` to `to`, key by key, the way `redis-cli --cluster reshard`
        does (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE), while clients keep working."""
        slot = redis.crc.key_slot(key.encode())
        source = self.node_of(key)
        if source is to:
            raise ValueError("the slot is already there")
        src, dst = redis.Redis(port=source.port), redis.Redis(port=to.port)
        try:
            src_id, dst_id = src.cluster("myid"), dst.cluster("myid")
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 10000, "KEYS", *keys)
            for server in self.servers:
                node = redis.Redis(port=server.port)
                try:
                    node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
                finally:
                    node.close()
        finally:
            src.close()
            dst.close()
