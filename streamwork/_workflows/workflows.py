"""Workflows: chain, group and chord, built on one parent/child model.

Owns the canvas (`task.s()` / `task.si()` signatures, `chain`, `group`, `chord`), turning one
into a workflow record — a tree of nodes in one hash under the workflow's own hash tag
(`NS:{wf:ID}:workflow`, so on Redis Cluster each step on it is one slot) — sending its first
children, the `Recorder` a worker uses to record a child's final outcome and send what that
releases, and `WorkflowHandle` (status, results, cancel). It never runs a handler and never
decides an outcome (execution.py does); the tree walks that release nodes are in
workflow_record.lua, atomic on the workflow's slot.

A child is an ordinary message on its task's queue, whose headers name its workflow and
node. Only its final outcome reaches the workflow — done, or dead-lettered or cancelled
("failed") — never a retry.

Why nothing is lost or doubled. A worker finishing a child (1) records the outcome in the
workflow, which atomically releases the nodes it unblocks and remembers them, (2) sends each
released node under an idempotency key of its own (`wf:ID:NODE` in its queue's slot), then
(3) acknowledges the child's entry. A worker that dies before (3) leaves the entry pending:
another worker claims it and runs it again; its (1) finds the outcome recorded and changes
nothing but returns the same releases, and its (2) sends only those the first worker had not
sent (the keys hold the others). A release happens only inside (1), so of any number of
children finishing at once exactly one releases the next node, and each node is sent once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol

import redis
import redis.exceptions

from .._base import metrics, protocol
from .._base.keys import QueueKeys, WorkflowKeys, queue_registry
from .._base.plans import Plan, T, run_plan, run_plan_async, step
from .._base.protocol import ChildFailed
from .._redis import commands
from .._redis.connection import MAX_BLOCK, block_for
from .._redis.rows import SendState
from .._redis.scripts import Scripts
from ..errors import ConfigurationError, ResultTimeout, StreamworkError, TaskCancelled

if TYPE_CHECKING:
    from .._base.handler import HandlerOptions
    from .._send.producer import Producer

log = logging.getLogger("streamwork.workflows")

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


# -- the canvas -----------------------------------------------------------------------------


class SignedTask(Protocol):
    """What a signature needs of its task (task.Task is one)."""

    name: str
    options: HandlerOptions
    producer: Producer
    keys: QueueKeys

    @property
    def home_queue(self) -> str:
        """The queue (of a partitioned one: partition 0) its workflow steps go to."""
        ...

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None: ...


class Canvas:
    """What can be sent as a workflow: a signature, a chain, a group or a chord."""

    def send(self) -> WorkflowHandle:
        """Send the workflow: its first children are queued; returns at once with its handle."""
        plan = _plan(self)
        connection = plan.producer.connection
        with connection.translate_errors():
            plan.create(connection.redis)
            try:
                for queue in plan.queues():
                    connection.register(queue_registry(plan.keys.namespace), queue)
                _send_first(connection, plan)
            except BaseException:
                plan.discard(connection.redis)
                raise
        return plan.sent()

    async def send_async(self) -> WorkflowHandle:
        """Like `send`, for asyncio code."""
        plan = _plan(self)
        connection = plan.producer.connection
        with connection.translate_errors():
            client, scripts = connection.async_redis(), connection.async_scripts()
            await plan.create(client)
            try:
                for queue in plan.queues():
                    await connection.register_async(queue_registry(plan.keys.namespace), queue)
                await bounded([plan.send_first(scripts, child, body) for child, body in plan.first])
            except BaseException:
                await plan.discard(client)
                raise
        return plan.sent()

    def __or__(self, other: Canvas) -> Chain:
        return chain(self, other)


class Signature(Canvas):
    """A task with arguments, not sent yet: `task.s(...)` (receives the previous result as
    its first argument in a chain) or `task.si(...)` (immutable: does not)."""

    def __init__(
        self, task: SignedTask, args: tuple[Any, ...], kwargs: dict[str, Any], immutable: bool
    ) -> None:
        if task.options.ack_mode == "auto":
            raise ConfigurationError(
                f"task {task.name!r} has ack_mode='auto' (acknowledged before it runs), so a "
                "crash would lose its place in a workflow: workflow children need 'late' or "
                "'manual'"
            )
        if task.options.batch is not None:
            raise ConfigurationError(
                f"task {task.name!r} is a batch handler (batch_size): it returns one value for "
                "a list of messages, so it cannot be a step of a workflow"
            )
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.immutable = immutable

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task.name}.{'si' if self.immutable else 's'}({', '.join(shown)})"


class Chain(Canvas):
    """Steps run one after another; each result is the next step's first argument."""

    def __init__(self, steps: Sequence[Canvas]) -> None:
        self.steps = tuple(_nodes("chain()", steps))

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.steps))})"


class Group(Canvas):
    """Members run in parallel; the group's result is the list of theirs, in order."""

    def __init__(self, members: Sequence[Canvas]) -> None:
        self.members = tuple(_nodes("group()", members))

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.members))})"


