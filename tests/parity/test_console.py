"""The web console's reads and actions, the same on a real redis-server and on memory://
(so `asgi_app(app)` works in a user's own tests of an app on memory://)."""

import re

from starlette.testclient import TestClient

from streamwork.testing import run_until_idle
from streamwork.web import asgi_app


def test_console_shows_a_backlog_and_replays_dead_letters(app):
    attempts = []

    @app.task(max_retries=0)
    def fragile(n):
        attempts.append(n)
        if len(attempts) <= 2:
            raise ValueError(f"not yet {n}")

    later = app.task(name="later")(lambda: None)
    fragile.send(1)
    fragile.send(2)
    later.send()
    web = TestClient(asgi_app(app), follow_redirects=False)
    assert re.search(r'class="n backlog">3<', web.get("/").text)
    run_until_idle(app)
    page = web.get("/dead-letters/default")
    assert len(re.findall(r'name="ids" value="([^"]+)"', page.text)) == 2
    assert "not yet" in page.text
    replayed = web.post(
        "/dead-letters/default/replay", data={"csrf": web.cookies["sw_csrf"], "all": "1"}
    )
    assert replayed.status_code == 303
    run_until_idle(app)
    assert sorted(attempts) == [1, 1, 2, 2]
    assert re.findall(r'name="ids"', web.get("/dead-letters/default").text) == []


def test_console_cancels_a_delayed_task(app):
    task = app.task(name="later")(lambda: None)
    handle = task.send_with(delay=3600)
    web = TestClient(asgi_app(app), follow_redirects=False)
    assert "state-delayed" in web.get(f"/tasks/{handle.id}").text
    web.post(f"/tasks/{handle.id}/cancel", data={"csrf": web.cookies["sw_csrf"]})
    assert handle.status().state == "cancelled"
    assert run_until_idle(app, advance_time=True).done == 0


def test_console_shows_a_partitioned_queue_and_each_partitions_dead_letters(app):
    @app.task(queue="orders", partitions=3, max_retries=0)
    def fragile(n):
        raise ValueError(f"bad order {n}")

    handles = [fragile.send(n) for n in range(3)]
    web = TestClient(asgi_app(app), follow_redirects=False)
    assert re.search(r'class="n backlog">3<', web.get("/").text)
    run_until_idle(app)
    index = web.get("/dead-letters").text
    assert all(f"/dead-letters/orders~{n}" in index for n in range(3))
    page = web.get(f"/dead-letters/orders~{handles[1].partition}")
    assert "bad order 1" in page.text and "bad order 0" not in page.text
    assert web.get("/dead-letters/orders~7").status_code == 404
    assert "state-failed" in web.get(f"/tasks/{handles[2].id}").text
    replayed = web.post(
        "/dead-letters/orders~1/replay", data={"csrf": web.cookies["sw_csrf"], "all": "1"}
    )
    assert replayed.status_code == 303
    assert app.connection.redis.xlen(app.keys("orders~1").stream) == 1
