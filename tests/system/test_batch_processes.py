"""A batch handler's worker SIGKILLed in the middle of a batch: nothing is lost. The batch's
entries stay pending, another worker claims them after the visibility timeout and runs each
alone (a redelivered message might be what killed its worker), and every message ends done."""

import os
import signal

from streamwork import App
from streamwork.ops.stats import queue_state
from streamwork.testing import wait_until

APP = """
    import os, time
    from streamwork import App

    app = App()

    @app.task(queue="readings", batch_size=20, batch_wait=0.2)
    def store(messages):
        with open("batches.log", "a") as log:
            log.write(f"{os.getpid()} start {len(messages)}\\n")
        if os.path.exists("slow"):
            time.sleep(60)
        with open("stored.log", "a") as log:
            for message in messages:
                log.write(f"{message.args[0]} {message.delivery_count}\\n")
"""


def test_a_worker_killed_mid_batch_loses_nothing(processes, write_app, redis_url, tmp_path):
    write_app("sensors", APP)
    (tmp_path / "slow").write_text("")
    app = App(redis_url)
    store = app.task(queue="readings", name="store", batch_size=20)(lambda messages: None)
    store.send_many([(n,) for n in range(20)])
    first = processes.start("worker", "sensors:app", "-p", "1", "--visibility-timeout", "1")
    log = tmp_path / "batches.log"
    wait_until(lambda: log.exists() and " start 20" in log.read_text(), timeout=30)
    os.kill(int(log.read_text().split()[0]), signal.SIGKILL)  # the worker process, mid-batch
    first.send_signal(signal.SIGTERM)
    first.wait(30)
    (tmp_path / "slow").unlink()
    stream = app.keys("readings").stream

    def claimable():
        rows = app.connection.redis.xpending_range(stream, "workers", "-", "+", 100)
        return len(rows) == 20 and min(r["time_since_delivered"] for r in rows) > 1100

    wait_until(claimable, timeout=30)  # idle past the visibility timeout: a worker claims
    done = processes.run(
        "worker", "sensors:app", "--burst", "-p", "1", "--visibility-timeout", "1", timeout=120
    )
    assert done.returncode == 0, done.stderr
    stored = [line.split() for line in (tmp_path / "stored.log").read_text().splitlines()]
    assert sorted(int(n) for n, _ in stored) == list(range(20))  # each once, none lost
    assert {count for _, count in stored} == {"2"}  # redelivered after the kill
    assert "running redelivered entry" in done.stderr  # alone: a batch of one each
    wait_until(lambda: queue_state(app, "readings").is_empty, timeout=10)
    app.close()
