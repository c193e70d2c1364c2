"""`streamwork web` in a subprocess, driven by a real browser: Debian's Chromium through
Playwright (the system binary, no browser download), with `streamwork worker` running the
tasks the console acts on. A screenshot of each page is saved under test-artifacts/console
(or $STREAMWORK_ARTIFACTS/console)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from streamwork import App
from streamwork.testing import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("STREAMWORK_ARTIFACTS") or ROOT / "test-artifacts") / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
XSS = "<script>alert('xss')</script>"

CONSOLE_APP = """
    import asyncio
    import os

    from streamwork import App

    app = App(events=True)

    @app.task(max_retries=0)
    def flaky(path):
        if not os.path.exists(path):
            raise ValueError("<script>alert('xss')</script> no file " + path)
        with open(path + ".ran", "w") as out:
            out.write("ran")

    @app.task
    async def long(seconds):
        await asyncio.sleep(seconds)

    @app.task
    def add(a, b):
        return a + b
"""


def declare(app: App) -> App:
    """The tasks of CONSOLE_APP, for sending from the test (the worker runs them)."""
    app.task(max_retries=0, name="flaky")(lambda path: None)
    app.task(name="long")(lambda seconds: None)
    app.task(name="add")(lambda a, b: a + b)
    return app


class Console:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url


@pytest.fixture
def start_console(processes: Any, write_app: Any) -> Any:
    write_app("console_app", CONSOLE_APP)

    def start(*options: str, **env: str) -> Console:
        port = free_port()
        process = processes.start("web", "console_app:app", "--port", str(port), *options, **env)
        prefix = next((options[i + 1] for i, o in enumerate(options) if o == "--url-prefix"), "")
        url = f"http://127.0.0.1:{port}{prefix}"

        def answers() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return httpx.get(url + "/static/console.css", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=30, interval=0.1)
        return Console(process, url)

    return start


@pytest.fixture
def app(redis_url: str) -> Iterator[App]:
    application = declare(App(redis_url, events=True))
    yield application
    application.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (CI installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) whose confirm() dialogs are accepted and whose
    every dialog is recorded in `page.dialogs` (an alert would mean a script ran)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.dialogs = []

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append((dialog.type, dialog.message))
        dialog.accept()

    tab.on("dialog", on_dialog)
    yield tab
    context.close()


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def dead_letter_of(app: App, path: Path, processes: Any) -> None:
    """Send flaky(path) with no file there, and let a burst worker dead-letter it."""
    app.tasks["flaky"].send(str(path))
    done = processes.run("worker", "console_app:app", "--burst")
    assert done.returncode == 0, done.stderr


def test_overview_shows_a_backlog_and_every_page_renders(
    app: App, start_console: Any, page: Any, processes: Any, tmp_path: Path
) -> None:
    from streamwork import chain

    dead_letter_of(app, tmp_path / "missing", processes)
    for i in range(25):
        app.tasks["add"].send(i, 1)
    app.add_schedule("nightly", "add", cron="0 3 * * *", args=(1, 2))
    workflow = chain(app.tasks["add"].s(1, 2), app.tasks["add"].s(3)).send()
    console = start_console()

    page.goto(console.url + "/")
    backlog = page.locator('tr[data-queue="default"] td.backlog')
    assert backlog.inner_text() == "26"  # 25 adds and the workflow's first step
    shoot(page, "overview")
    page.click('tr[data-queue="default"] a')
    assert page.locator("#ready").inner_text() == "26"
    shoot(page, "queue")
    page.click("text=Dead letters")
    page.click("text=default")
    shoot(page, "dead-letters")
    page.click("#dead-letters tbody a")
    assert "no file" in page.locator("#error").inner_text()
    shoot(page, "dead-letter")
    page.click("dd a")  # the message id: its task page
    assert page.locator("#state").inner_text() == "failed"
    shoot(page, "task")
    page.click("nav >> text=Schedules")
    assert page.locator('tr[data-schedule="nightly"] td.state').inner_text() == "active"
    shoot(page, "schedules")
    page.click("nav >> text=Workflows")
    page.click(f"text={workflow.id}")
    assert page.locator("#tree li").count() == 3
    shoot(page, "workflow")
    page.goto(console.url + "/workflows")
    shoot(page, "workflows")
    page.click("nav >> text=Workers")
    shoot(page, "workers")
    page.click("nav >> text=Events")
    shoot(page, "events")
    assert page.dialogs == []


def test_replaying_a_dead_letter_from_its_page_makes_a_worker_run_it(
    app: App, start_console: Any, page: Any, processes: Any, tmp_path: Path
) -> None:
    target = tmp_path / "input"
    dead_letter_of(app, target, processes)
    target.write_text("here now")
    processes.start("worker", "console_app:app")
    console = start_console()
    page.goto(console.url + "/dead-letters/default")
    page.click("#dead-letters tbody a")
    page.click("button:has-text('Replay')")
    assert "replayed 1 dead letter(s)" in page.locator(".flash").inner_text()
    wait_until(lambda: Path(str(target) + ".ran").exists(), timeout=30)


def test_dead_letter_text_with_a_script_shows_as_text(
    app: App, start_console: Any, page: Any, processes: Any, tmp_path: Path
) -> None:
    dead_letter_of(app, tmp_path / "x", processes)
    console = start_console()
    page.goto(console.url + "/dead-letters/default")
    assert XSS in page.locator("#dead-letters td.why").inner_text()
    page.click("#dead-letters tbody a")
    assert XSS in page.locator("#error").inner_text()
    assert XSS in page.locator("#traceback").inner_text()
    shoot(page, "xss-as-text")
    assert page.dialogs == []  # no script of the letter's ran


def test_cancel_a_running_task_from_its_page(
    app: App, start_console: Any, page: Any, processes: Any
) -> None:
    handle = app.tasks["long"].send(120)
    processes.start("worker", "console_app:app")
    wait_until(lambda: handle.status().state == "running", timeout=30)
    console = start_console()
    page.goto(f"{console.url}/tasks/{handle.id}")
    assert page.locator("#state").inner_text() == "running"
    page.fill("input[name=reason]", "clicked in the console")
    page.click("#cancel")
    assert "cancelling: it is running" in page.locator(".flash").inner_text()
    status = wait_until(lambda: (s := handle.status()).state == "cancelled" and s, timeout=30)
    assert status.error == "clicked in the console"
    page.reload()
    assert page.locator("#state").inner_text() == "cancelled"
    assert ("confirm", "Cancel this task?") in page.dialogs


def test_pause_a_schedule(app: App, start_console: Any, page: Any) -> None:
    app.add_schedule("nightly", "add", cron="0 3 * * *", args=(1, 2))
    console = start_console()
    page.goto(console.url + "/schedules")
    page.click('tr[data-schedule="nightly"] button:has-text("Pause")')
    assert page.locator('tr[data-schedule="nightly"] td.state').inner_text() == "paused"
    assert app.get_schedule("nightly").paused
    page.click('tr[data-schedule="nightly"] button:has-text("Resume")')
    assert not app.get_schedule("nightly").paused


def test_a_post_without_the_csrf_token_is_refused(
    app: App, start_console: Any, page: Any, processes: Any, tmp_path: Path
) -> None:
    dead_letter_of(app, tmp_path / "x", processes)
    console = start_console()
    page.goto(console.url + "/dead-letters/default")
    page.evaluate(
        "for (const input of document.querySelectorAll('input[name=csrf]')) input.remove()"
    )
    page.click("button:has-text('Replay all')")
    assert "no valid CSRF token" in page.locator("#problem").inner_text()
    assert app.connection.redis.xlen(app.keys("default").dead_letters) == 1


def test_read_only_mode(
    app: App, start_console: Any, page: Any, processes: Any, tmp_path: Path
) -> None:
    dead_letter_of(app, tmp_path / "x", processes)
    app.add_schedule("nightly", "add", cron="0 3 * * *", args=(1, 2))
    console = start_console("--read-only")
    page.goto(console.url + "/dead-letters/default")
    assert page.locator("text=read-only").count() == 1
    assert page.locator("button:has-text('Replay')").count() == 0
    assert page.locator("button:has-text('Purge')").count() == 0
    page.goto(console.url + "/schedules")
    assert page.locator("button").count() == 1  # only "Find task"
    status = page.evaluate(
        "fetch('/dead-letters/default/purge', {method: 'POST'}).then(r => r.status)"
    )
    assert status == 403
    assert app.connection.redis.xlen(app.keys("default").dead_letters) == 1
    shoot(page, "read-only")


def test_live_event_tail(app: App, start_console: Any, page: Any) -> None:
    console = start_console()
    page.goto(console.url + "/events")
    page.wait_for_selector("#stream-state:has-text('live')")
    handle = app.tasks["add"].send(1, 2)
    page.wait_for_selector(f"#events tbody tr:has-text('{handle.id}')", timeout=15_000)
    assert "sent" in page.locator(f"#events tbody tr:has-text('{handle.id}')").inner_text()


def test_a_token_protects_the_console(app: App, start_console: Any, page: Any) -> None:
    app.tasks["add"].send(1, 2)
    console = start_console("--token", "console-token-1", "--url-prefix", "/ops")
    page.goto(console.url + "/queues/default")
    assert page.url.startswith(console.url + "/login")
    page.fill("input[name=token]", "wrong-token")
    page.click("button:has-text('Log in')")
    assert "not the token" in page.content()
    page.fill("input[name=token]", "console-token-1")
    page.click("button:has-text('Log in')")
    assert page.url == console.url + "/queues/default"
    assert page.locator("#ready").inner_text() == "1"


# -- the command's own checks ------------------------------------------------------------


def test_refuses_a_public_address_without_a_token(processes: Any, write_app: Any) -> None:
    write_app("console_app", CONSOLE_APP)
    refused = processes.run("web", "console_app:app", "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert "refusing to serve the console on 0.0.0.0 without a token" in refused.stderr
    short = processes.run("web", "console_app:app", "--token", "abc")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    prefix = processes.run("web", "console_app:app", "--url-prefix", "ops")
    assert prefix.returncode == 2 and "must be a path" in prefix.stderr


def test_unreachable_redis_is_one_line(processes: Any, write_app: Any) -> None:
    write_app("console_app", CONSOLE_APP)
    failed = processes.run(
        "web", "console_app:app", STREAMWORK_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1" in lines[0]


def test_a_token_from_the_environment(app: App, start_console: Any) -> None:
    console = start_console(STREAMWORK_WEB_TOKEN="env-token-123")
    url = console.url
    assert httpx.get(url + "/").status_code == 401
    shown = httpx.get(url + "/", headers={"authorization": "Bearer env-token-123"})
    assert shown.status_code == 200 and "Overview" in shown.text
