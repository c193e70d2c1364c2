"""The web console over HTTP (Starlette's test client), on a real redis-server: every route,
its bad input, the token, CSRF and read-only checks, and escaping.

The browser tests (tests/browser) click through the same pages in Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from streamwork import App, chain, group
from streamwork._base import protocol
from streamwork._base.keys import QUEUE_GROUP
from streamwork.testing import run_until_idle
from streamwork.web import asgi_app

XSS = "<script>alert('xss')</script>"


@pytest.fixture
def app(redis_url: str) -> Iterator[App]:
    application = App(redis_url, events=True)

    @application.task(max_retries=0)
    def boom(value: Any) -> None:
        raise ValueError(f"bad value {value}")

    @application.task
    def add(a: int, b: int) -> int:
        return a + b

    yield application
    application.close()


def console(app: App, **options: Any) -> TestClient:
    return TestClient(asgi_app(app, **options), follow_redirects=False)


def csrf_of(client: TestClient) -> str:
    if not client.cookies.get("sw_csrf"):
        client.get("/")
    value = client.cookies.get("sw_csrf")
    assert value
    return value


def flash(response: Any) -> list[str]:
    return re.findall(r'class="flash"[^>]*>([^<]*)<', response.text)


def dead_letter_ids(client: TestClient, path: str = "/dead-letters/default") -> list[str]:
    return re.findall(r'name="ids" value="([^"]+)"', client.get(path).text)


def make_dead_letters(app: App, values: list[Any]) -> None:
    for value in values:
        app.tasks["boom"].send(value)
    run_until_idle(app)


# -- pages -------------------------------------------------------------------------------


def test_overview_shows_each_queue_backlog_and_dead_letters(app: App) -> None:
    make_dead_letters(app, [1, 2])
    for i in range(7):
        app.tasks["add"].send(i, 1)
    page = console(app).get("/")
    assert page.status_code == 200
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert re.search(r'class="n backlog">7<', row.group(1))
    assert ">2</a>" in row.group(1)  # dead letters, linked
    assert "<polyline" in row.group(1)
    assert "L = λW" in page.text


def test_overview_with_nothing_yet(redis_url: str) -> None:
    app = App(redis_url)
    page = console(app).get("/")
    assert page.status_code == 200
    assert "No queues yet" in page.text
    app.close()


def test_queue_page_lists_ready_pending_and_delayed_entries(app: App, client: redis.Redis) -> None:
    sent = [app.tasks["add"].send(i, 1).id for i in range(3)]
    later = app.tasks["add"].send_with(args=(9, 9), delay=3600).id
    keys = app.keys("default")
    client.xgroup_create(keys.stream, QUEUE_GROUP, "0", mkstream=True)
    client.xreadgroup(QUEUE_GROUP, "worker-a", {keys.stream: ">"}, count=1)  # one delivered
    page = console(app).get("/queues/default")
    assert page.status_code == 200
    pending = page.text.split('id="pending-entries"')[1].split("</table>")[0]
    ready = page.text.split('id="ready-entries"')[1].split("</table>")[0]
    delayed = page.text.split('id="delayed-entries"')[1].split("</table>")[0]
    assert sent[0] in pending and "worker-a" in pending
    assert sent[1] in ready and sent[2] in ready and sent[0] not in ready
    assert later in delayed and "9, 9" in delayed


def test_queue_page_pages_ready_entries_by_id(app: App) -> None:
    ids = [app.tasks["add"].send(i, 1).id for i in range(60)]
    web = console(app)
    first = web.get("/queues/default")
    after = re.search(r'href="\?after=([0-9-]+)"', first.text)
    assert after is not None
    second = web.get(f"/queues/default?after={after.group(1)}")
    assert ids[0] in first.text and ids[49] in first.text and ids[50] not in first.text
    assert ids[50] in second.text and ids[59] in second.text and ids[0] not in second.text


def test_purge_a_queue(app: App) -> None:
    for i in range(4):
        app.tasks["add"].send(i, 1)
    web = console(app)
    done = web.post("/queues/default/purge", data={"csrf": csrf_of(web)})
    assert done.status_code == 303
    assert done.headers["location"] == "/queues/default"
    assert "purged 4 waiting" in flash(web.get("/queues/default"))[0]
    assert app.connection.redis.xlen(app.keys("default").stream) == 0


def test_dead_letters_index_list_and_one_in_full(app: App) -> None:
    make_dead_letters(app, ["first", "second"])
    web = console(app)
    index = web.get("/dead-letters")
    assert re.search(
        r'href="/dead-letters/default">default</a></td><td></td><td class="n">2<', index.text
    )
    ids = dead_letter_ids(web)
    assert len(ids) == 2
    shown = web.get(f"/dead-letters/default/{ids[0]}")  # newest first: "second"
    assert shown.status_code == 200
    assert "[\n  &#34;second&#34;\n]" in shown.text  # its arguments, as JSON
    assert "ValueError: bad value second" in shown.text
    assert "Traceback (most recent call last)" in shown.text


def test_every_value_from_redis_is_escaped(app: App) -> None:
    make_dead_letters(app, [XSS])
    web = console(app)
    listing = web.get("/dead-letters/default")
    (entry_id,) = dead_letter_ids(web)
    shown = web.get(f"/dead-letters/default/{entry_id}")
    for page in (listing, shown):
        assert XSS not in page.text
        assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in page.text
    assert "script-src 'self'" in shown.headers["content-security-policy"]


def test_dead_letter_search_by_task_and_error_text(app: App) -> None:
    make_dead_letters(app, ["apple", "banana", "cherry"])
    web = console(app)
    found = web.get("/dead-letters/default?q=BANANA")
    assert "bad value banana" in found.text and "apple" not in found.text
    by_task = web.get("/dead-letters/default?task=boom&q=value")
    assert len(re.findall(r'name="ids"', by_task.text)) == 3
    none = web.get("/dead-letters/default?task=add")
    assert "No dead letters match" in none.text


def test_dead_letters_page_by_id_and_search_reads_a_bounded_amount(app: App) -> None:
    make_dead_letters(app, list(range(120)))
    web = console(app)
    seen: list[str] = []
    path = "/dead-letters/default"
    while path:
        page = web.get(path)
        seen += re.findall(r'name="ids" value="([^"]+)"', page.text)
        older = re.search(r'id="older" href="([^"]+)"', page.text)
        path = "/dead-letters/default" + older.group(1).replace("&amp;", "&") if older else ""
    assert len(seen) == 120 and len(set(seen)) == 120
    assert seen == sorted(seen, key=lambda i: tuple(map(int, i.split("-"))), reverse=True)
    from streamwork.ops import dead_letters

    page = dead_letters.search(
        app.connection, app.queue_source("default"), text="bad value 3", scan=50
    )
    assert page.scanned == 50 and page.next_before is not None  # a page, and where to go on


def test_replay_one_selected_and_all_matching(app: App) -> None:
    make_dead_letters(app, ["a1", "a2", "b1", "b2", "c1"])
    web = console(app)
    token = csrf_of(web)
    ids = dead_letter_ids(web)
    one = web.post("/dead-letters/default/replay", data={"csrf": token, "ids": ids[0]})
    assert one.status_code == 303
    assert flash(web.get("/dead-letters/default")) == [
        "replayed 1 dead letter(s) onto &#39;default&#39;"
    ]
    web.post("/dead-letters/default/replay", data={"csrf": token, "ids": ids[1:3]})
    assert len(dead_letter_ids(web)) == 2
    web.post("/dead-letters/default/replay", data={"csrf": token, "all": "1", "q": "value a"})
    left = web.get("/dead-letters/default").text
    assert "bad value a" not in left
    assert app.connection.redis.xlen(app.keys("default").stream) == 5 - len(dead_letter_ids(web))


def test_replay_all_and_purge_dead_letters(app: App) -> None:
    make_dead_letters(app, [1, 2, 3])
    web = console(app)
    token = csrf_of(web)
    web.post("/dead-letters/default/replay", data={"csrf": token, "all": "1"})
    assert dead_letter_ids(web) == []
    run_until_idle(app)  # they fail again
    purged = web.post("/dead-letters/default/purge", data={"csrf": token})
    assert purged.status_code == 303
    assert flash(web.get("/dead-letters/default")) == [
        "purged 3 dead letter(s) from &#39;default&#39;"
    ]


def test_replay_with_nothing_chosen_is_refused(app: App) -> None:
    make_dead_letters(app, [1])
    web = console(app)
    refused = web.post("/dead-letters/default/replay", data={"csrf": csrf_of(web)})
    assert refused.status_code == 400
    assert "nothing to replay" in refused.text
    assert len(dead_letter_ids(web)) == 1


def test_topic_group_dead_letters(redis_url: str) -> None:
    app = App(redis_url)

    @app.subscriber("orders", group="mailer", max_retries=0)
    def mail(event: Any) -> None:
        raise RuntimeError("smtp down")

    run_until_idle(app)  # the group exists: it receives what is published from now on
    app.publish("orders", {"id": 1})
    run_until_idle(app)
    web = console(app)
    assert "?group=mailer" in web.get("/dead-letters").text
    page = web.get("/dead-letters/orders?group=mailer")
    assert "smtp down" in page.text
    ids = re.findall(r'name="ids" value="([^"]+)"', page.text)
    replayed = web.post(
        "/dead-letters/orders/replay", data={"csrf": csrf_of(web), "ids": ids, "group": "mailer"}
    )
    assert replayed.headers["location"] == "/dead-letters/orders?group=mailer"
    assert app.connection.redis.xlen(app.topic_source("orders", "mailer").ready) == 1
    app.close()


def test_task_page_shows_status_and_events_and_cancels(app: App) -> None:
    handle = app.tasks["add"].send_with(args=(1, 2), delay=3600)
    web = console(app)
    page = web.get(f"/tasks/{handle.id}")
    assert page.status_code == 200
    assert re.search(r'id="state" class="state-delayed">delayed', page.text)
    assert ">sent<" in page.text  # its event
    cancelled = web.post(
        f"/tasks/{handle.id}/cancel", data={"csrf": csrf_of(web), "reason": "not needed"}
    )
    assert cancelled.status_code == 303
    after = web.get(f"/tasks/{handle.id}")
    assert flash(after) == ["cancelled: it was delayed, it will not run"]
    assert "state-cancelled" in after.text and "not needed" in after.text
    assert 'id="cancel"' not in after.text  # final: nothing to cancel
    assert handle.status().state == "cancelled"


def test_task_lookup(app: App) -> None:
    handle = app.tasks["add"].send(1, 2)
    web = console(app)
    assert web.get("/tasks").status_code == 200
    found = web.get(f"/tasks?id={handle.id}")
    assert found.status_code == 303 and found.headers["location"] == f"/tasks/{handle.id}"


def test_schedules_pause_resume_trigger_remove(app: App) -> None:
    app.add_schedule("nightly", "add", cron="0 3 * * *", args=(1, 2))
    web = console(app)
    token = csrf_of(web)
    assert 'data-schedule="nightly"' in web.get("/schedules").text
    web.post("/schedules/nightly/pause", data={"csrf": token})
    assert app.get_schedule("nightly").paused
    assert ">paused<" in web.get("/schedules").text
    web.post("/schedules/nightly/resume", data={"csrf": token})
    assert not app.get_schedule("nightly").paused
    web.post("/schedules/nightly/trigger", data={"csrf": token})
    assert "triggered &#39;nightly&#39;: message" in flash(web.get("/schedules"))[0]
    assert app.connection.redis.xlen(app.keys("default").stream) == 1
    web.post("/schedules/nightly/remove", data={"csrf": token})
    assert app.schedules() == []
    assert web.post("/schedules/nightly/explode", data={"csrf": token}).status_code == 404
    assert web.post("/schedules/gone/pause", data={"csrf": token}).status_code == 404


def test_workflows_recent_tree_and_cancel(app: App) -> None:
    add = app.tasks["add"]
    finished = group(add.s(5, 6)).send()
    run_until_idle(app)
    workflow = chain(add.s(1, 2), group(add.s(3), add.s(4))).send()
    web = console(app)
    listed = web.get("/workflows").text

    def row(of: Any) -> str:
        return str(listed.split(f">{of.id}</a>")[1].split("</tr>")[0])

    # each row: kind, state, created and ended (UTC), not a bare id
    running, done = row(workflow), row(finished)
    assert "<td>chain</td>" in running and ">running</td>" in running
    assert workflow.status().created_at.strftime("%Y-%m-%d %H:%M:%S") in running
    assert running.endswith("<td>—</td>")  # not ended
    assert "<td>group</td>" in done and ">done</td>" in done
    assert finished.status().finished_at.strftime("%Y-%m-%d %H:%M:%S") in done
    assert web.get(f"/workflows?id={workflow.id}").headers["location"] == (
        f"/workflows/{workflow.id}"
    )
    tree = web.get(f"/workflows/{workflow.id}")
    assert tree.status_code == 200
    assert tree.text.count('<li class="node') == 5  # chain, task, group, task, task
    assert "queued" in tree.text and "waiting" in tree.text
    web.post(f"/workflows/{workflow.id}/cancel", data={"csrf": csrf_of(web)})
    assert workflow.status().state == "cancelled"
    assert 'id="state">cancelled' in web.get(f"/workflows/{workflow.id}").text


def test_workers_page_lists_consumers_and_what_they_run(app: App, client: redis.Redis) -> None:
    handle = app.tasks["add"].send(1, 2)
    keys = app.keys("default")
    client.xgroup_create(keys.stream, QUEUE_GROUP, "0", mkstream=True)
    client.xreadgroup(QUEUE_GROUP, "host-1:4242", {keys.stream: ">"}, count=1)
    # host-2 serves the queue and got nothing (no consumer in Redis): its heartbeat says so
    client.zadd(app.queue_source("default").workers, {"host-2:7": protocol.now_ms() + 30_000})
    page = console(app).get("/workers")
    row = page.text.split('id="workers"')[1]
    assert "host-1:4242" in row and f"/tasks/{handle.id}" in row
    idle, ghost = row.split("host-2:7")[1], row.split("host-1:4242")[1]
    assert "not seen lately" not in idle.split("</tr>")[0]  # live, though it read nothing
    assert "not seen lately" in ghost.split("</tr>")[0]  # a consumer without a heartbeat


def test_events_page_lists_recent_events(app: App) -> None:
    handle = app.tasks["add"].send(1, 2)
    run_until_idle(app)
    page = console(app).get("/events")
    assert page.text.count(f'href="/tasks/{handle.id}"') == 3  # sent, started, done
    assert 'data-stream="/events/stream"' in page.text


def test_events_page_of_an_app_without_events(redis_url: str) -> None:
    app = App(redis_url)
    page = console(app).get("/events")
    assert "records no events" in page.text
    app.close()


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "said"),
    [
        ("/queues/no%20such", 400, "invalid queue name"),
        ("/queues/missing", 404, "no queue &#39;missing&#39;"),
        ("/queues/default?after=zzz", 400, "not a stream entry id"),
        ("/dead-letters/missing", 404, "no queue &#39;missing&#39;"),
        ("/dead-letters/missing?group=g", 404, "no topic &#39;missing&#39;"),
        ("/dead-letters/default/not-an-id", 400, "not a stream entry id"),
        ("/dead-letters/default/1-0", 404, "no dead letter 1-0"),
        ("/dead-letters/default?before=x", 400, "not a stream entry id"),
        ("/tasks/bad!id", 400, "is not a message id"),
        ("/tasks/0123456789abcdef0123456789abcdef", 404, "no status for message"),
        ("/workflows/0123456789abcdef0123456789abcdef", 404, "no workflow"),
        ("/workflows/bad!id", 400, "is not a workflow id"),
        ("/events?queue=bad%20name", 400, "invalid queue name"),
    ],
)
def test_bad_input_gets_a_one_line_error(app: App, path: str, status: int, said: str) -> None:
    app.tasks["add"].send(1, 2)  # the default queue exists
    page = console(app).get(path)
    assert page.status_code == status
    problem = re.search(r'id="problem">([^<]*)<', page.text)
    assert problem is not None and said in problem.group(1)
    assert "\n" not in problem.group(1)


def test_unreachable_redis_is_a_503_with_what_failed(redis_server: Any) -> None:
    from streamwork.testing import free_port

    app = App(f"redis://127.0.0.1:{free_port()}/0")
    page = console(app).get("/")
    assert page.status_code == 503
    assert "127.0.0.1" in page.text and "Traceback" not in page.text
    app.close()


# -- security ----------------------------------------------------------------------------


def test_posts_without_a_valid_csrf_token_are_refused(app: App) -> None:
    make_dead_letters(app, [1])
    web = console(app)
    ids = dead_letter_ids(web)
    csrf_of(web)
    for data in ({"ids": ids}, {"ids": ids, "csrf": "forged"}):
        refused = web.post("/dead-letters/default/replay", data=data)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    assert dead_letter_ids(web) == ids  # nothing replayed
    other = console(app)  # a browser without the cookie, with a value from elsewhere
    refused = other.post("/queues/default/purge", data={"csrf": csrf_of(web)})
    assert refused.status_code == 403


def test_a_token_is_required_when_set(app: App) -> None:
    make_dead_letters(app, [1])
    web = console(app, token="s3cret-token")
    html = {"accept": "text/html"}
    redirected = web.get("/dead-letters/default", headers=html)
    assert redirected.status_code == 303
    assert redirected.headers["location"] == "/login?next=%2Fdead-letters%2Fdefault"
    assert web.get("/").status_code == 401  # not a browser: no redirect
    assert web.get("/events/stream").status_code == 401
    assert web.post("/queues/default/purge").status_code == 401
    login = web.get("/login")
    token = csrf_of(web)
    assert login.status_code == 200
    # the console around the form: where it is, its pages and "Find task" (they lead here
    # until the token is given), but no "Log out" for a browser that is not logged in
    assert f"sw @ {app.url}" in login.text and 'href="/workflows"' in login.text
    assert "Find task" in login.text and "Log out" not in login.text
    wrong = web.post("/login?next=/workers", data={"token": "nope", "csrf": token})
    assert wrong.status_code == 401 and "not the token" in wrong.text
    right = web.post("/login?next=/workers", data={"token": "s3cret-token", "csrf": token})
    assert right.status_code == 303 and right.headers["location"] == "/workers"
    assert "s3cret-token" not in web.cookies.get("sw_session", "")
    assert web.get("/dead-letters/default").status_code == 200
    assert web.post("/logout").status_code == 403  # without the CSRF value
    assert web.get("/").status_code == 200
    web.post("/logout", data={"csrf": token})
    assert web.get("/").status_code == 401
    forged = web.post("/login", data={"token": "s3cret-token", "csrf": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text


def test_a_token_in_the_authorization_header(app: App) -> None:
    app.tasks["add"].send(1, 2)
    web = console(app, token="s3cret-token")
    bearer = {"authorization": "Bearer s3cret-token"}
    assert web.get("/", headers=bearer).status_code == 200
    assert web.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
    # a header is not sent by browsers on their own: no CSRF value needed with it
    purged = web.post("/queues/default/purge", headers=bearer)
    assert purged.status_code == 303


def test_login_never_redirects_off_the_console(app: App) -> None:
    web = console(app, token="s3cret-token")
    web.get("/login")
    token = csrf_of(web)
    for target in ("https://evil.example/", "//evil.example/"):
        done = web.post(f"/login?next={target}", data={"token": "s3cret-token", "csrf": token})
        assert done.headers["location"] == "/"


def test_read_only_hides_and_refuses_actions(app: App) -> None:
    make_dead_letters(app, [1])
    app.add_schedule("nightly", "add", cron="0 3 * * *", args=(1, 2))
    handle = app.tasks["add"].send(1, 2)
    web = console(app, read_only=True)
    for path in ("/dead-letters/default", "/schedules", f"/tasks/{handle.id}", "/queues/default"):
        page = web.get(path)
        assert page.status_code == 200
        assert 'method="post"' not in page.text.replace('action="/logout"', "")
        assert "read-only" in page.text
    token = csrf_of(web)
    for path in ("/queues/default/purge", "/schedules/nightly/pause", f"/tasks/{handle.id}/cancel"):
        refused = web.post(path, data={"csrf": token})
        assert refused.status_code == 403 and "read-only" in refused.text
    assert not app.get_schedule("nightly").paused
    assert handle.status().state == "queued"


def test_the_redis_password_never_appears(redis_url: str, client: redis.Redis) -> None:
    client.acl_setuser(
        "console", enabled=True, passwords=["+pw-4f9a1c"], keys="~*", commands=["+@all"]
    )
    url = redis_url.replace("redis://", "redis://console:pw-4f9a1c@")
    app = App(url, events=True)

    @app.task(max_retries=0)
    def fail() -> None:
        raise ValueError("no")

    fail.send()
    run_until_idle(app)
    web = console(app)
    pages = [
        "/",
        "/queues/default",
        "/dead-letters",
        "/dead-letters/default",
        "/events",
        "/workers",
    ]
    for path in pages:
        page = web.get(path)
        assert page.status_code == 200, path
        assert "pw-4f9a1c" not in page.text
        assert "console:***@" in page.text
    app.close()


def test_mounted_under_a_prefix_links_stay_inside_it(app: App) -> None:
    make_dead_letters(app, [1])
    host = Starlette(routes=[Mount("/ops/streamwork", app=asgi_app(app))])
    web = TestClient(host, follow_redirects=False)
    page = web.get("/ops/streamwork/")
    assert page.status_code == 200
    assert 'href="/ops/streamwork/dead-letters/default"' in page.text
    assert 'href="/ops/streamwork/static/console.css"' in page.text
    assert web.get("/ops/streamwork/static/console.js").status_code == 200
    token = web.cookies.get("sw_csrf")
    replayed = web.post(
        "/ops/streamwork/dead-letters/default/replay", data={"csrf": token, "all": "1"}
    )
    assert replayed.headers["location"] == "/ops/streamwork/dead-letters/default"


def test_csp_and_cookie_flags(app: App) -> None:
    page = console(app).get("/")
    assert page.headers["x-frame-options"] == "DENY"
    cookie = page.headers["set-cookie"]
    assert "sw_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_every_page_and_a_replay_on_a_redis_cluster(cluster: Any) -> None:
    app = App(cluster.url, events=True)
    queues = ["q-alpha", "q-beta", "q-gamma", "q-delta"]  # in different slots
    tasks = {}
    for queue in queues:
        tasks[queue] = app.task(queue=queue, name=f"fail-{queue}", max_retries=0)(_fails)
        app.task(queue=queue, name=f"add-{queue}")(lambda a, b: a + b)
    app.add_schedule("tick", f"add-{queues[0]}", every=3600, args=(1, 2))
    for queue in queues:
        tasks[queue].send(queue)
    run_until_idle(app)
    handle = app.tasks[f"add-{queues[1]}"].send(1, 2)
    workflow = chain(
        app.tasks[f"add-{queues[2]}"].s(1, 2), app.tasks[f"add-{queues[3]}"].s(3)
    ).send()
    web = console(app)
    pages = ["/", "/dead-letters", "/schedules", "/workflows", "/workers", "/events"]
    pages += [f"/queues/{q}" for q in queues] + [f"/dead-letters/{q}" for q in queues]
    pages += [f"/tasks/{handle.id}", f"/workflows/{workflow.id}"]
    for path in pages:
        page = web.get(path)
        assert page.status_code == 200, (path, page.text[-300:])
    assert re.search(r'<tr data-queue="q-beta">.*?class="n backlog">1<', web.get("/").text, re.S)
    assert workflow.id in web.get("/workflows").text
    for queue in queues:
        web.post(f"/dead-letters/{queue}/replay", data={"csrf": csrf_of(web), "all": "1"})
        assert app.connection.redis.xlen(app.keys(queue).dead_letters) == 0
    app.close()


def _fails(value: Any) -> None:
    raise ValueError(f"failed on {value}")


def test_a_mangled_flash_cookie_is_ignored(app: App) -> None:
    web = console(app)
    for value in ('"unterminated', "[1, 2]", "not json"):
        web.cookies.set("sw_flash", value)
        page = web.get("/")
        assert page.status_code == 200 and 'class="flash"' not in page.text


def test_the_overview_starts_its_history_over_when_a_queue_appears(app: App) -> None:
    web = console(app)
    app.tasks["add"].send(1, 2)
    web.get("/")
    app.task(queue="reports", name="report")(lambda: None).send()
    page = web.get("/")
    assert '<tr data-queue="reports">' in page.text  # rates compare looks at the same queues
    assert re.search(r'<tr data-queue="reports">.*?class="n backlog">1<', page.text, re.S)


def test_the_event_stream_sends_each_new_event(app: App) -> None:
    """Server-sent events through a real server (uvicorn), read by an HTTP client."""
    import threading

    import httpx2 as httpx
    import uvicorn

    from streamwork.testing import free_port, wait_until

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi_app(app), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10)
        url = f"http://127.0.0.1:{port}/events/stream"
        with httpx.stream("GET", url, timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert next(lines) == ": streamwork events"
            handle = app.tasks["add"].send(1, 2)
            data = next(line for line in lines if line.startswith("data: "))
        event = json.loads(data.removeprefix("data: "))
        assert (event["event"], event["message_id"], event["task"]) == ("sent", handle.id, "add")
    finally:
        server.should_exit = True
        thread.join(10)


def test_task_page_shows_progress_data(app: App) -> None:
    from streamwork.testing import run_until_idle

    @app.task(bind=True, name="encode")
    def encode(message: Any, frames: int) -> None:
        message.progress(0.5, "half", data={"frames": frames})

    handle = encode.send(120)
    run_until_idle(app)
    page = console(app).get(f"/tasks/{handle.id}")
    assert '<code id="progress-data">{"frames": 120}</code>' in page.text
    assert '<code>{"frames": 120}</code>' in page.text  # on its progress event too
