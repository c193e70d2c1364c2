"""A Redis wiped under a running worker (FLUSHALL): the worker makes its groups again, goes
on serving, stops cleanly, and says what happened to the entry it was running."""

import logging
import threading

import pytest

from streamwork.testing import WorkerThread, wait_until


def recording_job(app):
    """A task that records the number it was sent, and that record."""
    done = []

    @app.task
    def job(n):
        done.append(n)

    return job, done


def test_worker_survives_flushall_and_goes_on(app, client, caplog):
    release = threading.Event()
    started = threading.Event()

    @app.task
    def hold():
        started.set()
        release.wait(20)

    job, done = recording_job(app)

    caplog.set_level(logging.INFO)
    with WorkerThread(app, visibility_timeout=2) as worker:
        hold.send()
        job.send(1)
        wait_until(lambda: started.is_set() and done == [1], message="first runs")
        client.flushall()
        release.set()  # hold's entry is gone: its outcome has nowhere to go
        wait_until(
            lambda: "disappeared from the pending list" in caplog.text,
            message="the settler to report the vanished entry",
        )
        job.send(2)
        job.send(3)
        wait_until(lambda: sorted(done) == [1, 2, 3], timeout=15, message="runs after FLUSHALL")
        # the scanner's steps also meet the missing groups, and recover
        wait_until(
            lambda: worker.worker.session.scanner.claimed == 0 and worker.worker.in_flight == 0
        )
    # leaving the block stopped the worker; it would have raised what it died of
    assert "another worker claimed it" not in caplog.text
    assert "Traceback" not in caplog.text
    assert client.xlen(app.keys("default").stream) == 0


def test_a_redis_py_connection_race_is_waited_out(app, monkeypatch, caplog):
    """redis-py's async cluster client can write to a node connection a failover tore down
    (AttributeError inside redis-py); the fetch loop waits that out like a lost connection."""
    caplog.set_level(logging.DEBUG, logger="streamwork")
    import redis.asyncio.connection

    from streamwork._redis.lanes import Lane

    real_read = Lane.read  # a single Redis: the fetch loop reads on a lane
    raced = []

    async def racy_read(lane, *args):
        if not raced:
            raced.append(True)
            torn_down = redis.asyncio.connection.Connection()
            await torn_down._send_packed_command([b"PING"])  # its writer is None
        return await real_read(lane, *args)

    monkeypatch.setattr(Lane, "read", racy_read)
    job, done = recording_job(app)
    with WorkerThread(app):
        job.send(1)
        wait_until(lambda: done == [1], message="the run after the race")
    # waited out as a lost connection (a blip: logged at debug level) or as an error
    assert raced and ("retrying in" in caplog.text or "lost a Redis connection" in caplog.text)


def test_only_errors_raised_inside_redis_py_count_as_its_races():
    from streamwork._redis.errors import is_client_race

    def ours():
        return None.missing  # type: ignore[attr-defined]

    try:
        ours()
    except AttributeError as exc:
        assert not is_client_race(exc)
    assert not is_client_race(ConnectionError("refused"))


def test_a_group_made_again_while_redis_is_still_away_is_waited_out(
    app, client, monkeypatch, caplog
):
    """The fetch loop makes a deleted group again inside its retry: a connection error
    meeting that step (Redis restarting, a stale pooled connection) is waited out, not the
    end of the worker."""
    import sys

    caplog.set_level(logging.DEBUG, logger="streamwork")

    import redis.exceptions

    from streamwork._redis import commands

    real_ensure = commands.ensure_group
    failed = []

    async def flaky_ensure(client_, source):
        if armed and not failed and sys._getframe(1).f_code.co_name == "_loop":
            failed.append(source.stream)
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        await real_ensure(client_, source)

    armed = False
    monkeypatch.setattr(commands, "ensure_group", flaky_ensure)
    job, done = recording_job(app)
    with WorkerThread(app):
        job.send(1)
        wait_until(lambda: done == [1], message="the first run")
        armed = True
        client.flushall()  # the groups are gone: the fetch loop's next read says NOGROUP
        wait_until(lambda: failed, message="the fetch loop to make the group again")
        job.send(2)
        wait_until(lambda: done == [1, 2], timeout=15, message="a run after the failed step")
    assert "lost a Redis connection while reading: Connection closed by server." in (caplog.text)


def test_a_redis_outage_is_one_warning_and_one_line_when_it_is_back(caplog):
    """Redis stops under a worker and comes back: the fetch, settle and scanner loops all
    fail meanwhile, and the worker says so once, then says it is back (no error per
    retry)."""
    from streamwork import App
    from streamwork.testing import RedisServer

    caplog.set_level(logging.INFO, logger="streamwork")
    server = RedisServer(["--appendonly", "yes", "--appendfsync", "always"]).start()
    try:
        app = App(server.url)
        job, done = recording_job(app)
        with WorkerThread(app):
            job.send(1)
            wait_until(lambda: done == [1], message="the first run")
            server.stop()
            wait_until(lambda: "cannot reach Redis" in caplog.text, message="the warning")
            server.start()
            wait_until(lambda: "Redis is back after" in caplog.text, message="back")
            job.send(2)
            wait_until(lambda: done == [1, 2], timeout=15, message="a run after the outage")
        app.close()
    finally:
        server.cleanup()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    warned = [m for level, m in said if level == "WARNING" and "Redis" in m]
    assert len(warned) == 1 and warned[0].startswith("cannot reach Redis at"), said
    assert len([m for _, m in said if m.startswith("Redis is back after")]) == 1, said
    assert not [m for level, m in said if level == "ERROR"], said


def test_a_connection_dropped_while_a_worker_starts_is_retried(app, monkeypatch):
    """A worker's start-up checks that meet a dropped (or stale) connection check again
    instead of ending the worker; a Redis that stays away still ends it, in one error."""
    import redis.exceptions

    from streamwork import ConnectionFailed
    from streamwork._worker import worker

    real = worker.check_durability
    dropped = []

    async def drops_once(*args, **kwargs):
        if not dropped:
            dropped.append(True)
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        return await real(*args, **kwargs)

    monkeypatch.setattr(worker, "check_durability", drops_once)
    job, done = recording_job(app)
    job.send(1)
    with WorkerThread(app):
        wait_until(lambda: done == [1], message="a run after the dropped connection")
    assert dropped

    async def always_drops(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(worker, "check_durability", always_drops)
    gives_up = WorkerThread(app).start()
    with pytest.raises(ConnectionFailed, match="Connection closed by server"):
        gives_up.stop()  # raises what the worker ended with
