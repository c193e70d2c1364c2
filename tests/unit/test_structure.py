"""The package's shape: no import circle among its modules (TYPE_CHECKING and function-level
imports included), and every sync/async pair of the public API takes the same arguments."""

import ast
import inspect
from pathlib import Path

import pytest

import streamwork
from streamwork import App, Task, TaskHandle

PACKAGE = Path(streamwork.__file__).parent
MODULES = {path.stem: path for path in PACKAGE.glob("*.py")}


def imports_of(name):
    """The streamwork modules that module `name` imports, anywhere in its body."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x, y
                for alias in node.names:
                    found.add(alias.name if alias.name in MODULES else "__init__")
            elif node.module and node.module.startswith("streamwork"):
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "streamwork":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    found.discard(name)
    return found & set(MODULES)


def find_cycle(graph):
    """One import circle as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for child in sorted(graph[node]):
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
    graph = {name: imports_of(name) for name in MODULES}
    assert "app" in graph["cli_app"]  # the parser sees imports at all
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_circle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


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
]


@pytest.mark.parametrize(("owner", "name"), PAIRS, ids=lambda p: getattr(p, "__name__", p))
def test_sync_and_async_twins_take_the_same_arguments(owner, name):
    sync = inspect.signature(getattr(owner, name))
    twin = getattr(owner, f"{name}_async" if name != "close" else "aclose")
    assert inspect.iscoroutinefunction(twin)
    asynchronous = inspect.signature(twin)
    assert [(p.name, p.kind, p.default, p.annotation) for p in sync.parameters.values()] == [
        (p.name, p.kind, p.default, p.annotation) for p in asynchronous.parameters.values()
    ]


def test_every_async_method_has_a_sync_twin_in_the_list():
    twins = {(owner, f"{name}_async") for owner, name in PAIRS}
    for owner in (Task, TaskHandle, App):
        for name, member in vars(owner).items():
            if inspect.iscoroutinefunction(member) and name.endswith("_async"):
                assert (owner, name) in twins, f"{owner.__name__}.{name} has no sync twin"
