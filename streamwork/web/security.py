"""Who may use the console, and proof that a POST comes from its own pages.

- Token: with a token set, a request must carry it — `Authorization: Bearer T` (scripts) or
  the session cookie the login form sets (browsers; it holds an HMAC of the token, never the
  token). Without one, the console trusts whoever reaches it: it then listens on loopback
  only (cli/web.py refuses anything else), or sits behind the host application's own auth
  (`asgi_app`).
- CSRF: every state-changing request is a POST carrying the per-browser `csrf` value, both
  as a form field (or X-CSRF-Token header) and as a SameSite=Strict cookie; another site
  can make a browser send the cookie but cannot read it to fill in the field. A request
  authenticated by its Authorization header is exempt: browsers never add that header on
  their own.

Nothing here reads Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

SESSION_COOKIE = "sw_session"
CSRF_COOKIE = "sw_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class Guard:
    """The console's token (if any), and the secret its cookies are signed with."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self._secret = secrets.token_bytes(32)

    def session_value(self) -> str:
        """What the session cookie holds once the token was given (valid until restart)."""
        assert self.token is not None
        return hmac.new(self._secret, self.token.encode(), hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def is_allowed(self, headers: dict[str, str], cookies: dict[str, str]) -> bool:
        if self.token is None:
            return True
        if self.by_header(headers):
            return True
        return hmac.compare_digest(cookies.get(SESSION_COOKIE, ""), self.session_value())

    def by_header(self, headers: dict[str, str]) -> bool:
        """Whether the request carries the token in its Authorization header."""
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(cookie: str | None, sent: str | None) -> bool:
    return bool(cookie) and bool(sent) and hmac.compare_digest(str(cookie), str(sent))


def login_location(root_path: str, path: str, query: str) -> str:
    """Where to send a browser that is not logged in: the login page, then back."""
    back = path + ("?" + query if query else "")
    return f"{root_path}/login?next={quote(back, safe='')}"
