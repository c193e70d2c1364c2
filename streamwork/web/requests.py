"""What the console reads from a request: names and ids from its path, checked, and the HTTP
problem a refusal or an error becomes."""

from __future__ import annotations

import re
from urllib.parse import quote

from .._base import protocol
from .._base.keys import NAME, NAME_RULE, Source
from ..errors import ConfigurationError, ConnectionFailed, StreamworkError

ENTRY_ID = r"\d{1,20}-\d{1,20}"
"""A stream entry id, as the routes accept it."""


class HTTPProblem(Exception):
    """A request the console refuses or cannot serve: a status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def status_of(exc: StreamworkError) -> int:
    if isinstance(exc, LookupError):
        return 404
    if isinstance(exc, ConnectionFailed):
        return 503
    if isinstance(exc, ConfigurationError):
        return 400
    return 500


def check_name(kind: str, value: str) -> str:
    if not NAME.fullmatch(value):
        raise HTTPProblem(400, f"invalid {kind} name {value!r}: {NAME_RULE}")
    return value


def check_id(kind: str, value: str) -> str:
    if not protocol.ID.fullmatch(value):
        raise HTTPProblem(400, f"{value!r} is not a {kind} id ({protocol.ID_RULE})")
    return value


def matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def dlq_location(name: str, source: Source) -> str:
    location = f"/dead-letters/{quote(name)}"
    return location + (f"?group={quote(source.group)}" if source.topic else "")
