"""The package a user installs: `python -m build` makes a wheel and an sdist that `twine
check` accepts, the wheel carries the Lua scripts, templates, static files and py.typed,
and installed into a fresh virtual environment it runs `streamwork --help` and a task on
memory://. The version is written once (pyproject.toml) and CHANGELOG.md agrees.

The build and the fresh environment install from the package index (pip's cache makes
that quick after the first run), like a user's `pip install`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

import streamwork

ROOT = Path(__file__).resolve().parents[2]
VERSION = re.findall(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)[0]
SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    "site",
    "node_modules",
    "test-artifacts",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".quickstart",
)


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A wheel and an sdist built from a copy of the checkout (the checkout stays clean)."""
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    out = tmp / "dist"
    run(sys.executable, "-m", "build", "--outdir", out, source)
    yield out


def wheel_of(dist: Path) -> Path:
    [wheel] = dist.glob("*.whl")
    return wheel


@pytest.mark.timeout(600)
def test_build_makes_a_wheel_and_an_sdist_that_twine_accepts(dist: Path) -> None:
    names = sorted(p.name for p in dist.iterdir())
    assert names == [f"streamwork-{VERSION}-py3-none-any.whl", f"streamwork-{VERSION}.tar.gz"]
    report = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert report.count("PASSED") == 2, report


@pytest.mark.timeout(600)
def test_the_wheel_carries_scripts_templates_and_py_typed(dist: Path) -> None:
    with zipfile.ZipFile(wheel_of(dist)) as wheel:
        files = set(wheel.namelist())
        info = f"streamwork-{VERSION}.dist-info"
        wheel_metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    package = ROOT / "streamwork"
    shipped = [
        *package.glob("_redis/lua/*.lua"),
        *package.glob("web/templates/*.html"),
        *package.glob("web/static/*"),
        package / "py.typed",
    ]
    assert len(shipped) > 30
    missing = [str(p.relative_to(ROOT)) for p in shipped if str(p.relative_to(ROOT)) not in files]
    assert missing == []
    assert f"{info}/licenses/LICENSE" in files
    assert f"Version: {VERSION}" in wheel_metadata
    assert "License-Expression: MIT" in wheel_metadata
    assert "Provides-Extra: testing" in wheel_metadata
    assert "streamwork = streamwork.cli:main" in entry_points
    assert "streamwork = streamwork.testing.pytest_plugin" in entry_points


@pytest.mark.timeout(600)
def test_the_sdist_has_what_a_build_from_source_needs(dist: Path) -> None:
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "MANIFEST.in",
        "streamwork/py.typed",
        "streamwork/_redis/lua/settle.lua",
        "docs/index.md",
    ):
        assert needed in names, needed


@pytest.mark.timeout(600)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_a_task(dist: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, streamwork_command = env_dir / "bin" / "python", env_dir / "bin" / "streamwork"
    run(
        python,
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        f"{wheel_of(dist)}[testing]",
    )

    assert "worker" in run(streamwork_command, "--help")
    assert run(streamwork_command, "--version").strip() == f"streamwork, version {VERSION}"

    work = tmp_path / "work"  # not the checkout: the installed package must be the one imported
    work.mkdir()
    (work / "check.py").write_text(
        textwrap.dedent(
            """\
        import streamwork
        from streamwork import App
        from streamwork.testing import run_until_idle

        app = App("memory://")


        @app.task(store_result=True)
        def add(x, y):
            return x + y


        handle = add.send(2, 3)
        run_until_idle(app)
        print(handle.result(), streamwork.__version__, streamwork.__file__)
        """
        )
    )
    result, version, location = run(python, "check.py", cwd=work).split()
    assert (result, version) == ("5", VERSION)
    assert Path(location).is_relative_to(env_dir)


def test_the_version_is_written_once_and_the_changelog_agrees() -> None:
    assert streamwork.__version__ == metadata.version("streamwork") == VERSION
    changelog = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, re.M)
    assert releases and releases[0] == VERSION
    assert "## [Unreleased]" in changelog
    # nowhere else in the package's code: it reads the installed metadata
    pinned = [p for p in (ROOT / "streamwork").rglob("*.py") if f'"{VERSION}"' in p.read_text()]
    assert pinned == []