class Chord(Canvas):
    """A group (the header), then a callback that gets the list of the header's results.

    on_failure="fail": a failed header child fails the chord, and the callback never runs.
    "continue": the callback runs once with ChildFailed values in place of failed results.
    """

    def __init__(self, header: Group, callback: Canvas, on_failure: OnFailure) -> None:
        if on_failure not in ("fail", "continue"):
            raise ConfigurationError(f"on_failure must be 'fail' or 'continue', got {on_failure!r}")
        self.header = header
        self.callback = _nodes("chord callback", [callback])[0]
        self.on_failure = on_failure

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.callback!r}, on_failure={self.on_failure!r})"


def chain(*steps: Canvas | Iterable[Canvas]) -> Chain:
    """`chain(a.s(), b.s(), c.s())`: a, then b with a's result, then c with b's."""
    return Chain(_items(steps))


def group(*members: Canvas | Iterable[Canvas]) -> Group:
    """`group(a.s(1), a.s(2))` or `group(a.s(i) for i in ids)`: all at once."""
    return Group(_items(members))


def chord(
    header: Group | Iterable[Canvas], callback: Canvas, on_failure: OnFailure = "fail"
) -> Chord:
    """`chord([a.s(1), a.s(2)], summarize.s())`: the header, then the callback with its
    results (a list in header order)."""
    if not isinstance(header, Group):
        if isinstance(header, Canvas):
            raise ConfigurationError("a chord's header is a group or a list of signatures")
        members = list(header)
        if not members:
            raise ConfigurationError("chord() needs at least one signature in its header")
        header = Group(members)
    return Chord(header, callback, on_failure)


def _items(items: tuple[Any, ...]) -> list[Any]:
    """The nodes given as arguments, or as one iterable (a list, a generator)."""
    if len(items) == 1 and not isinstance(items[0], Canvas):
        try:
            return list(items[0])
        except TypeError:
            pass
    return list(items)


def _nodes(what: str, items: Iterable[Any]) -> list[Canvas]:
    nodes = list(items)
    if not nodes:
        raise ConfigurationError(f"{what} needs at least one signature")
    for node in nodes:
        if not isinstance(node, Canvas):
            raise ConfigurationError(
                f"{what} takes signatures (task.s(...)), chains, groups or chords, got {node!r}"
            )
    return nodes


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
            headers={protocol.WORKFLOW: workflow_id, protocol.NODE: self.node},
            enqueued_ms=protocol.now_ms(),
        )


@dataclass
class _Node:
    kind: str
    parent: int
    position: int
    canvas: Canvas
    children: list[int] = field(default_factory=list)


@dataclass
class _Plan:
    """One workflow, compiled: its record's fields and the children sent first."""

    keys: WorkflowKeys
    producer: Producer
    kind: str
    fields: dict[str, Any]
    first: list[tuple[Child, bytes]]
    sender: Sender

    def queues(self) -> set[str]:
        """The queues of the children sent first (registered before they are sent)."""
        return {child.queue for child, _ in self.first}

    def send_first(self, scripts: Scripts, child: Child, body: bytes) -> Any:
        """The command that sends one of the first children."""
        return self.sender.send(scripts, child, body, self.keys.id, is_release=False)

    def sent(self) -> WorkflowHandle:
        """Once every first child is sent: count the workflow, and its handle."""
        metrics.workflow_started(self.kind)
        return WorkflowHandle(self.keys.id, self.producer, self.keys.namespace)

    def create(self, client: Any) -> Any:
        return commands.write_hash(client, self.keys.workflow, self.fields)

    def discard(self, client: Any) -> Any:
        """Drop the record of a workflow whose first children could not all be sent (none
        of them would ever finish it): expire it now (PEXPIRE: a producer's ACL rules
        need no DEL)."""
        return commands.expire_now(client, self.keys.workflow)


