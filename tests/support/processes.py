"""The ``fiat`` command line in child processes, and ``fiat serve`` / ``fiat log serve`` on 127.0.0.1.

Every test that drives the real CLI goes through :func:`fiat` (bytes) or :func:`fiat_text`
(text): ``python -m fiat.cli.main ARGS`` with :func:`cli_env` (no ``FIAT_*`` variable of
the test runner leaks in, no colour, a wide terminal), a timeout, and ``check=`` to fail
on a non-zero exit. :class:`FiatServer` is the one server fixture: a real ``fiat serve``
(or ``fiat log serve``) on a free port, ready once ``/healthz`` (or the log's
``/checkpoint``) answers 200, its output in a file, stopped with SIGTERM then SIGKILL.
"""

from __future__ import annotations

import importlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, AnyStr, Self

import httpx
import pytest

FIAT = (sys.executable, "-m", "fiat.cli.main")
FIAT_SRC = str(
    Path(str(importlib.import_module("fiat").__file__)).resolve().parents[1]
)  # not `import fiat`: see fiat()
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_ERROR = 0, 1, 2, 3
CLI_TIMEOUT = 120.0
SERVER_START_TIMEOUT = 30.0


def cli_env(extra: Mapping[str, str] | None = None, /, **more: str) -> dict[str, str]:
    """The runner's environment without ``FIAT_*`` and colour settings, plus ``extra`` and ``more``.

    ``PYTHONPATH`` starts with the ``src`` of the ``fiat`` this process imported, so a child
    runs the same code as the test that started it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIAT_")}
    for k in ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS"):
        env.pop(k, None)
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "250", "PYTHONDONTWRITEBYTECODE": "1"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (FIAT_SRC, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    env.update(more)
    return env


def _run(
    args: tuple[str | Path, ...],
    *,
    text: bool,
    env: Mapping[str, str] | None,
    stdin: bytes | str | None,
    cwd: Path | None,
    timeout: float,
    check: bool,
) -> subprocess.CompletedProcess[Any]:
    proc: subprocess.CompletedProcess[Any] = subprocess.run(
        [*FIAT, *map(str, args)],
        cwd=cwd,
        env=cli_env(env),
        input=stdin,
        capture_output=True,
        text=text,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fiat {' '.join(map(str, args))}: {show(proc)}")
    return proc


def fiat(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT,
    check: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``fiat ARGS`` (``env`` adds to :func:`cli_env`); stdout and stderr are bytes.

    A non-zero exit is returned, not raised, unless ``check`` is true.
    """
    return _run(args, text=False, env=env, stdin=stdin, cwd=cwd, timeout=timeout, check=check)


