"""Reading and acting on a sent workflow: its status tree (`WorkflowStatus`, `NodeStatus`,
`parse_status`) and `WorkflowHandle` (status, results, cancel), each sync/async pair one
plan. It reads the workflow's record; it never releases a node (the recorder does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from .._base import metrics, protocol
from .._base.keys import QueueKeys, WorkflowKeys
from .._base.plans import Plan, T, run_plan, run_plan_async, step
from .._base.protocol import ChildFailed
from .._redis import commands
from .._redis.connection import MAX_BLOCK, block_for
from ..errors import ConfigurationError, ResultTimeout

if TYPE_CHECKING:
    from .._send.producer import Producer

from .nodes import (
    FINAL_STATES,
    KINDS,
    Child,
    ChildFailure,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowFailed,
    _text,
    bounded,
)


@dataclass(frozen=True)
class NodeStatus:
    """One node of a workflow's tree."""

    index: int
    kind: str
    """task | chain | group | chord"""
    state: str
    """waiting (not released yet), sent (a task released: its own status says more),
    running (a composite with released children), done, failed, cancelled (in a cancelled
    workflow: every node that had not finished)."""
    parent: int | None
    children: tuple[int, ...] = ()
    task: str | None = None
    message_id: str | None = None
    queue: str | None = None
    on_failure: str | None = None
    """A chord's failure policy."""
    failed: ChildFailed | None = None
    absorbed: bool = False
    """A failed task whose failure a continue-chord passed to its callback."""


@dataclass(frozen=True)
class WorkflowStatus:
    """Where a workflow is, as its record says."""

    id: str
    state: str
    """running | done | failed | cancelled | unknown (never sent, or expired)."""
    kind: str = ""
    """The root's kind: task | chain | group | chord."""
    created_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    """Why it was cancelled, if a reason was given."""
    failures: tuple[ChildFailure, ...] = ()
    """The children that failed it (or that failed, for a continue-chord's callback)."""
    nodes: tuple[NodeStatus, ...] = ()

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def error(self) -> str | None:
        """Which child failed the workflow, and why."""
        return str(self.failures[0]) if self.failures and self.state == "failed" else None


UNFINISHED = ("waiting", "sent", "running")
"""Node states that a workflow's cancel turns into "cancelled"."""


def parse_status(workflow_id: str, raw: dict[bytes, bytes]) -> WorkflowStatus:
    if not raw:
        return WorkflowStatus(workflow_id, "unknown")
    text = {key.decode(): value for key, value in raw.items()}

    def time_of(name: str) -> datetime | None:
        value = text.get(name)
        return None if value is None else datetime.fromtimestamp(int(value) / 1000, timezone.utc)

    count = int(text.get("n", b"0"))
    nodes: list[NodeStatus] = []
    failures: list[ChildFailure] = []
    for index in range(count):
        kind = KINDS[_text(text[f"k:{index}"])]
        parent = _text(text[f"p:{index}"])
        state = _text(text.get(f"s:{index}", b""))
        children = tuple(int(c) for c in _text(text.get(f"c:{index}", b"")).split(",") if c)
        child = None
        failed = None
        if kind == "task":
            child = Child.from_spec(index, text[f"m:{index}"])
            if not state:
                state = "sent" if f"q:{index}" in text else "waiting"
            elif state == "failed":
                value = protocol.unpack_value(text[f"r:{index}"])
                failed = value if isinstance(value, ChildFailed) else None
                if failed is not None and f"a:{index}" not in text:
                    failures.append(ChildFailure(index, child.message_id, failed))
        nodes.append(
            NodeStatus(
                index,
                kind,
                state,
                None if parent == "-" else int(parent),
                children,
                task=child.task if child else None,
                message_id=child.message_id if child else None,
                queue=child.queue if child else None,
                on_failure=_text(text[f"o:{index}"]) if f"o:{index}" in text else None,
                failed=failed,
                absorbed=f"a:{index}" in text,
            )
        )
    cancelled = _text(text["state"]) == "cancelled"
    for at in reversed(range(count)):  # composites: running once any child was released
        node = nodes[at]
        if cancelled and node.state in UNFINISHED:
            # the cancel cancelled every child sent and not finished; nothing more is sent
            nodes[at] = replace(node, state="cancelled")
        elif node.kind != "task" and not node.state:
            states = {nodes[c].state for c in node.children}
            if cancelled:
                state = "done" if states == {"done"} else "cancelled"
            else:
                state = "running" if states - {"waiting"} else "waiting"
            nodes[at] = replace(node, state=state)
    return WorkflowStatus(
        workflow_id,
        _text(text["state"]),
        _text(text.get("kind", b"")),
        time_of("created"),
        time_of("finished"),
        _text(text["reason"]) or None if "reason" in text else None,
        tuple(failures),
        tuple(nodes),
    )


CancelWhat = Literal["cancelled", "finished", "unknown"]


def _reason(reason: str | None) -> str:
    """A cancel's reason as the workflow keeps it ("" for none, at most 500 characters)."""
    if reason is not None and not isinstance(reason, str):
        raise ConfigurationError(f"reason must be a string, got {reason!r}")
    return (reason or "")[:500]


