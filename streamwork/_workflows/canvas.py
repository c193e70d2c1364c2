"""The canvas (`task.s()` / `task.si()` signatures, `chain`, `group`, `chord`) and sending a
workflow: compiling a canvas into its record (`_plan`), writing the record and sending its
first children, and the `Sender` that sends a child under its own idempotency key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import redis
import redis.exceptions

from .._base import metrics, protocol, tracing
from .._base.keys import QueueKeys, WorkflowKeys, queue_registry
from .._redis import commands
from .._redis.rows import SendState
from .._redis.scripts import Scripts
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .._base.handler import HandlerOptions
    from .._send.producer import Producer

from .handle import WorkflowHandle
from .nodes import KINDS, Child, OnFailure, bounded

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
        with _send_span(self) as (plan, _):
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
        with _send_span(self) as (plan, _):
            connection = plan.producer.connection
            with connection.translate_errors():
                client, scripts = connection.async_redis(), connection.async_scripts()
                await plan.create(client)
                try:
                    for queue in plan.queues():
                        await connection.register_async(queue_registry(plan.keys.namespace), queue)
                    await bounded(
                        [plan.send_first(scripts, child, body) for child, body in plan.first]
                    )
                except BaseException:
                    await plan.discard(client)
                    raise
            return plan.sent()

    def __or__(self, other: Canvas) -> Canvas:
        """`a | b`, composed as in Celery's canvas: a chain, where a chain joined to a chain
        is one chain (`a | b | c` has three steps); a group followed by anything is a chord
        whose callback that is (`group(...) | summarize.s()`)."""
        if not isinstance(other, Canvas):
            return NotImplemented
        if isinstance(self, Group):
            return Chord(self, other, "fail")
        left = self.steps if isinstance(self, Chain) else (self,)
        right = other.steps if isinstance(other, Chain) else (other,)
        return Chain((*left, *right))


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


@contextlib.contextmanager
def _send_span(root: Canvas) -> Iterator[tuple[_Plan, Any]]:
    """A workflow's plan, made inside its send span (every step carries its context)."""
    with tracing.send_span("workflow", {}) as span:
        plan = _plan(root)
        destination = ", ".join(sorted(plan.queues()))
        tracing.retarget(span, destination, len(plan.first), plan.keys.id, plan.producer.server)
        yield plan, span


def _plan(root: Canvas) -> _Plan:
    nodes = _tree(root)
    signatures = [n.canvas for n in nodes if isinstance(n.canvas, Signature)]
    producer = signatures[0].task.producer
    if any(s.task.producer is not producer for s in signatures):
        raise ConfigurationError("a workflow's tasks must all belong to one App")
    keys = WorkflowKeys(signatures[0].task.keys.namespace, protocol.new_id())
    fields, children = _record(nodes, producer.workflow_ttl_ms)
    sender = Sender(
        keys.namespace,
        producer.status_ttl_ms if producer.track_status else 0,
        producer.events_cap,
    )
    sent = []
    for index in _first(nodes):
        fields[f"q:{index}"] = 1
        child = children[index]
        body = protocol.encode(child.envelope(keys.id, None))
        what = f"a message of task {child.task!r}"
        sent.append((child, protocol.check_size(body, producer.max_message_bytes, what)))
    return _Plan(keys, producer, KINDS[nodes[0].kind], fields, sent, sender)


def _tree(root: Canvas) -> list[_Node]:
    """The canvas's nodes, depth first: each with its parent, position and children."""
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
    return nodes


def _record(nodes: list[_Node], ttl_ms: int) -> tuple[dict[str, Any], dict[int, Child]]:
    """The workflow record's fields, and the task nodes as children to send."""
    now = protocol.now_ms()
    fields: dict[str, Any] = {
        "state": "running",
        "created": now,
        "updated": now,
        "n": len(nodes),
        "ttl": ttl_ms,
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
    return fields, children


def _first(nodes: list[_Node]) -> list[int]:
    """The task nodes the workflow starts with, once every task node's arguments are
    checked (all but the first get a value before their own arguments)."""
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
    return first


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
