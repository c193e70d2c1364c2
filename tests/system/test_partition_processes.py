"""A partitioned queue across real worker processes: three processes read every
partition, and the messages of each partition key still run one at a time in send order,
through the SIGKILL of the process running one of them."""

import os
import signal

from streamwork import App
from streamwork.testing import wait_until

ORDERED = """
    import os, time
    from pathlib import Path
    from streamwork import App

    app = App()

    def log(*fields):
        with open("runs.log", "a") as f:
            f.write(" ".join(map(str, fields)) + "\\n")

    @app.task(queue="ledger", partitions=4)
    def post(account, n):
        log("start", account, n, time.time(), os.getpid())
        if account == "acct-0" and n == 3 and not Path("killed").exists():
            Path("killed").write_text(str(os.getpid()))
            time.sleep(60)  # SIGKILLed here: the next ones of acct-0 must wait for it
        time.sleep(0.002)
        log("done", account, n, time.time(), os.getpid())
"""

ACCOUNTS = [f"acct-{k}" for k in range(8)]
PER_ACCOUNT = 10


def events(tmp_path):
    path = tmp_path / "runs.log"
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(kind, account, int(n), float(at), pid) for kind, account, n, at, pid in rows]


def test_each_keys_order_holds_across_three_processes_and_a_sigkill(
    processes, write_app, redis_url, tmp_path
):
    write_app("ordered", ORDERED)
    post = App(redis_url).task(queue="ledger", name="post", partitions=4)(lambda a, n: None)
    for n in range(PER_ACCOUNT):
        for account in ACCOUNTS:
            post.send_with(args=(account, n), partition_key=account)
    worker = processes.start(
        "worker", "ordered:app", "-q", "ledger", "-p", "3", "-c", "8", "--visibility-timeout", "1"
    )
    total = len(ACCOUNTS) * PER_ACCOUNT
    try:
        # written by the handler: wait for its content, not only for the file
        wait_until(
            lambda: (tmp_path / "killed").exists() and (tmp_path / "killed").read_text(), timeout=30
        )
        os.kill(int((tmp_path / "killed").read_text()), signal.SIGKILL)
        wait_until(
            lambda: (
                len({(a, n) for kind, a, n, _, _ in events(tmp_path) if kind == "done"}) == total
            ),
            timeout=60,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert "was killed by SIGKILL" in stderr
    rows = sorted(events(tmp_path), key=lambda row: row[3])
    assert len({pid for *_, pid in rows}) >= 3  # the work was shared between processes
    killed = (tmp_path / "killed").read_text()
    for account in ACCOUNTS:
        mine = [row for row in rows if row[1] == account]
        done = [n for kind, _, n, _, _ in mine if kind == "done"]
        assert list(dict.fromkeys(done)) == list(range(PER_ACCOUNT)), (account, done)
        # One at a time, in order: each start comes after the previous message of the key
        # is done. Runs of the killed process never wrote their outcomes: the one it was
        # running starts again, and one it had finished but not settled runs again (at
        # least once), before the next of its key.
        finished, done_in = -1, {}
        for kind, _, n, _, pid in mine:
            if kind == "start":
                is_rerun = n == finished and done_in.get(n) == killed
                assert n == finished + 1 or is_rerun, (account, mine)
            else:
                finished, done_in[n] = n, pid
    starts_of_killed = [row for row in rows if row[:3] == ("start", "acct-0", 3)]
    assert len(starts_of_killed) == 2