def fiat_text(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """:func:`fiat` with stdout and stderr decoded as text."""
    return _run(args, text=True, env=env, stdin=stdin, cwd=cwd, timeout=timeout, check=check)


def _decoded(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data or ""


def show(p: subprocess.CompletedProcess[AnyStr]) -> str:
    """A failed command for an assertion message: exit code, stdout, stderr."""
    return f"exit {p.returncode}\nstdout:\n{_decoded(p.stdout)[-4000:]}\nstderr:\n{_decoded(p.stderr)[-4000:]}"


def ok(p: subprocess.CompletedProcess[AnyStr]) -> subprocess.CompletedProcess[AnyStr]:
    """``p`` itself, after asserting it exited 0."""
    assert p.returncode == EXIT_OK, f"{p.args}: {show(p)}"
    return p


def one_line(text: str | bytes) -> str:
    """Whitespace collapsed, so a wrapped line cannot break a substring check."""
    return " ".join(_decoded(text).split())


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChildServer:
    """What every test server child shares: its process (``_proc``, set by the subclass's ``start``),
    whether it runs, its output, a stop (SIGTERM, then SIGKILL after 10 s) and use as a context manager."""

    _proc: subprocess.Popen[bytes] | None = None
    output: Path

    def start(self) -> Self:
        raise NotImplementedError

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The child process (once started)."""
        assert self._proc is not None, f"the {type(self).__name__} was not started"
        return self._proc

    def text(self) -> str:
        """What the server wrote so far (stdout and stderr)."""
        return self.output.read_text(encoding="utf-8", errors="replace") if self.output.is_file() else ""

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self if self.running() else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class FiatServer(ChildServer):
    """A real ``fiat serve`` (or, with ``log=True``, ``fiat log serve``) child process on 127.0.0.1.

    ``home`` is passed as ``--home`` (None: none is, and the server finds ``./.fiat`` in ``cwd``); ``env`` adds to
    :func:`cli_env`. Without ``port`` it binds ``--host 127.0.0.1 --port P`` on a free port
    and, should another process take that port first, tries another (``attempts``); with
    ``port`` the command gets no address flags (the environment or ``fiat.toml`` gives it).
    The output goes to ``output`` (default: next to the home), appended across restarts.
    :meth:`start` returns once ``url/healthz`` (``url/checkpoint`` for the log) answers 200.
    """

    def __init__(
        self,
        home: Path | None,
        *,
        log: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        output: Path | None = None,
        start_timeout: float = SERVER_START_TIMEOUT,
        tls_ca: Path | None = None,
    ) -> None:
        self._home_flag = home is not None
        self.home: Path = home if home is not None else (cwd or Path.cwd()) / ".fiat"
        self.is_log = log
        self.env = cli_env(env)
        self.cwd = cwd
        self.fixed_port = port
        self.port = port or 0
        self._output = output
        self.output = output or Path()
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        #: With ``tls_ca`` the server serves HTTPS (``server.tls_cert``/``tls_key`` in ``env`` or
        #: the home), ``url`` is ``https://`` and readiness is checked against that CA bundle.
        self.tls_ca = tls_ca

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_ca is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}" + ("/log" if self.is_log else "")

    def _output_for(self, port: int) -> Path:
        if self._output is not None:
            return self._output
        return self.home.parent / f"{self.home.name}-serve-{port}.log"

    def _argv(self) -> list[str]:
        argv = [*FIAT, *(("log", "serve") if self.is_log else ("serve",))]
        if self._home_flag:
            argv += ["--home", str(self.home)]
        if self.fixed_port is None:
            argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        return argv

    def exited(self) -> bool:
        """True once a started server has ended (of itself or by :meth:`stop`)."""
        return self._proc is not None and self._proc.poll() is not None

    def start(self, attempts: int = 3) -> Self:
        ready = "/checkpoint" if self.is_log else "/healthz"
        for _ in range(attempts if self.fixed_port is None else 1):
            self.port = self.fixed_port or free_port()
            self.output = self._output_for(self.port)
            with self.output.open("ab") as sink:
                self._proc = subprocess.Popen(
                    self._argv(), cwd=self.cwd, env=self.env, stdout=sink, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + self.start_timeout
            while self.proc.poll() is None:
                try:
                    verify: ssl.SSLContext | bool = (
                        True if self.tls_ca is None else ssl.create_default_context(cafile=str(self.tls_ca))
                    )
                    if httpx.get(self.url + ready, timeout=2, verify=verify).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(
                        f"{' '.join(self._argv()[2:])} did not answer {self.url}{ready} "
                        f"within {self.start_timeout} s:\n{self.text()[-4000:]}"
                    )
                time.sleep(0.05)
            # It exited: perhaps the port was taken in between; try another.
        raise AssertionError(f"{' '.join(self._argv()[2:])} exited with {self.proc.returncode}:\n{self.text()[-4000:]}")


def err(p: subprocess.CompletedProcess[AnyStr]) -> str:
    """stderr with whitespace collapsed, so a wrapped line cannot break a substring check."""
    return one_line(p.stderr)


@contextmanager
def clean_env() -> Iterator[None]:
    """In-process reads of a home must not see the test runner's own ``FIAT_*`` settings."""
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith("FIAT_"):
                mp.delenv(k)
        yield
