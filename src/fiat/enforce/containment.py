"""Containment: the one place that starts a governed process, and the one that ends its whole tree.

Two modes (``runtime.containment``):

* ``namespace`` (default) — the command runs under bubblewrap (``bwrap``) in its own PID
  namespace (``--unshare-pid``) whose init dies with the guard (``--die-with-parent``), in a
  new session (``--new-session``, so it cannot inject input into the guard's terminal). The
  kernel kills every process of a PID namespace when its init exits (``pid_namespaces(7)``):
  nothing the command starts — a ``setsid`` daemon, a double fork, a ``nohup`` — survives a
  halt or the guard's death by any signal, SIGKILL included; inside, the guard's PID does not
  exist. The Fiat home (keys, admin token, database) and each ``runtime.hidden_paths`` are
  covered by an empty tmpfs (a hidden file by ``/dev/null``); each ``runtime.readonly_paths``
  is bound read-only. Everything else of the host is as it was (``--dev-bind / /``), so
  ``make``, ``python`` and ``git`` work unchanged.
* ``process`` — weaker: the command gets its own session and process group and
  ``PR_SET_PDEATHSIG(SIGKILL)``; the guard is a child subreaper (``PR_SET_CHILD_SUBREAPER``,
  ``prctl(2)``) so that orphaned descendants are re-parented to it, and a halt stops and then
  kills every descendant. It hides nothing, and if the guard is SIGKILLed, only the command
  itself dies with it.

If the configured mode cannot be had, :class:`ContainmentUnavailable` says what to install
or configure; a governed command is then never started (no silent downgrade).

May import: the standard library, ``fiat.config`` and ``fiat.errors``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fiat.config import CONTAINMENTS, Config
from fiat.errors import FiatError

NAMESPACE, PROCESS = "namespace", "process"
#: The receipt's value for a ``fiat.governed`` block that runs in the guard's own process.
IN_PROCESS = "none"

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36  # <linux/prctl.h>
_POLL = 0.02


class ContainmentUnavailable(FiatError):
    """The configured containment cannot be set up here: the command must not start."""


@functools.cache
def _prctl() -> Callable[..., int]:
    libc = ctypes.CDLL(None, use_errno=True)
    fn: Callable[..., int] = libc.prctl
    return fn


def prctl(option: int, value: int) -> None:
    if _prctl()(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def become_subreaper() -> None:
    """Orphaned descendants of this process are re-parented to it, not to init (``prctl(2)``)."""
    prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies (and now, if that already happened)."""
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(137)


# -- the process tree ------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, start time) of ``pid`` from ``/proc/PID/stat`` (``proc(5)``), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None  # a zombie runs nothing
    return int(fields[1]), fields[19]


def _table() -> dict[int, tuple[int, str]]:
    """Every process's (ppid, start time): the fallback where ``/proc/PID/task/TID/children`` is absent."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                table[int(name)] = st
    return table


def _has_children_files() -> bool:
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


_CHILDREN_FILES = _has_children_files()


def children(pid: int) -> list[int]:
    """The children of ``pid``, from each of its threads' ``children`` file (``proc(5)``).

    A child belongs to the thread that forked it (or, for an orphan, the thread of the
    subreaper it was given to), so every thread's file is read. Reading costs a few files
    per process of the tree instead of a scan of every process on the machine, which keeps
    a halt's sweeps short on a busy host; where the kernel lacks the files the whole
    process table is read instead.
    """
    if not _CHILDREN_FILES:
        return [p for p, (pp, _) in _table().items() if pp == pid]
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue  # the thread ended meanwhile
    return found


def descendants(roots: Iterable[int], exclude: Iterable[int] = ()) -> dict[int, str]:
    """Every live descendant of ``roots`` (pid -> start time), not entering ``exclude``."""
    skip = set(exclude)
    out: dict[int, str] = {}
    todo = [c for r in roots for c in children(r)]
    while todo:
        pid = todo.pop()
        if pid in out or pid in skip:
            continue
        st = _stat(pid)
        if st is None:
            continue  # gone (or a zombie) meanwhile
        out[pid] = st[1]
        todo.extend(children(pid))
    return out


def _signal(pids: dict[int, str], sig: int) -> None:
    for pid, started in pids.items():
        st = _stat(pid)
        if st is not None and st[1] == started:  # the same process, not a reused pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _reap(pids: Iterable[int]) -> None:
    """Collect the exit status of those of ``pids`` that became this process's children."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


