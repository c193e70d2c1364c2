"""Sync/async twins as one plan: a plan is a generator that yields the Redis steps it
needs, each a function of a client (`lambda client: commands.read_hash(client, key)`), and is
sent back each step's reply. `run_plan` drives it on a synchronous client, `run_plan_async`
on an asyncio one; the plan holds every decision, the two drivers only perform the I/O.

What this never does: catch errors (a step that raises ends the plan; callers translate
redis-py's errors around the driver) or send anything itself.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")

Step = Callable[[Any], Any]
"""One Redis step of a plan: given a client, what redis-py returns (a value, or an
awaitable on an asyncio client)."""

Plan = Generator[Step, Any, T]


def run_plan(plan: Plan[T], client: Any) -> T:
    """Run `plan` on a synchronous client; its return value."""
    try:
        step = next(plan)
        while True:
            step = plan.send(step(client))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_plan_async(plan: Plan[T], client: Any) -> T:
    """Run `plan` on an asyncio client; its return value."""
    try:
        step = next(plan)
        while True:
            step = plan.send(await step(client))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def step(command: Callable[..., Any], *args: Any, **kwargs: Any) -> Step:
    """The step that runs `command(client, *args, **kwargs)` (its arguments bound now)."""
    return lambda client: command(client, *args, **kwargs)
