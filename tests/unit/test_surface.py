"""The public surface: `streamwork.__all__` is sorted and complete (every name the package
binds for users, every exception any module of the package defines), and every name the
API reference documents resolves under a public path (no `_` package on the way)."""

import ast
import importlib
import re
from pathlib import Path

import streamwork
from streamwork.errors import StreamworkError

PACKAGE = Path(streamwork.__file__).parent
API_PAGE = PACKAGE.parent / "docs" / "reference" / "api.md"
PUBLIC_MODULES = ["streamwork.errors", "streamwork.testing", "streamwork.ops", "streamwork.web"]


def test_all_is_sorted_and_names_what_the_package_binds():
    assert streamwork.__all__ == sorted(streamwork.__all__)
    bound = {
        name
        for name in vars(streamwork)
        if not name.startswith("_") and not isinstance(getattr(streamwork, name), type(streamwork))
    }
    assert set(streamwork.__all__) == bound | {"__version__"}


def exceptions_defined_in_the_package():
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                found.add((path, node.name))
    return found


def test_every_streamwork_error_is_public():
    """Every StreamworkError subclass any module defines can be caught as streamwork.X."""
    defined = set()
    for path, name in exceptions_defined_in_the_package():
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        value = getattr(importlib.import_module(module), name, None)
        if isinstance(value, type) and issubclass(value, StreamworkError):
            defined.add(name)
    assert len(defined) > 20  # the walk sees the package
    assert sorted(defined - set(streamwork.__all__)) == []


def documented_names():
    return re.findall(r"^::: ([\w.]+)", API_PAGE.read_text(), re.M)


def test_every_documented_name_resolves_under_a_public_path():
    names = documented_names()
    assert "streamwork.App" in names
    for dotted in names:
        assert not any(part.startswith("_") for part in dotted.split(".")), dotted
        module, _, attr = dotted.rpartition(".")
        try:
            importlib.import_module(dotted)
        except ImportError:
            assert hasattr(importlib.import_module(module), attr), dotted


def test_the_public_modules_import():
    for name in PUBLIC_MODULES:
        assert importlib.import_module(name).__doc__
