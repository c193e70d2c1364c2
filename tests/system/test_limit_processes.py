"""Flow control across real worker processes: a rate limit held by three processes
together, a concurrency limit of 2 never seeing 3 running, and the slot of a SIGKILLed
worker coming back."""

import os
import signal

from streamwork import App
from streamwork.testing import wait_until

LIMITED = """
    import os, time
    from pathlib import Path
    from streamwork import App

    app = App()

    def log(*fields):
        with open("runs.log", "a") as f:
            f.write(" ".join(map(str, fields)) + "\\n")

    @app.task(queue="api", rate_limit="20/s")
    def call_api(n):
        log("call", time.time())

    @app.task(queue="renders", concurrency_limit=2)
    def render(n):
        started = time.time()
        time.sleep(0.1)
        log("render", started, time.time())

    @app.task(queue="single", concurrency_limit=1)
    def exclusive(n):
        log("exclusive-start", n, os.getpid())
        if n == 0 and not Path("killed").exists():
            Path("killed").write_text(str(os.getpid()))
            time.sleep(60)  # SIGKILLed here, holding the only slot
        log("exclusive-done", n, os.getpid())
"""


def lines(tmp_path, kind):
    path = tmp_path / "runs.log"
    if not path.exists():
        return []
    return [line.split()[1:] for line in path.read_text().splitlines() if line.split()[0] == kind]


def test_a_rate_limit_holds_across_three_worker_processes(
    processes, write_app, redis_url, tmp_path
):
    write_app("limited", LIMITED)
    app = App(redis_url)
    app.task(queue="api", name="call_api")(lambda n: None).send_many(range(60))
    worker = processes.start("worker", "limited:app", "-q", "api", "-p", "3")
    try:
        wait_until(lambda: len(lines(tmp_path, "call")) == 60, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    starts = sorted(float(fields[0]) for fields in lines(tmp_path, "call"))
    # 20/s with its default burst (4): at most 24 starts in any second (a handler starts a
    # few ms after its admission on Redis's clock: 0.1 s of that allowed for)
    assert max(sum(1 for t in starts if s <= t < s + 0.9) for s in starts) <= 24
    assert starts[-1] - starts[0] >= (60 - 4) / 20 - 0.2


def test_a_concurrency_limit_of_two_never_sees_three_running(
    processes, write_app, redis_url, tmp_path
):
    write_app("limited", LIMITED)
    app = App(redis_url)
    app.task(queue="renders", name="render")(lambda n: None).send_many(range(16))
    worker = processes.start("worker", "limited:app", "-q", "renders", "-p", "2", "-c", "4")
    try:
        wait_until(lambda: len(lines(tmp_path, "render")) == 16, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    spans = [(float(a), float(b)) for a, b in lines(tmp_path, "render")]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most == 2  # two at once (it is used), never three
    assert App(redis_url).connection.redis.xlen(App(redis_url).keys("renders").dead_letters) == 0


def test_the_slot_of_a_sigkilled_worker_comes_back(processes, write_app, redis_url, tmp_path):
    write_app("limited", LIMITED)
    app = App(redis_url)
    exclusive = app.task(queue="single", name="exclusive")(lambda n: None)
    exclusive.send(0)
    worker = processes.start(
        "worker", "limited:app", "-q", "single", "-p", "1", "--visibility-timeout", "1"
    )
    try:
        wait_until(lambda: (tmp_path / "killed").exists(), timeout=30)
        exclusive.send_many(range(1, 4))  # held: the only slot is taken
        os.kill(int((tmp_path / "killed").read_text()), signal.SIGKILL)
        wait_until(lambda: len(lines(tmp_path, "exclusive-done")) == 4, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert "was killed by SIGKILL" in stderr
    assert sorted(int(f[0]) for f in lines(tmp_path, "exclusive-done")) == [0, 1, 2, 3]
