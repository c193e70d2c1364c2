"""The package's shape, kept by tests rather than by docstrings:

- layers import downward only (TYPE_CHECKING and function-level imports included): errors,
  _base, _redis, _send, the features (_lifecycle, _schedules, _workflows, which never import
  one another), _app, _worker, the public surface, then ops and testing, then cli and web
  (web never imports cli); no import circle among the modules;
- only the Redis layer (_redis) sends Redis commands: no other module calls a method of a
  redis-py client or pipeline;
- a size budget: a module at most 500 lines, a class 450, a function 80, with an allow-list
  that may only shrink (an entry that grows, or fits the budget again, fails);
- every sync/async pair of the public API takes the same arguments, and each of the two
  only drives a plan they share (a short body).
"""

import ast
import inspect
import textwrap
from pathlib import Path

import pytest
import redis
import redis.asyncio
import redis.client
import redis.cluster

import streamwork
from streamwork import App, Task, TaskHandle, WorkflowHandle
from streamwork._base import protocol
from streamwork._workflows.canvas import Canvas

PACKAGE = Path(streamwork.__file__).parent


def module_name(path):
    parts = ["streamwork", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}

# The rank of each top-level part; a module may import only parts of a lower rank, or its own.
RANKS = {
    "errors": 0,
    "_base": 1,
    "_redis": 2,
    "_send": 3,
    "_lifecycle": 4,
    "_schedules": 4,
    "_workflows": 4,
    "_app": 5,
    "_worker": 6,
    "": 7,  # streamwork/__init__.py: the public surface
    "ops": 8,
    "testing": 8,
    "cli": 9,
    "web": 9,
    "__main__": 10,
}
ALLOWED_PEERS = {("cli", "web")}  # `streamwork web` serves the console; never the reverse


