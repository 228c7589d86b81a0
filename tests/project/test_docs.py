"""The documentation is executable: every shell and Python block of README.md and docs/*.md runs.

Each file is one session, run the way a newcomer would run it, for real:

* a fresh temporary directory is the working directory and stands for the root of a
  checkout (``src`` there links to this repository's ``src``, so documented paths such
  as ``src/fiat/examples/policies`` resolve); no Fiat home exists yet, so ``fiat init``
  makes ``./.fiat`` as the README says; ``$HOME`` is a fresh directory as well;
* ``fiat`` and ``python3`` are on ``PATH`` (the bin directory of the interpreter running
  the tests) and ``PYTHONPATH`` puts this worktree's ``src`` first, so its code runs;
  no ``FIAT_*`` variable of the caller leaks in; ``FIAT_SERVER_PORT`` is a free port;
* blocks run in document order and share the working directory, so a later block uses
  what an earlier one made (the home, ``run.bundle.json``, ``trust-root.json``).

Which blocks run, by the fence's info string:

* ``bash``, ``sh``, ``shell`` — the body runs in ``bash -e -u -o pipefail``: every
  command must succeed; a command documented to fail says so in the block
  (``… || test $? -eq 125``);
* ``console`` — the lines starting with ``$ `` run as above (the other lines are output);
* ``python``, ``py`` — the body runs as a script with the project's interpreter;
* anything else (``json``, ``text``, none) is not code to run and is left alone.

A block can be given a directive by an HTML comment on the line right before its fence
(invisible when the Markdown is rendered):

* ``<!-- doc-test: no-run — REASON -->`` — the block is not run; REASON is required
  (long-running commands: ``make run``, ``fiat serve`` in the foreground, benchmarks);
* ``<!-- doc-test: serve -->`` — the block needs a running authority: the test starts
  ``fiat serve`` (a real process on 127.0.0.1 at ``FIAT_SERVER_PORT``, with the home
  of the working directory) before it, keeps it for the file's later blocks, and stops
  it at the end of the file.

docs/writing-docs.md says the same for whoever writes the docs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import REPO
from support.processes import FiatServer, cli_env, free_port

ROOT = REPO
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL, PYTHON = ("bash", "sh", "shell", "console"), ("python", "py")
DIRECTIVE = re.compile(r"<!--\s*doc-test:\s*(?P<what>.*?)\s*-->")
NO_RUN = re.compile(r"no-run\s*[—:-]+\s*(?P<reason>\S.*)")
BLOCK_TIMEOUT = 60.0
SERVE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    directive: str  # "" | "serve" | "no-run — reason"

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in SHELL + PYTHON and not self.directive.startswith("no-run")


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, each with the directive just before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})\s*([^\s`]*)", lines[i])
        if not fence:
            i += 1
            continue
        ticks, lang = fence.group(1), fence.group(2).lower()
        previous = lines[i - 1].strip() if i > 0 else ""
        marker = DIRECTIVE.fullmatch(previous)
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith(ticks):
            body.append(lines[i])
            i += 1
        i += 1
        found.append(Block(path, start + 1, lang, "\n".join(body) + "\n", marker.group("what") if marker else ""))
    return found


def console_commands(body: str) -> str:
    """The commands of a ``console`` block: lines after ``$ ``, with their ``\\`` continuations."""
    out, more = [], False
    for line in body.splitlines():
        if line.startswith("$ ") or more:
            text = line[2:] if line.startswith("$ ") and not more else line
            out.append(text)
            more = text.rstrip().endswith("\\")
    return "\n".join(out) + "\n"


class Session:
    """One document's run: a fresh directory, an environment, and a `fiat serve` when asked for."""

    def __init__(self, where: Path) -> None:
        self.cwd = where / "checkout"
        self.cwd.mkdir()
        (self.cwd / "src").symlink_to(ROOT / "src", target_is_directory=True)
        (where / "user-home").mkdir()
        self.scripts = where / "blocks"
        self.scripts.mkdir()
        self.port = free_port()
        env = cli_env(
            {
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")] if p),
                "HOME": str(where / "user-home"),
                "FIAT_SERVER_PORT": str(self.port),
                "COLUMNS": "200",
            }
        )
        env.pop("VIRTUAL_ENV", None)
        self.env = env
        self.server = FiatServer(None, port=self.port, cwd=self.cwd, env=env, output=where / "serve.log")

    def serve(self) -> None:
        """`fiat serve` as documented (home and port from the working directory and environment)."""
        if self.server.running():
            return
        assert not self.server.exited(), f"fiat serve exited:\n{self.server.text()}"
        self.server.start()

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        if block.directive == "serve":
            self.serve()
        if block.lang in PYTHON:
            script = self.scripts / f"{block.path.stem}-{block.line}.py"
            script.write_text(block.body, encoding="utf-8")
            argv = [sys.executable, str(script)]
        else:
            body = console_commands(block.body) if block.lang == "console" else block.body
            argv = ["bash", "-e", "-u", "-o", "pipefail", "-c", body]
        return subprocess.run(
            argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT, check=False
        )

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_of_the_document_runs(doc: Path, session: Session) -> None:
    for block in blocks(doc):
        if not block.runs:
            continue
        p = session.run(block)
        assert p.returncode == 0, (
            f"{block.where}: the {block.lang} block exited with {p.returncode}\n"
            f"--- block\n{block.body}--- stdout\n{p.stdout}--- stderr\n{p.stderr}"
        )


def test_directives_are_known_and_every_no_run_says_why() -> None:
    for doc in DOCS:
        for block in blocks(doc):
            if not block.directive:
                continue
            assert block.directive == "serve" or NO_RUN.fullmatch(block.directive), (
                f"{block.where}: unknown doc-test directive {block.directive!r} (use `serve` or `no-run — REASON`)"
            )


def test_the_readme_has_runnable_blocks_of_each_kind() -> None:
    """A guard against a parser that silently finds nothing to run."""
    readme = [b for b in blocks(ROOT / "README.md") if b.runs]
    assert {b.lang for b in readme} >= {"sh", "python"}
    assert any("fiat.governed" in b.body for b in readme)
    assert any("fiat authorize" in b.body and b.directive == "serve" for b in readme)


def test_console_blocks_run_only_their_commands() -> None:
    body = "$ fiat init \\\n    --origin example.com/log\nFiat home: .fiat\n$ fiat log vkey\nfiat.local/log+...\n"
    assert console_commands(body) == "fiat init \\\n    --origin example.com/log\nfiat log vkey\n"
