"""A throwaway PostgreSQL server on 127.0.0.1, for the test suite and ``fiat bench``.

It runs the machine's own PostgreSQL binaries (``initdb`` + ``pg_ctl``; :func:`find_bin` looks
in ``$FIAT_PG_BIN``, then ``/usr/lib/postgresql/<version>/bin``, newest first, then ``PATH``)
on a new data directory under a temporary directory, on a free port, with its socket directory
inside that temporary directory. PostgreSQL refuses to run as root, so when this process is
root the server runs as an unprivileged system user (:data:`SERVER_USER`, created with
``useradd --system`` when missing) that owns the data directory.

The server is a real one with PostgreSQL's durable defaults (``fsync``, ``synchronous_commit``
on); only ``shared_buffers`` and ``max_connections`` are set, so that several replicas' pools
fit. :meth:`PostgresServer.create_database` gives each test or run a database of its own.

Imports: the standard library and ``psycopg`` (only in :meth:`PostgresServer.create_database`).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

#: The unprivileged user a root process runs the server as.
SERVER_USER = "fiat-postgres"

#: How long ``pg_ctl`` may take to start or stop the server.
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries were found here (the message says where to get them)."""


def find_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; :class:`PostgresUnavailable` if there is none."""
    override = os.environ.get("FIAT_PG_BIN")
    candidates = [override] if override else []

    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([0-9.]+)/", path)
        return tuple(int(x) for x in m.group(1).split(".") if x) if m else ()

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on PATH: "
        "install them (Debian: apt-get install postgresql-15, or run scripts/system-deps.sh) or set FIAT_PG_BIN"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: None when this process is not root."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(SERVER_USER)
    return pw.pw_uid, pw.pw_gid


class PostgresServer:
    """One PostgreSQL server: :meth:`start` it, :meth:`create_database` per user, :meth:`stop` it."""

    def __init__(self, root: Path | None = None, *, max_connections: int = 200) -> None:
        self.bin = find_bin()
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="fiat-pg-")) if root is None else root
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log_file = self.root / "server.log"
        self.port = 0
        self.max_connections = max_connections
        self._user = _server_user()
        self._counter = 0
        self.started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs.update(user=self._user[0], group=self._user[1], extra_groups=[])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            env=env,
            cwd=str(self.root),
            **kwargs,
        )

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self._user is not None:
            os.chmod(self.root, 0o700)  # owned by the server user below; root reads it regardless
            for p in (self.root, self.sockets):
                os.chown(p, *self._user)
        if not (self.data / "PG_VERSION").exists():
            done = self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
            )
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        for _ in range(5):  # a free port can be taken between choosing it and binding it
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                f"-c max_connections={self.max_connections} -c shared_buffers=64MB"
            )
            done = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-o", options,
                "-w", "-t", str(START_TIMEOUT_S), "start",
            )  # fmt: skip
            if done.returncode == 0:
                self.started = True
                return self
            if "could not bind" not in self.log_text():
                break
        raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()}\n{self.log_text()[-2000:]}")

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "fiat") -> str:
        """A new, empty database; returns its connection string."""
        import psycopg

        self._counter += 1
        name = f"{re.sub(r'[^a-z0-9_]', '_', prefix.lower())[:40]}_{os.getpid()}_{self._counter}_{int(time.time())}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", str(START_TIMEOUT_S), "stop")
            self.started = False
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
