"""A polling wait with a deadline: what tests use instead of sleeps (`wait_until`)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, message: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; else raise
    TimeoutError saying what was awaited (`message`, else the predicate's source) and the
    last value it returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            waited_for = message or _source_of(predicate)
            raise TimeoutError(
                f"waited {timeout}s for {waited_for}; the last value seen was {value!r}"
            )
        time.sleep(interval)


def _source_of(function: Callable[..., Any]) -> str:
    """The source text of a (lambda) predicate, for an error message."""
    try:
        return " ".join(inspect.getsource(function).split())
    except (OSError, TypeError):
        return getattr(function, "__qualname__", repr(function))
