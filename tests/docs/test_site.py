"""The documentation site builds with `mkdocs build --strict`: a broken link between pages,
a missing anchor, a page left out of the navigation or an API reference that no longer
matches the code fails it. README.md's own links point at files that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=root,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_of_the_docs(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("docs", "streamwork"):
        shutil.copytree(ROOT / name, root / name)
    for name in ("mkdocs.yml", "CHANGELOG.md"):
        shutil.copy(ROOT / name, root / name)
    return root


@pytest.mark.timeout(300)
def test_the_site_builds_strict_with_the_api_reference(tmp_path: Path) -> None:
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    for name in ("send_with", "run_until_idle", "WorkflowHandle", "asgi_app", "replay"):
        assert name in api, name
    changelog = (tmp_path / "site" / "changelog" / "index.html").read_text()
    assert "0.1.0" in changelog and "Keep a Changelog" in changelog
    tutorial = (tmp_path / "site" / "tutorial" / "index.html").read_text()
    assert "streamwork worker tasks:app" in re.sub(r"<[^>]+>", "", tutorial)
    assert "docs-test" in tutorial  # the directives stay HTML comments, not text
    assert "&lt;!-- docs-test" not in tutorial


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("page", "append", "warning"),
    [
        ("faq.md", "[gone](guides/nothing.md)", "'guides/nothing.md', but the target is not found"),
        (
            "faq.md",
            "[part](guides/retries.md#no-such-part)",
            "does not contain an anchor '#no-such-part'",
        ),
        ("orphan.md", "# Not in the navigation", "orphan.md"),
    ],
    ids=["missing page", "missing anchor", "page not in the navigation"],
)
def test_a_broken_link_fails_the_build(
    tmp_path: Path, page: str, append: str, warning: str
) -> None:
    root = copy_of_the_docs(tmp_path)
    with open(root / "docs" / page, "a") as file:
        file.write(f"\n{append}\n")
    done = build(root, tmp_path / "site")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert warning in output
    assert "Aborted with 1 warnings in strict mode" in output


def test_the_readme_links_point_at_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert len(local) > 20
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == []
