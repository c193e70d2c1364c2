"""The console's ASGI application: routes, pages and actions.

Owns the HTTP side — which URL shows what, which POST does what, the token, CSRF and
read-only checks around them — and renders server-side Jinja2 templates with autoescaping
(every value from Redis is text in the page, never markup). It reads through views.py and
acts through the same functions the CLI uses (dead_letters.replay, lifecycle.cancel_in,
app.pause_schedule, WorkflowHandle.cancel, app.purge), so an action here and the same
command in a terminal do the same thing. It never keeps state of its own beyond the
overview's recent looks (views.Sampler): a restart loses nothing.

Redis calls are blocking redis-py calls made in Starlette's thread pool; the live event
tail is a server-sent-events stream of blocking reads, one at a time per open page.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._app.app import App
from .._lifecycle import events, lifecycle
from .._lifecycle.events import start_positions
from .._redis import registry
from .._redis.urls import redact
from .._workflows.nodes import UnknownWorkflow
from ..errors import ConfigurationError, StreamworkError
from ..ops.workflows import child_states
from . import security, views
from .dead_letter_pages import DeadLetterPages
from .requests import ENTRY_ID, HTTPProblem, check_id, check_name, matches, status_of

HERE = Path(__file__).parent
FLASH_COOKIE = "sw_flash"
CSRF_REFUSED = "refused: the request has no valid CSRF token (reload the page and try again)"
SECURITY_HEADERS = {
    # Our own script and style files only: an injected <script> would not run even if a
    # value ever escaped the templates' autoescaping.
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


Read = Callable[[Request], dict[str, Any]]
Act = Callable[[Request, FormData], tuple[str, str]]
"""An action: (where to go next, relative to the console's root; what to tell the user)."""


class Console(DeadLetterPages):
    def __init__(self, app: App, guard: security.Guard, read_only: bool) -> None:
        self.app = app
        self.guard = guard
        self.read_only = read_only
        self.sampler = views.Sampler(app)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = views.when
        self.templates.filters["quote"] = lambda value: quote(str(value), safe="")
        self.templates.globals["sparkline"] = views.sparkline

    # -- plumbing ---------------------------------------------------------------------------

    def routes(self) -> list[Any]:
        page, act = self.page, self.action
        return [
            Route("/", page("overview.html", self.read_overview)),
            Route("/queues/{queue}", page("queue.html", self.read_queue)),
            Route("/queues/{queue}/purge", act(self.purge_queue), methods=["POST"]),
            Route("/dead-letters", page("dead_letters_index.html", self.read_dlq_index)),
            Route("/dead-letters/{name}", page("dead_letters.html", self.read_dead_letters)),
            Route("/dead-letters/{name}/replay", act(self.replay), methods=["POST"]),
            Route("/dead-letters/{name}/purge", act(self.purge_dead_letters), methods=["POST"]),
            Route(
                "/dead-letters/{name}/{entry_id}",
                page("dead_letter.html", self.read_dead_letter),
            ),
            Route("/tasks", page("task_lookup.html", self.lookup_task)),
            Route("/tasks/{message_id}", page("task.html", self.read_task)),
            Route("/tasks/{message_id}/cancel", act(self.cancel_task), methods=["POST"]),
            Route("/schedules", page("schedules.html", self.read_schedules)),
            Route("/schedules/{schedule_id}/{verb}", act(self.act_schedule), methods=["POST"]),
            Route("/workflows", page("workflows.html", self.read_workflows)),
            Route("/workflows/{workflow_id}", page("workflow.html", self.read_workflow)),
            Route("/workflows/{workflow_id}/cancel", act(self.cancel_workflow), methods=["POST"]),
            Route("/workers", page("workers.html", self.read_workers)),
            Route("/events", page("events.html", self.read_events)),
            Route("/events/stream", self.event_stream),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    def _csrf(self, request: Request) -> tuple[str, bool]:
        """(this browser's CSRF value, whether it is new and must be set as a cookie)."""
        current = request.cookies.get(security.CSRF_COOKIE)
        return (current, False) if current else (security.new_csrf(), True)

    def render(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        csrf, is_new = self._csrf(request)
        flash = request.cookies.get(FLASH_COOKIE)
        values: dict[str, Any] = {
            "request": request,
            "base": request.scope.get("root_path", ""),
            "csrf": csrf,
            "read_only": self.read_only,
            "has_token": self.guard.token is not None,
            "logged_out": False,
            "redis_url": redact(self.app.url),
            "namespace": self.app.namespace,
            "flash": _flash_text(flash),
        }
        body = self.templates.get_template(template).render(**{**values, **context})
        response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
        if is_new:
            response.set_cookie(security.CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        if flash:
            response.delete_cookie(FLASH_COOKIE)
        return response

    def _csrf_sent(self, request: Request, form: FormData) -> bool:
        """Whether the POST carries this browser's CSRF value (form field or header)."""
        sent = form.get(security.CSRF_FIELD) or request.headers.get(security.CSRF_HEADER)
        cookie = request.cookies.get(security.CSRF_COOKIE)
        return security.csrf_ok(cookie, sent if isinstance(sent, str) else None)

    def problem(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", {"status": status, "message": message}, status)

    def refuse(self, request: Request) -> Response | None:
        """The response for a request without the token, or None when it may go on."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        if self.guard.is_allowed(headers, dict(request.cookies)):
            return None
        if request.method == "GET" and "text/html" in headers.get("accept", ""):
            location = security.login_location(
                request.scope.get("root_path", ""), request.url.path, request.url.query
            )
            return RedirectResponse(location, 303)
        return Response("a token is needed: Authorization: Bearer TOKEN", 401)

    async def guarded(self, request: Request, run: Callable[[], Awaitable[Response]]) -> Response:
        refused = self.refuse(request)
        if refused is not None:
            return refused
        try:
            return await run()
        except HTTPProblem as exc:
            return self.problem(request, exc.status, str(exc))
        except StreamworkError as exc:
            return self.problem(request, status_of(exc), str(exc))

    def page(self, template: str, read: Read) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            async def run() -> Response:
                context = await run_in_threadpool(read, request)
                if "redirect" in context:
                    return RedirectResponse(
                        request.scope.get("root_path", "") + context["redirect"], 303
                    )
                return self.render(request, template, context)

            return await self.guarded(request, run)

        return endpoint

    def action(self, act: Act) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            async def run() -> Response:
                if self.read_only:
                    raise HTTPProblem(403, "this console is read-only: actions are turned off")
                form = await request.form()
                headers = {k.lower(): v for k, v in request.headers.items()}
                if not self.guard.by_header(headers) and not self._csrf_sent(request, form):
                    raise HTTPProblem(403, CSRF_REFUSED)
                location, message = await run_in_threadpool(act, request, form)
                response = RedirectResponse(request.scope.get("root_path", "") + location, 303)
                response.set_cookie(FLASH_COOKIE, json.dumps(message), samesite="strict")
                return response

            return await self.guarded(request, run)

        return endpoint

    # -- login ------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        base = request.scope.get("root_path", "")
        target = request.query_params.get("next") or "/"
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # never redirect off the console
        if self.guard.token is None:
            return RedirectResponse(base + "/", 303)
        if request.method == "GET":
            return self.render(
                request, "login.html", {"next": target, "wrong": False, "logged_out": True}
            )
        form = await request.form()
        if not self._csrf_sent(request, form):
            return self.problem(request, 403, CSRF_REFUSED)
        given = form.get("token")
        if not isinstance(given, str) or not self.guard.token_matches(given):
            return self.render(
                request, "login.html", {"next": target, "wrong": True, "logged_out": True}, 401
            )
        path = target if target.startswith(base) and base else base + target
        response = RedirectResponse(path, 303)
        response.set_cookie(
            security.SESSION_COOKIE,
            self.guard.session_value(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        if not self._csrf_sent(request, await request.form()):
            return self.problem(request, 403, CSRF_REFUSED)
        response = RedirectResponse(request.scope.get("root_path", "") + "/login", 303)
        response.delete_cookie(security.SESSION_COOKIE)
        return response

    # -- overview, queues, workers ------------------------------------------------------------

    def read_overview(self, request: Request) -> dict[str, Any]:
        overview, history = self.sampler.overview()
        return {
            "overview": overview,
            "history": history,
            "rates": dict(
                zip([t.topic for t in overview.topics], overview.publish_rates, strict=True)
            ),
        }

    def _queue(self, request: Request) -> str:
        queue = check_name("queue", request.path_params["queue"])
        if queue not in registry.known_queues(self.app):
            raise HTTPProblem(404, f"no queue {queue!r} in namespace {self.app.namespace!r}")
        return queue

    def read_queue(self, request: Request) -> dict[str, Any]:
        queue = self._queue(request)
        after = request.query_params.get("after")
        if after is not None and not matches(ENTRY_ID, after):
            raise HTTPProblem(400, f"{after!r} is not a stream entry id")
        return {"queue": queue, "page": views.queue_page(self.app, queue, after)}

    def purge_queue(self, request: Request, form: FormData) -> tuple[str, str]:
        queue = self._queue(request)
        waiting, delayed = self.app.purge(queue)
        return (
            f"/queues/{quote(queue)}",
            f"purged {waiting} waiting and {delayed} delayed message(s) from {queue!r}",
        )

    def read_workers(self, request: Request) -> dict[str, Any]:
        return {"workers": views.workers(self.app)}

    # -- tasks ----------------------------------------------------------------------------------

    def lookup_task(self, request: Request) -> dict[str, Any]:
        wanted = request.query_params.get("id", "").strip()
        if wanted:
            return {"redirect": f"/tasks/{check_id('message', wanted)}"}
        return {}

    def read_task(self, request: Request) -> dict[str, Any]:
        message_id = check_id("message", request.path_params["message_id"])
        return {"task": views.task_page(self.app, message_id)}

    def cancel_task(self, request: Request, form: FormData) -> tuple[str, str]:
        message_id = check_id("message", request.path_params["message_id"])
        queue, _ = lifecycle.find(self.app, message_id)
        reason = str(form.get("reason") or "")[:500]
        what, before = lifecycle.cancel_in(self.app, queue, message_id, reason)
        return f"/tasks/{message_id}", lifecycle.describe_cancel(what, before)

    # -- schedules ------------------------------------------------------------------------------

    def read_schedules(self, request: Request) -> dict[str, Any]:
        return {"schedules": self.app.schedules()}

    def act_schedule(self, request: Request, form: FormData) -> tuple[str, str]:
        schedule_id = check_name("schedule", request.path_params["schedule_id"])
        verb = request.path_params["verb"]
        if verb == "pause":
            self.app.pause_schedule(schedule_id)
            return "/schedules", f"paused {schedule_id!r}"
        if verb == "resume":
            self.app.resume_schedule(schedule_id)
            return "/schedules", f"resumed {schedule_id!r}"
        if verb == "trigger":
            message_id = self.app.trigger_schedule(schedule_id)
            return "/schedules", f"triggered {schedule_id!r}: message {message_id}"
        if verb == "remove":
            self.app.unschedule(schedule_id)
            return "/schedules", f"removed {schedule_id!r}"
        raise HTTPProblem(404, f"no schedule action {verb!r} (pause, resume, trigger, remove)")

    # -- workflows ------------------------------------------------------------------------------

    def read_workflows(self, request: Request) -> dict[str, Any]:
        wanted = request.query_params.get("id", "").strip()
        if wanted:
            return {"redirect": f"/workflows/{check_id('workflow', wanted)}"}
        return {"recent": views.recent_workflows(self.app)}

    def read_workflow(self, request: Request) -> dict[str, Any]:
        workflow_id = check_id("workflow", request.path_params["workflow_id"])
        status = self.app.workflow(workflow_id).status()
        if status.state == "unknown":
            raise UnknownWorkflow(f"no workflow {workflow_id}: never sent, or it expired")
        children = child_states(self.app, status)
        rows: list[dict[str, Any]] = []

        def walk(index: int, depth: int) -> None:
            node = status.nodes[index]
            rows.append({"node": node, "depth": depth, "child": children.get(index)})
            for child in node.children:
                walk(child, depth + 1)

        if status.nodes:
            walk(0, 0)
        return {"status": status, "rows": rows}

    def cancel_workflow(self, request: Request, form: FormData) -> tuple[str, str]:
        workflow_id = check_id("workflow", request.path_params["workflow_id"])
        reason = str(form.get("reason") or "")[:500] or None
        what = self.app.workflow(workflow_id).cancel(reason)
        if what == "unknown":
            raise UnknownWorkflow(f"no workflow {workflow_id}: never sent, or it expired")
        said = "cancelled" if what == "cancelled" else "not cancelled: it had already ended"
        return f"/workflows/{workflow_id}", said

    # -- events ---------------------------------------------------------------------------------

    def _event_queue(self, request: Request) -> str | None:
        queue = request.query_params.get("queue") or None
        return None if queue is None else check_name("queue", queue)

    def read_events(self, request: Request) -> dict[str, Any]:
        queue = self._event_queue(request)
        try:
            recent = events.recent(self.app, queue, limit=100)
        except ConfigurationError as exc:
            return {"queue": queue, "events": [], "note": str(exc)}
        return {"queue": queue, "events": recent, "note": None}

    async def event_stream(self, request: Request) -> Response:
        """Server-sent events: each new lifecycle event as one JSON `data:` line."""

        async def run() -> Response:
            queue = self._event_queue(request)
            positions = await run_in_threadpool(start_positions, self.app, queue, "$")

            async def lines() -> Any:
                yield ": streamwork events\n\n"
                while True:
                    found = await run_in_threadpool(
                        self.app.read_events, queue, since=positions, block=1.0
                    )
                    for event in found:
                        positions[event.queue] = event.id
                        shown = json.dumps(event.as_dict(), default=repr)
                        yield f"id: {event.id}\ndata: {shown}\n\n"
                    if not found:
                        yield ": idle\n\n"

            return StreamingResponse(
                lines(),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", **SECURITY_HEADERS},
            )

        return await self.guarded(request, run)


def _flash_text(cookie: str | None) -> str | None:
    """What the last action said (set by `action` as a JSON string), None if unreadable."""
    try:
        said = json.loads(cookie) if cookie else None
    except ValueError:
        return None
    return said if isinstance(said, str) else None


def asgi_app(app: App, *, token: str | None = None, read_only: bool = False) -> Starlette:
    """The console as an ASGI application, to serve with any ASGI server or to mount inside
    an existing one (`Mount("/streamwork", asgi_app(app))`) behind its own authentication.

    `token`: require it (Authorization: Bearer, or the login form); `read_only`: show
    everything, change nothing (no action forms; POSTs refused with 403).
    """
    console = Console(app, security.Guard(token), read_only)
    return Starlette(routes=console.routes())
