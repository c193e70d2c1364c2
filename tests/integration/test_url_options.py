"""A Redis URL's own options don't change what streamwork reads: with `?protocol=3`
redis-py gives some replies other shapes (XREADGROUP's as a map), and a worker, the
producer and the tools work as with the default, on one Redis and on a cluster."""

import threading
from collections import Counter

import pytest

from streamwork import App, Backoff
from streamwork.ops import dead_letters
from streamwork.ops.stats import queue_state
from streamwork.testing import WorkerThread, drain, wait_until


def resp3(url):
    return url + ("&" if "?" in url else "?") + "protocol=3"


@pytest.fixture(params=["redis", "cluster"])
def resp3_app(request):
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        request.getfixturevalue("cluster_app")  # empties the cluster
        url = request.getfixturevalue("cluster").url
    application = App(resp3(url))
    yield application
    application.close()


def test_a_resp3_url_runs_tasks_and_reads_back_status_results_and_dead_letters(resp3_app):
    app = resp3_app
    attempts, lock = Counter(), threading.Lock()

    @app.task(store_result=True)
    def double(n):
        return 2 * n

    @app.task(max_retries=1, backoff=Backoff(base=0.01, cap=0.05))
    def broken(n):
        with lock:
            attempts[n] += 1
        raise ValueError("no")

    got = []

    @app.subscriber("readings", group="store")
    def store(message):
        got.append(message.payload)

    drain(app)  # makes the subscriber's group
    handles = [double.send(n) for n in range(5)]
    handles += double.send_many([(n,) for n in range(5, 10)])
    handles.append(double.send_with(args=(10,), delay=0.2))
    broken.send(1)
    app.publish("readings", {"t": 21.5})
    source = app.queue_source("default")
    with WorkerThread(app):
        assert [h.result(timeout=10) for h in handles] == [2 * n for n in range(11)]
        wait_until(lambda: dead_letters.count(app.connection, source) == 1, timeout=10)
        wait_until(lambda: got == [{"t": 21.5}], timeout=10)
    assert attempts == Counter({1: 2}) and handles[0].status().state == "done"
    state = queue_state(app, "default")
    assert state.done == 11 and state.dead == 1 and state.is_empty
    (entry,) = dead_letters.list_dead_letters(app.connection, source)
    assert entry.letter.task == "broken" and entry.letter.error == "no"
    assert dead_letters.replay(app.connection, source).replayed == 1
    assert dead_letters.count(app.connection, source) == 0
    with WorkerThread(app):  # its two attempts again, then the dead letter again
        wait_until(lambda: dead_letters.count(app.connection, source) == 1, timeout=10)
    assert attempts == Counter({1: 4})
