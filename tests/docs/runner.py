"""Runs the code of one Markdown page in order, as a reader following it would.

What it runs, and nothing else:

- Every ```python block, in page order, in one namespace per page; top-level `await` works
  (the page has one event loop). A block whose info string says `title="NAME.py"` is the
  file a reader would save: it is written to the page's working directory (which is on
  `sys.path`, so the next blocks import it) instead of being run.
- A ```sh block preceded by `<!-- docs-test: run -->`: each command line of it runs in the
  working directory and must exit 0. `<!-- docs-test: background -->`: each command is
  started and left running (a worker, a console) until the page ends, then ended by its
  PID. Other ```sh, ```text, ```yaml blocks are shown, not run.

The environment is the reader's: `$STREAMWORK_REDIS_URL` (the caller's private Redis),
this Python's bin directory first on `PATH` (so `streamwork` and `python` are the ones
under test). A failing block stops the page with the page's file name and line number.

Usage: python runner.py PAGE.md WORKDIR — prints how many blocks ran, exits 1 on failure.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>.*)$")
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(?P<what>[\w-]+)\s*-->")
TITLE = re.compile(r'title="(?P<title>[^"]+)"')
# Fence languages that are Python under another name: refused, so that no block escapes.
PYTHON_ALIASES = {"py", "python3", "pycon", "pyi"}


class PageError(Exception):
    """A block of the page failed; the message names the page and line."""


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    title: str | None
    code: str
    directive: str | None


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)


def parse(path: Path) -> Page:
    """The fenced blocks of a page, each with the directive comment just before it."""
    page = Page(path)
    lines = path.read_text().splitlines()
    directive: str | None = None
    index = 0
    while index < len(lines):
        text = lines[index]
        found = DIRECTIVE.search(text)
        if found:
            directive = found.group("what")
            if directive not in {"run", "background"}:
                raise PageError(f"{path}:{index + 1}: unknown directive {directive!r}")
            index += 1
            continue
        opening = FENCE.match(text)
        if not opening:
            if text.strip():
                directive = None
            index += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        language = info.split()[0] if info else ""
        titled = TITLE.search(info)
        body: list[str] = []
        index += 1
        start = index
        while index < len(lines) and lines[index].strip() != fence:
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else "")
            index += 1
        if index >= len(lines):
            raise PageError(f"{path}:{start}: a code block is never closed")
        index += 1
        if language in PYTHON_ALIASES:
            raise PageError(f"{path}:{start}: write ```python, not ```{language}")
        if directive is not None and language not in {"sh", "bash"}:
            raise PageError(f"{path}:{start}: docs-test: {directive} needs a ```sh block")
        page.blocks.append(
            Block(start, language, titled["title"] if titled else None, "\n".join(body), directive)
        )
        directive = None
    return page


def commands(code: str) -> list[str]:
    """The command lines of a shell block: comments and blank lines dropped, `\\` joined."""
    joined = re.sub(r"\\\n\s*", " ", code)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            found.append(line)
    return found


class Runner:
    def __init__(self, page: Page, workdir: Path) -> None:
        self.page = page
        self.workdir = workdir
        self.namespace: dict[str, object] = {"__name__": "__main__"}
        self.loop = asyncio.new_event_loop()
        self.background: list[subprocess.Popen[bytes]] = []
        self.ran = 0
        self.env = dict(os.environ)
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["PYTHONPATH"] = str(workdir)
        self.env["PYTHONUNBUFFERED"] = "1"

    def where(self, block: Block) -> str:
        return f"{self.page.path}:{block.line}"

    def run(self) -> int:
        os.chdir(self.workdir)
        sys.path.insert(0, str(self.workdir))
        try:
            for block in self.page.blocks:
                if block.language == "python":
                    self.python(block)
                elif block.directive == "run":
                    self.shell(block)
                elif block.directive == "background":
                    self.start(block)
        except PageError:
            with contextlib.suppress(PageError):
                self.stop_background()
            raise
        else:
            self.stop_background()
        finally:
            self.loop.close()
        return self.ran

    def python(self, block: Block) -> None:
        if block.title is not None:
            target = self.workdir / block.title
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code + "\n")
            self.ran += 1
            return
        # Line numbers in tracebacks are the page's own.
        source = "\n" * block.line + block.code
        try:
            code = compile(
                source, str(self.page.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            )
            result = eval(code, self.namespace)
            if inspect.iscoroutine(result):
                self.loop.run_until_complete(result)
        except Exception as error:
            raise PageError(
                f"{self.where(block)}: the block raised {type(error).__name__}: {error}\n"
                + "".join(traceback.format_exception(error))
                + self.logs()
            ) from None
        self.ran += 1

    def shell(self, block: Block) -> None:
        for command in commands(block.code):
            done = subprocess.run(
                command,
                shell=True,
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise PageError(
                    f"{self.where(block)}: `{command}` exited {done.returncode}\n"
                    f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
                )
            sys.stdout.write(done.stdout)
        self.ran += 1

    def start(self, block: Block) -> None:
        for command in commands(block.code):
            log = open(self.workdir / f"background-{len(self.background)}.log", "wb")  # noqa: SIM115
            self.background.append(
                subprocess.Popen(
                    shlex.split(command),
                    cwd=self.workdir,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        self.ran += 1

    def stop_background(self) -> None:
        died = [p for p in self.background if p.poll() not in (None, 0)]
        for process in self.background:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.background:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                process.kill()
                process.wait(10)
        if died:
            raise PageError(
                f"{self.page.path}: a background command exited early: {died[0].args}" + self.logs()
            )

    def logs(self) -> str:
        """The output of the background commands, for a failure's message."""
        found = sorted(self.workdir.glob("background-*.log"))
        return "".join(f"\n--- {log.name}:\n{log.read_text()[-3000:]}" for log in found)


def main() -> int:
    # this script's folder is not the reader's: only the page's working directory is importable
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    page_path, workdir = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    try:
        ran = Runner(parse(page_path), workdir).run()
    except PageError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{ran} blocks run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
