"""Real witnesses for tests: ``fiat witness serve`` child processes on free ports of 127.0.0.1.

:func:`start_witness` makes a witness home (``fiat witness init``, ``fiat witness add-log`` for
each log key given) and starts ``fiat witness serve --port 0``; the URL is read from the line
the server prints (``fiat witness: listening on http://127.0.0.1:PORT``) and the witness is ready
once ``GET /`` answers 200. :meth:`WitnessProc.kill` is ``kill -9``; :meth:`WitnessProc.restart`
starts it again on the same port (so a log that has its URL keeps reaching it) with the same
home, keys and state. :func:`three_witnesses` starts three, named ``witness.test/w1`` … ``w3``.

Each witness's output (stdout and stderr) goes to ``<home>-serve.log``, appended across restarts.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, Self

import httpx

from support.processes import FIAT, SERVER_START_TIMEOUT, ChildServer, cli_env, fiat_text, ok

LISTENING = re.compile(r"fiat witness: listening on (http://127\.0\.0\.1:(\d+))")


class WitnessProc(ChildServer):
    """One ``fiat witness serve`` process over a witness home."""

    def __init__(self, home: Path, name: str, *, start_timeout: float = SERVER_START_TIMEOUT) -> None:
        self.home = home
        self.name = name
        self.output = home.parent / f"{home.name}-serve.log"
        self.start_timeout = start_timeout
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.vkey = ok(fiat_text("witness", "vkey", "--home", home)).stdout.strip()
        mldsa = fiat_text("witness", "vkey", "--mldsa", "--home", home)
        self.mldsa_vkey: str | None = mldsa.stdout.strip() if mldsa.returncode == 0 else None

    @property
    def url(self) -> str:
        """The submission and monitoring prefix, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        assert self.port, "the witness has not been started"
        return f"http://127.0.0.1:{self.port}"

    def add_log(self, vkey: str, url: str | None = None) -> None:
        """``fiat witness add-log`` (a running witness picks it up on its next request)."""
        ok(fiat_text("witness", "add-log", "--home", self.home, "--vkey", vkey, *(("--url", url) if url else ())))

    def start(self) -> Self:
        """Start ``fiat witness serve`` (port 0 the first time, the same port afterwards)."""
        assert not self.running(), "the witness is already running"
        offset = len(self.output.read_bytes()) if self.output.is_file() else 0
        argv = [*FIAT, "witness", "serve", "--home", str(self.home), "--host", "127.0.0.1", "--port", str(self.port)]
        with self.output.open("ab") as sink:
            self._proc = subprocess.Popen(argv, env=cli_env(), stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"fiat witness serve exited with {self.proc.returncode}:\n{self.text()[-4000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"fiat witness serve did not come up in {self.start_timeout} s:\n{self.text()}")
            found = LISTENING.search(self.output.read_bytes()[offset:].decode("utf-8", "replace"))
            if found:
                self.port = int(found.group(2))
                try:
                    if httpx.get(self.url + "/", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9``: no shutdown at all."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def restart(self, attempts: int = 20) -> Self:
        """Start again on the same port after :meth:`kill` or :meth:`stop` (retried while the port is busy)."""
        self.kill()
        for _ in range(attempts):
            try:
                return self.start()
            except AssertionError:
                if "already in use" not in self.text():
                    raise
                time.sleep(0.25)
        raise AssertionError(f"port {self.port} stayed busy; the witness could not restart on it")


def make_witness_home(where: Path, name: str, log_vkeys: Sequence[str] = (), url: str | None = None) -> Path:
    """``fiat witness init`` + ``add-log`` for each vkey; returns the home."""
    home = where / ("witness-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-"))
    ok(fiat_text("witness", "init", "--home", home, "--name", name))
    for vkey in log_vkeys:
        ok(fiat_text("witness", "add-log", "--home", home, "--vkey", vkey, *(("--url", url) if url else ())))
    return home


def start_witness(
    tmp_path: Path, name: str, log_vkey: str | Sequence[str] | None, url: str | None = None
) -> WitnessProc:
    """A running witness named ``name`` that cosigns the log(s) of ``log_vkey`` (``url``: the log's URL)."""
    vkeys = [] if log_vkey is None else [log_vkey] if isinstance(log_vkey, str) else list(log_vkey)
    return WitnessProc(make_witness_home(tmp_path, name, vkeys, url), name).start()


def three_witnesses(
    tmp_path: Path, log_vkey: str | Sequence[str] | None, url: str | None = None, prefix: str = "witness.test/w"
) -> list[WitnessProc]:
    """Three running witnesses (``witness.test/w1``..``w3``) of the same log(s)."""
    out: list[WitnessProc] = []
    try:
        for i in (1, 2, 3):
            out.append(start_witness(tmp_path, f"{prefix}{i}", log_vkey, url))
    except BaseException:
        for w in out:
            w.stop()
        raise
    return out


@contextmanager
def running(witnesses: Sequence[WitnessProc]) -> Iterator[Sequence[WitnessProc]]:
    """Stop every witness at the end of the block."""
    try:
        yield witnesses
    finally:
        for w in witnesses:
            w.stop()


class Enrollable(Protocol):
    """A witness as the log's home registers it: a real one (:class:`WitnessProc`) or a test double."""

    name: str
    vkey: str

    @property
    def url(self) -> str: ...


def enroll(home: Path, witnesses: Sequence[Enrollable], env: dict[str, str] | None = None) -> None:
    """``fiat keys add --role witness --name N --vkey V --url U`` for each witness: the home's log
    submits its checkpoints to them (and its trust root lists them)."""
    for w in witnesses:
        ok(fiat_text("keys", "add", "--role", "witness", "--name", w.name, "--vkey", w.vkey, "--url", w.url,
                     "--home", home, env=env))  # fmt: skip