class WorkflowHandle:
    """What sending a workflow returns: its id, its status and results, and cancel."""

    def __init__(self, id: str, producer: Producer, namespace: str) -> None:
        self.id = id
        self._producer = producer
        self.keys = WorkflowKeys(namespace, id)

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"

    @property
    def _connection(self) -> Any:
        return self._producer.connection

    def _run(self, plan: Plan[T]) -> T:
        with self._connection.translate_errors():
            return run_plan(plan, self._connection.redis)

    async def _run_async(self, plan: Plan[T]) -> T:
        with self._connection.translate_errors():
            return await run_plan_async(plan, self._connection.async_redis())

    def status(self) -> WorkflowStatus:
        """The workflow's state and every node's (see WorkflowStatus)."""
        return self._run(self._status_plan())

    async def status_async(self) -> WorkflowStatus:
        """Like `status`, for asyncio code."""
        return await self._run_async(self._status_plan())

    def result(self, timeout: float = 10.0) -> Any:
        """Wait up to `timeout` seconds for the workflow to finish; its result: the last
        step's for a chain, the callback's for a chord, the list of results for a group.
        WorkflowFailed if a child failed it, WorkflowCancelled, ResultTimeout."""
        return self._run(self._result_plan(timeout, "root"))

    async def result_async(self, timeout: float = 10.0) -> Any:
        """Like `result`, for asyncio code."""
        return await self._run_async(self._result_plan(timeout, "root"))

    def results(self, timeout: float = 10.0) -> list[Any]:
        """Wait like `result`; the results of the top-level parts, in order: a group's
        members, a chord's header, a chain's steps."""
        return self._run(self._result_plan(timeout, "parts"))

    async def results_async(self, timeout: float = 10.0) -> list[Any]:
        """Like `results`, for asyncio code."""
        return await self._run_async(self._result_plan(timeout, "parts"))

    def _status_plan(self) -> Plan[WorkflowStatus]:
        raw = yield step(commands.read_hash, self.keys.workflow)
        return parse_status(self.id, raw)

    def _result_plan(self, timeout: float, which: str) -> Plan[Any]:
        deadline = time.monotonic() + timeout
        while True:
            block = block_for(deadline)
            raw = yield step(commands.wait_result, self.keys.finished, block)
            if raw is not None or block < MAX_BLOCK:
                break
        if raw is None:
            self._not_finished(
                (yield step(commands.hash_field, self.keys.workflow, "state")), timeout
            )
        return self._value((yield step(commands.read_hash, self.keys.workflow)), which)

    def _not_finished(self, state: bytes | None, timeout: float) -> None:
        if state is None:
            raise UnknownWorkflow(f"no workflow {self.id}: never sent, or it expired")
        raise ResultTimeout(
            f"workflow {self.id} did not finish within {timeout}s — are workers running "
            "for the queues of its tasks? (handle.status() shows where it is)"
        )

    def _value(self, raw: dict[bytes, bytes], which: str) -> Any:
        """The root's value ("root") or its parts' ("parts"), from the record read once."""
        status = parse_status(self.id, raw)
        if status.state == "unknown":
            raise UnknownWorkflow(f"no workflow {self.id}: never sent, or it expired")
        if status.state == "failed":
            raise WorkflowFailed(self.id, status.failures)
        if status.state == "cancelled":
            reason = f": {status.reason}" if status.reason else ""
            raise WorkflowCancelled(f"workflow {self.id} was cancelled{reason}")
        if status.state != "done":
            raise ResultTimeout(f"workflow {self.id} is {status.state}")

        def value(index: int) -> Any:
            found = raw.get(f"r:{index}".encode())
            return None if found is None else protocol.unpack_value(found)

        root = status.nodes[0]
        if which == "root":
            return value(0)
        if root.kind == "chord":
            return value(root.children[0])
        if root.kind == "task":
            return [value(0)]
        return [value(child) for child in root.children]

    def cancel(self, reason: str | None = None) -> CancelWhat:
        """Cancel the workflow: nothing more is released, and every child sent and not
        finished is cancelled (queued ones never run; running ones are stopped). Returns
        "cancelled" (also when it was already: a repeat after a lost reply finishes the
        children's cancels), "finished" (it had ended: nothing changes) or "unknown"."""
        scripts, why = self._connection.scripts, _reason(reason)
        with self._connection.translate_errors():
            reply = scripts.workflow_cancel(self.keys, why, protocol.now_ms())
            for child in self._to_cancel(reply):
                scripts.cancel(*self._cancel_args(child, reason))
        return self._cancelled(reply)

    async def cancel_async(self, reason: str | None = None) -> CancelWhat:
        """Like `cancel`, for asyncio code (the children's cancels run concurrently)."""
        scripts, why = self._connection.async_scripts(), _reason(reason)
        with self._connection.translate_errors():
            reply = await scripts.workflow_cancel(self.keys, why, protocol.now_ms())
            children = self._to_cancel(reply)
            await bounded([scripts.cancel(*self._cancel_args(c, reason)) for c in children])
        return self._cancelled(reply)

    def _cancelled(self, reply: Any) -> CancelWhat:
        what = _text(reply[0])
        if what == "cancelled" and _text(reply[1]) != "cancelled":
            metrics.workflow_finished("cancelled")
        return what  # type: ignore[return-value]

    def _to_cancel(self, reply: Any) -> list[Child]:
        if not self._producer.track_status:
            return []  # no statuses: what was sent runs, nothing more is released
        return [Child.from_spec(-1, spec) for spec in reply[2:]]

    def _cancel_args(self, child: Child, reason: str | None) -> tuple[Any, ...]:
        producer = self._producer
        return (
            QueueKeys(self.keys.namespace, child.queue),
            child.message_id,
            (reason or f"workflow {self.id} cancelled")[:500],
            protocol.now_ms(),
            producer.status_ttl_ms,
            producer.events_cap(child.queue),
            True,
        )
