"""The brief's scenarios as runnable examples, each run end to end as a user would and its
output checked: orders (Little's law, peak shaving), payments (exactly-once effect on
PostgreSQL through a SIGKILL), IoT (bounded retention, batches, a late group), notifications
(per-channel rate limits), transcoding (progress, cancel, restart), and pika's hello."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from streamwork import App
from streamwork.testing import wait_until

from .test_examples import run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PG_DSN = os.environ.get("PAYMENTS_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def example(*args: str, cwd: Path, redis_url: str, timeout: float = 180, **env: str) -> str:
    """Run `python ARGS` from `cwd` as a user would (examples/ on the path); its stdout."""
    return run([sys.executable, *args], cwd, redis_url, timeout=timeout, **env)


def worker(processes: Any, module: str, *options: str, **env: str) -> subprocess.Popen[str]:
    return processes.start("worker", f"{module}:app", *options, PYTHONPATH=str(EXAMPLES), **env)


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return float(found.group(1))


def test_orders_littles_law_and_peak_shaving(redis_url: str, tmp_path: Path) -> None:
    out = example(str(EXAMPLES / "order_flow.py"), cwd=tmp_path, redis_url=redis_url)
    rate = number(r"arrival rate\s+λ =\s+([\d.]+)", out)
    little = number(r"L = λW =\s+([\d.]+)", out)
    observed = number(r"observed\s+L =\s+([\d.]+)", out)
    assert 85 <= rate <= 115, out
    assert 85 <= little <= 115 and 85 <= observed <= 115, out  # L ≈ λW ≈ 100
    assert abs(observed - little) <= 0.15 * little, out
    shown = number(r"streamwork stats .* = ([\d.]+) in the system", out)
    assert 85 <= shown <= 115, out  # the CLI's λW + λS over the same load
    assert "drained 5000 orders" in out and "backlog now 0" in out
    assert number(r"peak backlog (\d+)", out) >= 1000, out  # the queue absorbed the peak


@pytest.fixture
def payments_schema() -> Any:
    schema = f"payments_test_{uuid.uuid4().hex[:10]}"
    try:
        psycopg.connect(PG_DSN, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"the payments example needs PostgreSQL at {PG_DSN} ($PAYMENTS_DSN): {exc}")
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_payments_exactly_once_effect_through_a_kill_between_commit_and_ack(
    processes: Any, redis_url: str, tmp_path: Path, payments_schema: str
) -> None:
    env = {"PAYMENTS_SCHEMA": payments_schema}
    script = str(EXAMPLES / "payments.py")
    assert "ready" in example(script, "setup", cwd=tmp_path, redis_url=redis_url, **env)
    assert "sent 30 payments" in example(
        script, "send", "30", cwd=tmp_path, redis_url=redis_url, **env
    )
    committed = tmp_path / "committed"
    first = worker(
        processes, "payments", "-p", "1", "--visibility-timeout", "1",
        PAYMENTS_PAUSE_AFTER_COMMIT=str(committed), **env,
    )  # fmt: skip
    wait_until(lambda: committed.exists() and committed.read_text().strip(), timeout=60)
    pid, message_id = committed.read_text().split()
    os.kill(int(pid), signal.SIGKILL)  # committed in PostgreSQL, not acknowledged in Redis
    app = App(redis_url)
    wait_until(lambda: app.connection.redis.xlen(app.keys("payments").stream) == 0, timeout=60)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=60)
    assert f"payment {message_id}" in out and "already charged (a redelivery)" in out
    report = example(script, "report", cwd=tmp_path, redis_url=redis_url, **env)
    assert "30 payment rows for 30 messages" in report, report
    assert "consistent" in report and "INCONSISTENT" not in report
    app.close()


def test_iot_retention_batches_and_a_late_group(
    processes: Any, redis_url: str, tmp_path: Path
) -> None:
    script = str(EXAMPLES / "iot.py")
    run = {"cwd": tmp_path, "redis_url": redis_url}
    assert "published 600 readings (2 unreadable)" in example(
        script, "publish", "600", "--bad", "2", **run
    )
    burst = processes.run("worker", "iot:app", "--burst", PYTHONPATH=str(EXAMPLES), timeout=120)
    assert burst.returncode == 0, burst.stderr
    assert "running the 100 it did not settle one by one" in burst.stderr  # split, not lost
    assert "new group 'audit' replayed 600 readings" in example(script, "replay", **run)
    example(script, "publish", "1500", **run)
    burst = processes.run("worker", "iot:app", "--burst", PYTHONPATH=str(EXAMPLES), timeout=120)
    assert burst.returncode == 0, burst.stderr
    report = example(script, "report", **run)
    assert "aggregated 2098 readings, 2 unreadable" in report, report
    assert "stored 2098 readings (2098 rows); 2 dead-lettered by 'store'" in report, report
    replayed = example(script, "replay", **run)
    count = number(r"replayed (\d+) readings", replayed)
    assert count == number(r"retains (\d+)", replayed) and 1000 <= count < 2100, replayed


def test_notifications_respect_each_channel_rate(
    processes: Any, redis_url: str, tmp_path: Path
) -> None:
    script = str(EXAMPLES / "notifications.py")
    run = {"cwd": tmp_path, "redis_url": redis_url}
    assert "published 30 events" in example(script, "publish", "30", **run)
    sender = worker(processes, "notifications", "-p", "1")
    log = tmp_path / "sent.log"
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 90, timeout=60)
    sender.send_signal(signal.SIGTERM)
    sender.communicate(timeout=60)
    report = example(script, "report", **run)
    for channel in ("email", "sms", "push"):
        assert re.search(rf"{channel}\s+30 sent", report), report
    assert number(r"sms\s+30 sent in\s+([\d.]+) s", report) >= 4.5, report  # 30 at 5/s
    assert number(r"sms .* at most (\d+) in any one second", report) <= 6, report
    assert number(r"email .* at most (\d+) in any one second", report) <= 24, report


def test_transcoding_progress_restart_and_cancel(
    processes: Any, redis_url: str, tmp_path: Path
) -> None:
    app = App(redis_url)
    transcode = app.task(queue="video", name="transcode", bind=True)(lambda message, video: None)
    options = ("-p", "1", "--grace", "0.3", "--visibility-timeout", "1")
    first = worker(processes, "transcoding", *options, CHUNK_SECONDS="0.1")
    handle = transcode.send("holiday.mp4")
    wait_until(lambda: (handle.status().progress or 0) >= 0.3, timeout=60)
    first.send_signal(signal.SIGTERM)  # past --grace: the run is cut off, stays pending
    out_first, _ = first.communicate(timeout=60)
    assert handle.status().state == "running"  # its worker is gone; the entry is pending
    second = worker(processes, "transcoding", *options, CHUNK_SECONDS="0.1")
    wait_until(lambda: handle.status().state == "done", timeout=60)
    cancelled = transcode.send("outtakes.mp4")
    wait_until(lambda: (cancelled.status().progress or 0) >= 0.2, timeout=60)
    assert cancelled.cancel() == "cancelling"
    status = wait_until(lambda: (s := cancelled.status()).state == "cancelled" and s, timeout=30)
    assert (status.progress or 0) < 1.0
    second.send_signal(signal.SIGTERM)
    out_second, _ = second.communicate(timeout=60)
    resumed = number(r"holiday.mp4: resuming at chunk (\d+)/20", out_second)
    assert resumed >= 7, out_second  # it did not start over
    chunks = (out_first + out_second).count("holiday.mp4: chunk ")
    assert chunks < 26, chunks  # at most a chunk or so redone, not the whole video
    assert "holiday.mp4: done" in out_second and "outtakes.mp4: done" not in out_second
    app.close()


def test_pika_hello_and_its_streamwork_counterpart(redis_url: str, tmp_path: Path) -> None:
    ours = example(str(EXAMPLES / "hello.py"), cwd=tmp_path, redis_url=redis_url)
    queue = f"streamwork-test-{uuid.uuid4().hex[:8]}"
    theirs = example(
        str(EXAMPLES / "pika_hello.py"), cwd=tmp_path, redis_url=redis_url, PIKA_QUEUE=queue
    )
    for out in (ours, theirs):
        assert " [x] Sent 'Hello World!'" in out
        assert " [x] Received 'Hello World!'" in out
