"""Every page of the documentation (and README.md) is run as a reader would follow it.

tests/docs/runner.py runs each page's ```python blocks in order, writes its titled blocks
as files, and runs the ```sh blocks marked `<!-- docs-test: run -->`, against this suite's
private Redis. A page whose example is wrong fails here with its file and line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("runner.py")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def run_page(page: Path, workdir: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREAMWORK_REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, str(RUNNER), str(page), str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.timeout(200)
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_runs(page: Path, tmp_path: Path, redis_url: str) -> None:
    done = run_page(page, tmp_path, redis_url)
    assert done.returncode == 0, done.stderr + done.stdout
    python_blocks = page.read_text().count("```python")
    ran = int(done.stdout.strip().splitlines()[-1].split()[0])
    assert ran >= python_blocks


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_a_wrong_example_fails_with_its_line(tmp_path: Path, redis_url: str) -> None:
    page = write(
        tmp_path / "page.md",
        """\
        # A page

        ```python
        total = 1 + 1
        ```

        Some text.

        ```python
        assert total == 3, "wrong sum"
        ```
        """,
    )
    work = tmp_path / "work"
    work.mkdir()
    done = run_page(page, work, redis_url)
    assert done.returncode == 1
    assert f"{page}:9: the block raised AssertionError: wrong sum" in done.stderr


def test_titled_blocks_are_files_and_marked_shell_blocks_run(
    tmp_path: Path, redis_url: str
) -> None:
    page = write(
        tmp_path / "page.md",
        """\
        ```python title="shop.py"
        PRICE = 7
        ```

        <!-- docs-test: run -->
        ```sh
        python -c "import shop; print('price', shop.PRICE)"  # prints price 7
        ```

        ```sh
        exit 3   # shown, never run
        ```

        ```python
        import shop
        assert shop.PRICE == 7
        ```
        """,
    )
    work = tmp_path / "work"
    work.mkdir()
    done = run_page(page, work, redis_url)
    assert done.returncode == 0, done.stderr
    assert "price 7" in done.stdout
    assert (work / "shop.py").read_text() == "PRICE = 7\n"


def test_a_failing_command_fails_the_page(tmp_path: Path, redis_url: str) -> None:
    page = write(
        tmp_path / "page.md",
        """\
        <!-- docs-test: run -->
        ```sh
        streamwork worker nosuchmodule:app --burst
        ```
        """,
    )
    work = tmp_path / "work"
    work.mkdir()
    done = run_page(page, work, redis_url)
    assert done.returncode == 1
    assert "`streamwork worker nosuchmodule:app --burst` exited" in done.stderr


def test_python_under_another_fence_name_is_refused(tmp_path: Path, redis_url: str) -> None:
    page = write(tmp_path / "page.md", "```py\nprint('never run')\n```\n")
    done = run_page(page, tmp_path, redis_url)
    assert done.returncode == 1
    assert "write ```python, not ```py" in done.stderr


def test_top_level_await_runs_on_the_pages_loop(tmp_path: Path, redis_url: str) -> None:
    page = write(
        tmp_path / "page.md",
        """\
        ```python
        import asyncio
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        ```

        ```python
        await asyncio.sleep(0)
        assert asyncio.get_running_loop() is loop
        ```
        """,
    )
    done = run_page(page, tmp_path, redis_url)
    assert done.returncode == 0, done.stderr