class Tree:
    """The processes of one governed execution, found from ``roots`` in ``/proc``.

    Every pid seen is remembered (with its start time), so that a process whose parent died
    during a grace period is still ended."""

    def __init__(
        self,
        roots: Callable[[], list[int]],
        *,
        exclude: Callable[[], list[int]] = list,
        include_roots: bool = True,
        keep: Iterable[int] = (),
    ) -> None:
        self._roots, self._exclude, self._include_roots = roots, exclude, include_roots
        self.keep = set(keep)  # children whose exit status someone else collects
        self.seen: dict[int, str] = {}

    def members(self) -> dict[int, str]:
        roots = self._roots()
        found = descendants(roots, self._exclude())
        for pid in roots if self._include_roots else ():
            st = _stat(pid)
            if st is not None:
                found[pid] = st[1]
        self.seen.update(found)
        return found

    def alive(self) -> dict[int, str]:
        self.members()
        return {p: s for p, s in self.seen.items() if (st := _stat(p)) is not None and st[1] == s}

    def terminate(self, skip: Iterable[int] = ()) -> None:
        gone = set(skip)
        _signal({p: s for p, s in self.members().items() if p not in gone}, signal.SIGTERM)

    def kill(self) -> None:
        """Freeze every member (SIGSTOP, until no new one appears), then SIGKILL them all."""
        stopped: dict[int, str] = {}
        for _ in range(100):
            new = {p: s for p, s in self.alive().items() if p not in stopped}
            if not new:
                break
            _signal(new, signal.SIGSTOP)
            stopped.update(new)
        _signal(stopped, signal.SIGKILL)
        deadline, delay = time.monotonic() + 2.0, 0.001
        while time.monotonic() < deadline:
            _reap(p for p in self.seen if p not in self.keep)
            if not self.alive():
                break
            time.sleep(delay)  # a killed process is usually gone within a millisecond or two
            delay = min(delay * 2, _POLL)


# -- containment ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Containment:
    """How governed processes are started: the mode and what the sandbox hides."""

    mode: str = NAMESPACE
    bwrap: str = "bwrap"
    hidden: tuple[str, ...] = ()
    readonly: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: Config) -> Containment:
        db = str(cfg.database_path.resolve())
        hidden = [str(cfg.home.resolve()), db, db + "-wal", db + "-shm", *cfg.runtime.hidden_paths]
        return cls(
            mode=cfg.runtime.containment,
            bwrap=cfg.runtime.bwrap_path,
            hidden=tuple(hidden),
            readonly=tuple(cfg.runtime.readonly_paths),
        )

    def _bwrap_binary(self) -> str:
        found = shutil.which(self.bwrap)
        if found is None:
            raise ContainmentUnavailable(
                f'runtime.containment = "namespace" needs bubblewrap, and {self.bwrap!r} was not found; '
                "install it (Debian/Ubuntu: apt-get install bubblewrap), point runtime.bwrap_path at it, "
                'or set runtime.containment = "process" (weaker: see README, Containment)'
            )
        return found

    def bwrap_argv(self, argv: Sequence[str], cwd: str) -> list[str]:
        """The ``bwrap`` command line that runs ``argv`` in ``cwd`` inside the sandbox."""
        args = [self._bwrap_binary(), "--unshare-pid", "--die-with-parent", "--new-session"]
        args += ["--dev-bind", "/", "/", "--proc", "/proc"]
        for p in self.readonly:
            args += ["--ro-bind", p, p]
        dirs = [Path(p) for p in self.hidden if os.path.isdir(p)]
        for p in self.hidden:
            if any(Path(p) != d and Path(p).is_relative_to(d) for d in dirs):
                continue  # already under an empty tmpfs
            if os.path.isdir(p):
                args += ["--tmpfs", p]
            elif os.path.lexists(p):
                args += ["--ro-bind", "/dev/null", p]
        return [*args, "--chdir", cwd, "--", *argv]

    def check(self, cwd: str | None = None) -> None:
        """Raise :class:`ContainmentUnavailable` unless the sandbox can be set up (tried once)."""
        if self.mode == PROCESS:
            try:
                _prctl()
            except (OSError, AttributeError) as exc:
                raise ContainmentUnavailable(f'runtime.containment = "process" needs prctl(2): {exc}') from exc
            return
        if self.mode != NAMESPACE:
            raise ContainmentUnavailable(f"runtime.containment {self.mode!r} is not one of {', '.join(CONTAINMENTS)}")
        if cwd is not None:
            here = Path(cwd).resolve()
            for p in self.hidden:
                if os.path.isdir(p) and here.is_relative_to(Path(p)):
                    raise ContainmentUnavailable(
                        f"the working directory {cwd} is inside {p}, which the sandbox hides; run from elsewhere"
                    )
        _probe(tuple(self.bwrap_argv(["true"], "/")))

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        stdout: int | None = None,
        stdin: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Contained:
        """Start ``argv`` contained. ``OSError`` (ENOENT, EACCES) if the command cannot run.

        ``stdin``/``stdout``: as for :class:`subprocess.Popen` (``subprocess.PIPE`` for a command
        spoken to over its standard streams, e.g. an MCP server); ``env``: its environment
        (default: the guard's)."""
        if self.mode == NAMESPACE:
            _resolve(argv[0], cwd)  # a missing command is 127, as without the sandbox
            proc = subprocess.Popen(
                self.bwrap_argv(argv, cwd), cwd=cwd, start_new_session=True, stdout=stdout, stdin=stdin, env=env
            )
            return Contained(proc, self.mode)
        guard = os.getpid()
        become_subreaper()
        before = list(descendants([guard]))
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            start_new_session=True,
            stdout=stdout,
            stdin=stdin,
            env=env,
            preexec_fn=lambda: die_with_parent(guard),
        )
        return Contained(proc, self.mode, before)


