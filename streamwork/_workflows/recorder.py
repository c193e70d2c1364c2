"""A worker's side of workflows: the final outcome of a child (`Step`) and the `Recorder`
that records it in its workflow and sends what that releases, before the child's XACK.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.exceptions

from .._base import metrics, protocol
from .._base.keys import WorkflowKeys, queue_registry
from .._base.protocol import ChildFailed
from .._redis import commands
from .._redis.scripts import Scripts
from .canvas import Sender
from .nodes import ERROR_CHARS, Child, _text, bounded

log = logging.getLogger("streamwork.workflows")


# -- a worker's side ------------------------------------------------------------------------


@dataclass(slots=True)
class Step:
    """A child's final outcome, to record in its workflow before its entry is acknowledged."""

    workflow: str
    node: int
    ok: bool
    value: bytes
    """Its result (msgpack), or its ChildFailed."""


def step_of(envelope: protocol.Envelope, value: bytes, ok: bool = True) -> Step | None:
    """The Step of a workflow child's message (None for a message of no workflow)."""
    headers = envelope.headers
    if not headers:
        return None
    workflow, node = headers.get(protocol.WORKFLOW), headers.get(protocol.NODE)
    if not isinstance(workflow, str) or type(node) is not int:
        return None
    return Step(workflow, node, ok, value)


def failure_of(envelope: protocol.Envelope, error_type: str, error: str) -> Step | None:
    """The Step of a workflow child that ended dead-lettered or cancelled."""
    if not envelope.headers or protocol.WORKFLOW not in envelope.headers:
        return None
    value = protocol.pack_value(ChildFailed(envelope.task, error_type, error[:ERROR_CHARS]))
    return step_of(envelope, value, ok=False)


class HasStep(Protocol):
    workflow: Step | None
    task: str


class Recorder:
    """Records the final outcomes of workflow children for one worker process, and sends
    what they release (see the module docstring for the order and why it is safe)."""

    def __init__(self, client: Any, scripts: Scripts, sender: Sender) -> None:
        self._client = client
        self._scripts = scripts
        self._sender = sender
        self._registered: set[str] = set()

    async def record(self, outcomes: Sequence[HasStep]) -> None:
        """Record the outcomes' steps, one call per workflow; raises if Redis fails (the
        caller retries: the steps are idempotent). A step is cleared once recorded and its
        releases sent, so a retry does only what is left."""
        by_workflow: dict[str, list[HasStep]] = {}
        for outcome in outcomes:
            if outcome.workflow is not None:
                by_workflow.setdefault(outcome.workflow.workflow, []).append(outcome)
        if by_workflow:
            await bounded([self._record(id, found) for id, found in by_workflow.items()])

    async def _record(self, workflow: str, outcomes: list[HasStep]) -> None:
        steps = [outcome.workflow for outcome in outcomes if outcome.workflow is not None]
        keys = WorkflowKeys(self._sender.namespace, workflow)
        children = [(step.node, step.ok, step.value) for step in steps]
        try:
            reply = await self._scripts.workflow_record(keys, children, protocol.now_ms())
        except redis.exceptions.ResponseError as exc:
            # Not Redis being away (that is retried): the record is not what it should be.
            log.error("cannot record node %s of workflow %s: %s", _nodes_of(steps), workflow, exc)
            for outcome in outcomes:
                outcome.workflow = None
            return
        transitions = _text(reply[0])
        if transitions == "gone":
            log.warning(
                "workflow %s of task %s is gone (expired or deleted): its outcome is not recorded",
                workflow,
                outcomes[0].task,
            )
        elif transitions:
            for transition in transitions.split(","):
                metrics.workflow_finished(transition)
        sends = {}
        for at in range(1, len(reply), 3):
            child = Child.from_spec(int(reply[at]), reply[at + 1])
            given = reply[at + 2] or None
            sends[child.node] = self._send(
                child, protocol.encode(child.envelope(workflow, given)), workflow
            )
        await bounded(list(sends.values()))
        for outcome in outcomes:
            outcome.workflow = None

    async def _send(self, child: Child, body: bytes, workflow: str) -> None:
        if child.queue not in self._registered:
            registry = queue_registry(self._sender.namespace)
            await commands.register(self._client, registry, child.queue)
            self._registered.add(child.queue)
        await self._sender.send(self._scripts, child, body, workflow)


def _nodes_of(steps: Sequence[Step]) -> str:
    return ", ".join(str(step.node) for step in steps)