def part_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(module):
    """The streamwork modules `module` imports, anywhere in its body (the deepest module or
    package each import names)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("streamwork"):
                continue
            for alias in node.names:
                found.add(
                    f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
                )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("streamwork"))
    found.discard(module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_import_reader_sees_imports():
    assert "streamwork._app.app" in GRAPH["streamwork.cli.app"]
    assert "streamwork._redis.commands" in GRAPH["streamwork._worker.worker"]
    assert "streamwork._redis.connection" in GRAPH["streamwork._worker.worker"]  # TYPE_CHECKING
    assert set(RANKS) == {part_of(module) for module in MODULES}, "a part with no rank"


def upward_imports():
    found = []
    for module, imported in GRAPH.items():
        mine = part_of(module)
        for target in imported:
            theirs = part_of(target)
            if theirs == mine or (mine, theirs) in ALLOWED_PEERS:
                continue
            if RANKS[theirs] >= RANKS[mine]:
                found.append(f"{module} imports {target}")
    return sorted(found)


def test_layers_import_downward_only():
    assert upward_imports() == []


def test_web_never_imports_cli():
    assert not [
        t for m, ts in GRAPH.items() if part_of(m) == "web" for t in ts if part_of(t) == "cli"
    ]


def find_cycle(graph):
    """One import circle as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                return [*path[path.index(child) :], child]
            if child not in state and (cycle := visit(child, [*path, child])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_circle_among_the_modules():
    # A package's __init__ re-exporting its modules is not a circle of the code.
    graph = {
        module: {t for t in imported if not module.startswith(t + ".")}
        for module, imported in GRAPH.items()
    }
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_circle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


# -- only _redis sends Redis commands ----------------------------------------------------------

# Every method of redis-py's clients and pipelines that sends a command (closing one does not).
REDIS_METHODS = {
    name
    for cls in (redis.Redis, redis.asyncio.Redis, redis.client.Pipeline, redis.cluster.RedisCluster)
    for name in dir(cls)
    if not name.startswith("_")
} - {"close", "aclose"} | {"execute_command", "pipeline", "evalsha", "register_script"}
# Names other objects have too (dict.get, Event.set, set.discard, ...): a call of one counts
# when its receiver is named like a client or a pipeline.
AMBIGUOUS = {
    "append", "client", "command", "connection", "copy", "delete", "discard", "dump",
    "echo", "execute", "exists", "get", "info", "keys", "lock", "move", "object", "ping",
    "publish", "reset", "restore", "role", "save", "scan", "set", "shutdown", "sort",
    "sync", "time", "type", "wait", "watch",
}  # fmt: skip
CLIENT_NAMES = {"client", "pipe", "pipeline", "redis", "_client", "_redis", "node", "r", "c"}


def _receiver(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, (ast.Call, ast.Await)):
        return _receiver(node.func if isinstance(node, ast.Call) else node.value)
    return ""


def redis_calls(tree):
    """(line, receiver.method) of each call in `tree` that sends a Redis command."""
    for node in sorted(ast.walk(tree), key=lambda n: getattr(n, "lineno", 0)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, receiver = node.func.attr, _receiver(node.func.value)
            if method not in REDIS_METHODS:
                continue
            if method in AMBIGUOUS and receiver not in CLIENT_NAMES | {"async_redis"}:
                continue
            yield node.lineno, f"{receiver}.{method}"


def test_the_redis_call_finder_finds_calls():
    code = "client.xadd(s, f)\nawait self._client.hget(k, f)\nd.get(k)\nevent.set()\npipe.get(k)"
    assert [c for _, c in redis_calls(ast.parse(code))] == [
        "client.xadd",
        "_client.hget",
        "pipe.get",
    ]


def found_in_package(find, exempt):
    """`module:line what` of each thing `find` finds in the modules `exempt` does not exempt."""
    return [
        f"{module}:{line} {what}"
        for module, path in MODULES.items()
        if not exempt(module)
        for line, what in find(ast.parse(path.read_text()))
    ]


def test_only_the_redis_layer_sends_redis_commands():
    assert found_in_package(redis_calls, lambda module: part_of(module) == "_redis") == []


# -- one name per concept ---------------------------------------------------------------------


def _names_headers(node):
    return "headers" in ast.unparse(node).lower()


def spelled_reserved_headers(tree):
    """(line, name) of each reserved header name written as a literal where headers are
    read or built: headers.get("x"), headers["x"], "x" in headers, headers={"x": ...}."""
    reserved = protocol.RESERVED_HEADERS
    for node in ast.walk(tree):
        found = []
        if isinstance(node, ast.Call):
            function = node.func
            is_get = isinstance(function, ast.Attribute) and function.attr == "get"
            if is_get and node.args and _names_headers(function.value):
                found.append(node.args[0])
            found += [k.value for k in node.keywords if k.arg == "headers"]
        elif isinstance(node, ast.Subscript) and _names_headers(node.value):
            found.append(node.slice)
        elif isinstance(node, ast.Compare) and any(_names_headers(c) for c in node.comparators):
            found.append(node.left)
        for candidate in found:
            keys = candidate.keys if isinstance(candidate, ast.Dict) else [candidate]
            for key in keys:
                if isinstance(key, ast.Constant) and key.value in reserved:
                    yield node.lineno, key.value


def test_the_reserved_header_finder_finds_literals():
    code = 'h = m.headers.get("fair_key")\nsend(headers={"node": 1})\nx = "workflow" in headers'
    assert sorted(n for _, n in spelled_reserved_headers(ast.parse(code))) == [
        "fair_key",
        "node",
        "workflow",
    ]


def test_reserved_header_names_are_spelled_in_one_place():
    """Only _base/protocol.py spells the header names streamwork reserves."""
    protocol_module = "streamwork._base.protocol"
    assert found_in_package(spelled_reserved_headers, protocol_module.__eq__) == []


# -- size budget -------------------------------------------------------------------------------

MODULE_LINES, CLASS_LINES, FUNCTION_LINES = 500, 450, 80

# What is over budget, at its size when it was listed: an entry may only go (when its code is
# split) or stay as large; none may be added. Empty since the package was layered.
OVER_BUDGET: dict[str, int] = {}


def definitions(node, prefix=""):
    """(dotted name, lines, budget) of each class and function under `node`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{child.name}"
            budget = CLASS_LINES if isinstance(child, ast.ClassDef) else FUNCTION_LINES
            yield name, child.end_lineno - child.lineno + 1, budget
            yield from definitions(child, name + ".")


def sizes():
    """(name, lines, budget) of every module, class and function of the package."""
    for path in MODULES.values():
        text = path.read_text()
        where = path.relative_to(PACKAGE.parent).as_posix()
        yield where, len(text.splitlines()), MODULE_LINES
        for name, lines, budget in definitions(ast.parse(text)):
            yield f"{where}::{name}", lines, budget


def test_nothing_new_is_over_the_size_budget():
    over = {name: lines for name, lines, budget in sizes() if lines > budget}
    new = {name: lines for name, lines in over.items() if name not in OVER_BUDGET}
    assert new == {}, "over the size budget: split it along a seam the code marks"
    grown = {
        name: (OVER_BUDGET[name], lines) for name, lines in over.items() if name in OVER_BUDGET
    }
    assert {n: v for n, v in grown.items() if v[1] > v[0]} == {}, "an allow-listed entry grew"
    back = sorted(set(OVER_BUDGET) - set(over))
    assert back == [], "within budget now: take it off OVER_BUDGET"


# -- sync/async twins ------------------------------------------------------------------------

PAIRS = [
    (Task, "send"),
    (Task, "send_with"),
    (Task, "send_many"),
    (TaskHandle, "result"),
    (TaskHandle, "status"),
    (TaskHandle, "cancel"),
    (App, "publish"),
    (App, "publish_many"),
    (App, "close"),
    (WorkflowHandle, "status"),
    (WorkflowHandle, "result"),
    (WorkflowHandle, "results"),
    (WorkflowHandle, "cancel"),
    (Canvas, "send"),
]
OWNERS = sorted({owner for owner, _ in PAIRS}, key=lambda owner: owner.__name__)
DRIVER_STATEMENTS = 12
"""The most statements (docstring aside) a twin may have: the plan is shared, each twin
only drives its I/O."""


def twin_of(owner, name):
    return getattr(owner, f"{name}_async" if name != "close" else "aclose")


@pytest.mark.parametrize(("owner", "name"), PAIRS, ids=lambda p: getattr(p, "__name__", p))
def test_sync_and_async_twins_take_the_same_arguments(owner, name):
    sync = inspect.signature(getattr(owner, name))
    twin = twin_of(owner, name)
    assert inspect.iscoroutinefunction(twin)
    asynchronous = inspect.signature(twin)
    assert [(p.name, p.kind, p.default, p.annotation) for p in sync.parameters.values()] == [
        (p.name, p.kind, p.default, p.annotation) for p in asynchronous.parameters.values()
    ]


def statements(function):
    """How many statements a function's body holds (nested ones too), its docstring aside."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    return sum(isinstance(node, ast.stmt) for top in body for node in ast.walk(top))


@pytest.mark.parametrize(("owner", "name"), PAIRS, ids=lambda p: getattr(p, "__name__", p))
def test_each_twin_only_drives_a_shared_plan(owner, name):
    for function in (getattr(owner, name), twin_of(owner, name)):
        assert statements(function) <= DRIVER_STATEMENTS, function.__qualname__


def test_every_async_method_has_a_sync_twin_in_the_list():
    twins = {(owner, twin_of(owner, name).__name__) for owner, name in PAIRS}
    for owner in OWNERS:
        for name, member in vars(owner).items():
            if inspect.iscoroutinefunction(member) and not name.startswith("_"):
                assert (owner, name) in twins, f"{owner.__name__}.{name} has no sync twin"