@functools.cache
def _probe(args: tuple[str, ...]) -> None:
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContainmentUnavailable(f"bubblewrap ({args[0]}) could not be run: {exc}") from exc
    if p.returncode != 0:
        raise ContainmentUnavailable(
            f"bubblewrap ({args[0]}) could not set up the sandbox: {p.stderr.strip() or f'exit {p.returncode}'}; "
            "it needs permission to create PID and mount namespaces (root, or unprivileged user namespaces "
            'enabled), or set runtime.containment = "process" (weaker: see README, Containment)'
        )


def _resolve(command: str, cwd: str) -> None:
    if "/" in command:
        path = os.path.join(cwd, command)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), command)
    elif shutil.which(command) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)


class _ExitWatch:
    """Wakes the moment ``pid`` exits (a pidfd, ``pidfd_open(2)``), else after the timeout.

    A halt returns as soon as the command is gone instead of at the next poll tick; where
    pidfds are unavailable it sleeps the timeout, as a poll would.
    """

    def __init__(self, pid: int) -> None:
        self._poll: select.poll | None = None
        self._fd = -1
        with contextlib.suppress(OSError, AttributeError):
            self._fd = os.pidfd_open(pid)
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)

    def wait(self, timeout: float) -> None:
        if self._poll is None:
            time.sleep(timeout)
        else:
            self._poll.poll(max(0, int(timeout * 1000)))

    def __enter__(self) -> _ExitWatch:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)


@dataclass
class Contained:
    """A started governed process and its whole tree."""

    proc: subprocess.Popen[bytes]
    mode: str
    foreign: list[int] = field(default_factory=list)  # the guard's children before it started

    def __post_init__(self) -> None:
        pid = self.proc.pid
        if self.mode == NAMESPACE:
            # bwrap and, below it, the namespace's init and everything in the namespace. Once bwrap
            # is reaped its pid may be reused: it is then no root.
            self.tree = Tree(lambda: [pid] if self.proc.returncode is None else [], keep=[pid])
        else:
            # The guard is the subreaper: orphans of the tree are its children.
            guard = os.getpid()
            self.tree = Tree(lambda: [guard], exclude=lambda: self.foreign, include_roots=False, keep=[pid])
        st = _stat(pid)
        if st is not None:
            self.tree.seen[pid] = st[1]

    def terminate(self) -> None:
        """SIGTERM to every process of the tree, now (a :meth:`halt` follows)."""
        if self.mode == NAMESPACE:
            inits = children(self.proc.pid)
            self.tree.terminate(skip=[self.proc.pid, *inits])  # the namespace init ends with its command
        else:
            self.tree.terminate()

    def halt(self, grace: float) -> None:
        """SIGTERM to every process of the tree, up to ``grace`` seconds, then SIGKILL to all."""
        self.terminate()
        deadline = time.monotonic() + grace
        with _ExitWatch(self.proc.pid) as exited:
            while (left := deadline - time.monotonic()) > 0 and self.proc.poll() is None:
                self.tree.members()
                exited.wait(min(_POLL, left))
        # The grace is every process's, not the command's alone: a descendant still ending —
        # a nested guard signing and uploading its own receipt in a lineage cascade — gets the
        # rest of it before the SIGKILL (in a PID namespace the kernel ends them with its init).
        delay = 0.001
        while self.mode != NAMESPACE and (left := deadline - time.monotonic()) > 0:
            _reap(p for p in self.tree.seen if p not in self.tree.keep)
            if not self.tree.alive():
                break
            time.sleep(min(delay, left))
            delay = min(delay * 2, _POLL)
        self.sweep()

    def sweep(self) -> None:
        """Nothing of the tree outlives this call (used after a halt and after the command ended)."""
        if self.mode == NAMESPACE and self.proc.poll() is None:
            # SIGKILL to the namespace's init ends every process in it; bwrap then exits.
            for pid in children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.tree.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self) -> int:
        return self.proc.wait()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode
