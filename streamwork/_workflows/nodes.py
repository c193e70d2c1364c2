"""What every side of a workflow shares: its kinds and final states, its errors, a task node
as the record keeps it (`Child`), and the bound on commands in flight (`bounded`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._base import protocol, tracing
from .._base.protocol import ChildFailed
from ..errors import StreamworkError, TaskCancelled

OnFailure = Literal["fail", "continue"]
KINDS = {"t": "task", "c": "chain", "g": "group", "h": "chord"}
FINAL_STATES = ("done", "failed", "cancelled")
ERROR_CHARS = 2000
"""The longest error text a ChildFailed keeps (its dead letter keeps all of it)."""


class WorkflowFailed(StreamworkError):
    """The workflow failed: a child ended dead-lettered or cancelled under on_failure="fail".
    `failures` says which children and why."""

    def __init__(self, workflow_id: str, failures: Sequence[ChildFailure]) -> None:
        first = failures[0] if failures else None
        what = f": {first}" if first is not None else ""
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(f"workflow {workflow_id} failed{what}{more}")
        self.workflow_id = workflow_id
        self.failures = list(failures)


class WorkflowCancelled(TaskCancelled):
    """The workflow was cancelled before it finished."""


class UnknownWorkflow(StreamworkError, LookupError):
    """No workflow with that id: never sent, or it ended longer than its TTL ago."""


# -- a workflow's record --------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """A task node as the workflow record keeps it: what to send when it is released."""

    node: int
    task: str
    queue: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    immutable: bool
    message_id: str

    def spec(self) -> bytes:
        return protocol.pack_value(
            [self.task, self.queue, list(self.args), self.kwargs, self.immutable, self.message_id]
        )

    @classmethod
    def from_spec(cls, node: int, raw: bytes) -> Child:
        task, queue, args, kwargs, immutable, message_id = protocol.unpack_value(raw)
        return cls(node, task, queue, tuple(args), kwargs, immutable, message_id)

    def envelope(self, workflow_id: str, given: bytes | None) -> protocol.Envelope:
        """Its message: with the value it was released with first, unless immutable."""
        args = self.args
        if given is not None and not self.immutable:
            args = (protocol.unpack_value(given), *args)
        return protocol.Envelope(
            id=self.message_id,
            task=self.task,
            args=args,
            kwargs=self.kwargs,
            # the context of the span current when it is sent: a workflow's first steps
            # carry its send span; a step a worker releases later, none
            headers=tracing.with_context(
                {protocol.WORKFLOW: workflow_id, protocol.NODE: self.node}
            ),
            enqueued_ms=protocol.now_ms(),
        )


# -- reading and acting on one ------------------------------------------------------------


@dataclass(frozen=True)
class ChildFailure:
    """A child that failed its workflow: which node, which message, and why."""

    node: int
    message_id: str
    failed: ChildFailed

    def __str__(self) -> str:
        what = self.failed
        return (
            f"{what.task} (node {self.node}, id {self.message_id}): {what.error_type}: {what.error}"
        )


SEND_CONCURRENCY = 16
"""The most commands one worker (or one async send) has in flight for workflow steps: a
big group must not take every connection of the pool."""


async def bounded(calls: Sequence[Awaitable[Any]], limit: int = SEND_CONCURRENCY) -> None:
    """Await `calls`, at most `limit` at a time; the first error is raised once all end."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[Any]) -> None:
        async with gate:
            await call

    results = await asyncio.gather(*(one(call) for call in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