def _plan(root: Canvas) -> _Plan:
    nodes: list[_Node] = []

    def add(canvas: Canvas, parent: int, position: int) -> int:
        index = len(nodes)
        kind = {Signature: "t", Chain: "c", Group: "g", Chord: "h"}[type(canvas)]
        nodes.append(_Node(kind, parent, position, canvas))
        if isinstance(canvas, Chain):
            parts: Sequence[Canvas] = canvas.steps
        elif isinstance(canvas, Group):
            parts = canvas.members
        elif isinstance(canvas, Chord):
            parts = (canvas.header, canvas.callback)
        else:
            parts = ()
        nodes[index].children = [add(part, index, i) for i, part in enumerate(parts, 1)]
        return index

    add(root, -1, 0)
    signatures = [n.canvas for n in nodes if isinstance(n.canvas, Signature)]
    producer = signatures[0].task.producer
    if any(s.task.producer is not producer for s in signatures):
        raise ConfigurationError("a workflow's tasks must all belong to one App")
    keys = WorkflowKeys(signatures[0].task.keys.namespace, protocol.new_id())
    now = protocol.now_ms()
    fields: dict[str, Any] = {
        "state": "running",
        "created": now,
        "updated": now,
        "n": len(nodes),
        "ttl": producer.workflow_ttl_ms,
        "kind": KINDS[nodes[0].kind],
    }
    children: dict[int, Child] = {}
    for index, node in enumerate(nodes):
        fields[f"k:{index}"] = node.kind
        fields[f"p:{index}"] = "-" if node.parent < 0 else node.parent
        fields[f"x:{index}"] = node.position
        if node.children:
            fields[f"c:{index}"] = ",".join(map(str, node.children))
        if node.kind == "g":
            fields[f"l:{index}"] = len(node.children)
        if isinstance(node.canvas, Chord):
            fields[f"o:{index}"] = node.canvas.on_failure
        if isinstance(node.canvas, Signature):
            signature = node.canvas
            children[index] = child = Child(
                index,
                signature.task.name,
                signature.task.home_queue,
                signature.args,
                signature.kwargs,
                signature.immutable,
                protocol.new_id(),
            )
            fields[f"m:{index}"] = child.spec()

    # Which task nodes get a value first: all but those the workflow starts with.
    first: list[int] = []

    def start(index: int, given: bool) -> None:
        node = nodes[index]
        if node.kind == "t":
            signature = node.canvas
            assert isinstance(signature, Signature)
            takes = given and not signature.immutable
            signature.task.check_arguments(
                (None, *signature.args) if takes else signature.args, signature.kwargs
            )
            return
        for position, child in enumerate(node.children):
            if node.kind == "g":
                start(child, given)
            else:  # chain steps and a chord's callback get the value before them
                start(child, given if position == 0 else True)

    def release(index: int) -> None:
        node = nodes[index]
        if node.kind == "t":
            first.append(index)
        elif node.kind == "g":
            for child in node.children:
                release(child)
        else:
            release(node.children[0])

    start(0, False)
    release(0)
    sender = Sender(
        keys.namespace,
        producer.status_ttl_ms if producer.track_status else 0,
        producer.events_cap,
    )
    sent = []
    for index in first:
        fields[f"q:{index}"] = 1
        child = children[index]
        body = protocol.encode(child.envelope(keys.id, None))
        what = f"a message of task {child.task!r}"
        sent.append((child, protocol.check_size(body, producer.max_message_bytes, what)))
    return _Plan(keys, producer, KINDS[nodes[0].kind], fields, sent, sender)


PIPELINE = 1000
"""How many first children a sync send writes per round trip (one Redis server)."""


def _send_first(connection: Any, plan: _Plan) -> None:
    """Send the children a workflow starts with: pipelined on one Redis (a group of
    thousands is a few round trips), one script call each on a cluster (their queues
    may be on different nodes)."""
    client = connection.redis
    if not isinstance(client, redis.Redis) or len(plan.first) == 1:
        for child, body in plan.first:
            plan.send_first(connection.scripts, child, body)
        return
    for start in range(0, len(plan.first), PIPELINE):
        pipe = commands.batch(client)
        scripts = Scripts(pipe)
        for child, body in plan.first[start : start + PIPELINE]:
            plan.send_first(scripts, child, body)
        commands.send_batch(pipe)


class Sender:
    """Sends a workflow's children: each with its status naming the workflow, under its
    own idempotency key, and not at all if it was cancelled before it was sent."""

    def __init__(
        self,
        namespace: str,
        status_ttl_ms: int,
        events_cap: Callable[[str], int] = lambda queue: 0,
        key_ttl_ms: int = 86_400_000,
    ) -> None:
        self.namespace = namespace
        self.status_ttl_ms = status_ttl_ms
        """0: the app tracks no status."""
        self.events_cap = events_cap
        self.key_ttl_ms = key_ttl_ms
        """How long a released child's idempotency key holds (the app's workflow_ttl: a
        re-run that repeats a release comes within a visibility timeout or so)."""

    def send(
        self,
        scripts: Scripts,
        child: Child,
        body: bytes,
        workflow: str,
        is_release: bool = True,
    ) -> Any:
        """Send one child; a release (by a worker: it may be repeated) under its own
        idempotency key, a first child (sent once, by the producer) without one."""
        keys = QueueKeys(self.namespace, child.queue)
        status = keys.status(child.message_id)
        dedupe = None
        if is_release:
            key = keys.dedupe(WorkflowKeys(self.namespace, workflow).dedupe(child.node))
            dedupe = (key, self.key_ttl_ms)
        return scripts.enqueue(
            keys.stream,
            keys.delayed,
            status,
            child.message_id,
            body,
            None,
            SendState(
                child.task,
                protocol.now_ms(),
                self.status_ttl_ms,
                keys.events,
                self.events_cap(child.queue) if self.status_ttl_ms else 0,
            ),
            dedupe,
            workflow=workflow,
        )


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


def _nodes_of(steps: Sequence[Step]) -> str:
    return ", ".join(str(step.node) for step in steps)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
