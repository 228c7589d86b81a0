"""The shared SQLite helper: connections, the cross-process writer lock, the schema and its version.

Every store of this backend opens the same file through :class:`SQLiteDatabase`
(each with its own durability setting) and :func:`open_schema`, which creates the
tables of ``schema.sql`` and checks the schema version recorded in the file
(``PRAGMA user_version``). :class:`RowStager` writes the rows a log batch stages
(:meth:`fiat.persist.protocols.LogWriter.stage`), one ``executemany`` per table.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import assert_never

from fiat.errors import StorageError
from fiat.persist.records import ApprovalRecord, EvidenceLink, PermitRecord, StagedRow

#: The layout of ``schema.sql``, recorded in ``PRAGMA user_version``. 0 is a database written
#: before versions were recorded (the same layout as version 1) or a new, empty file.
#: 1: the layout of the first recorded version; 2: approvals record the runtime that asked;
#: 3: the DPoP replay cache (``dpop_proofs``), so a replay is refused across restarts and processes;
#: 4: renewal chains (``renewals``: one successor per predecessor) and an index on ``permits.parent``;
#: 5: ``permits.iat`` (when each permit was issued, read back from its log entry for older rows)
#: and the indexes that search permits by time and by principal and time;
#: 6: ``log_witnessed``, the newest checkpoint the witness quorum cosigned (created by ``schema.sql``).
SCHEMA_VERSION = 6


def _schema_statements() -> list[str]:
    text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    lines = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in lines.split(";") if s.strip()]


class _WriteLock:
    """One writer at a time per database file, across threads and processes.

    SQLite's own busy handler polls with sleeps of 1 to 100 ms, which serializes
    several processes appending to one log at a few hundred batches a second. Writers
    take an advisory ``flock`` on a companion file instead, retried 50 µs to 1 ms apart
    until ``storage.busy_timeout_ms``; a thread lock in front of it keeps the threads of
    one process out of each other's way (``flock`` belongs to the open file, which they share).
    """

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + "-writer.lock")
        self.thread_lock = threading.Lock()
        self.fd: int | None = None
        self.pid = os.getpid()  # a forked child opens its own lock file

    @staticmethod
    def for_database(path: Path) -> _WriteLock:
        key = str(path.resolve())
        with _WRITE_LOCKS_GUARD:
            lock = _WRITE_LOCKS.get(key)
            if lock is None or lock.pid != os.getpid():
                lock = _WRITE_LOCKS[key] = _WriteLock(path)
            return lock

    @contextmanager
    def held(self, timeout_s: float) -> Iterator[None]:
        """Hold the lock; waiting longer than ``timeout_s`` for another writer fails (closed)."""
        deadline = time.monotonic() + timeout_s
        if not self.thread_lock.acquire(timeout=max(timeout_s, 0.0)):
            raise StorageError(self._busy(timeout_s))
        try:
            if self.fd is None:
                try:
                    self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except OSError as exc:
                    raise StorageError(f"cannot open the writer lock {self.path}: {exc}") from exc
            delay = 50e-6
            while True:  # non-blocking tries, 50 µs to 1 ms apart, so the wait stays bounded
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StorageError(self._busy(timeout_s)) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.001)
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.thread_lock.release()

    def _busy(self, timeout_s: float) -> str:
        return (
            f"another writer held the lock {self.path} for more than {timeout_s * 1000:.0f} ms "
            "(storage.busy_timeout_ms); is a stuck process holding it? Retry, or raise the timeout"
        )


_WRITE_LOCKS: dict[str, _WriteLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


class SQLiteDatabase:
    """Thread-local connections to one SQLite file in WAL mode, with one durability setting."""

    def __init__(self, path: str | Path, synchronous: str = "FULL", busy_timeout_ms: int = 30_000) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise StorageError(f"storage.synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self._sync = synchronous.upper()
        self._busy = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._writer = _WriteLock.for_database(self.path)

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StorageError("the database is closed")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_database_files(self.path)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self._busy / 1000)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._sync}")
            conn.execute(f"PRAGMA busy_timeout={self._busy}")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the database {self.path}: {exc}") from exc
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any error."""
        conn = self.conn()
        with self._writer.held(self._busy / 1000):
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot lock the database {self.path} for writing: {exc}") from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise StorageError(f"cannot commit to the database {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close every connection. Idempotent; the database cannot be used afterwards."""
        with self._lock:
            self._closed = True
            for conn in self._all:
                with suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()


def private_database_files(path: Path) -> None:
    """Create the database file 0600 if absent and tighten it, ``-wal`` and ``-shm`` to 0600.

    SQLite creates the WAL and shared-memory files with the mode of the database file, so a
    database created 0600 keeps all three private whatever the umask; a file an older Fiat
    created 0644 (or one widened since) is tightened here, silently, when it is ours.

    An existing database file is never opened here: closing any descriptor of a file drops
    every POSIX lock this process holds on it, SQLite's included (SQLite's "How To Corrupt"
    §2.2). A new one is created under a temporary name and linked into place.
    """
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.close(fd)  # before the file has its name: no SQLite connection can hold it
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another connection or process created it meanwhile
        finally:
            tmp.unlink(missing_ok=True)
    uid = os.getuid()
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if st.st_mode & 0o077 and st.st_uid == uid:
            os.chmod(p, 0o600)


def _user_version(conn: sqlite3.Connection, path: Path) -> int:
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path} is not a usable Fiat database: {exc}") from exc


def _check_known(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} has schema version {version}, newer than the version {SCHEMA_VERSION} this Fiat knows: "
            "a newer Fiat wrote it. Upgrade Fiat to open it, or restore a backup that this version wrote"
        )
    if version < 0:
        raise StorageError(f"{path} records schema version {version}: it is not a Fiat database")


def open_schema(db: SQLiteDatabase) -> None:
    """Make sure the file holds Fiat's schema at :data:`SCHEMA_VERSION`; refuse a version it does not know.

    A new file gets the tables of ``schema.sql``. A file written before versions were
    recorded (``user_version`` 0, today's layout) gets any table or column it lacks and is
    stamped with the version. A newer version fails with a :class:`StorageError` that says
    what to do; nothing is written to it.
    """
    conn = db.conn()
    version = _user_version(conn, db.path)
    if version == SCHEMA_VERSION:
        return
    _check_known(version, db.path)
    try:
        with db.transaction() as conn:
            version = _user_version(conn, db.path)  # another process may have stamped it meanwhile
            if version == SCHEMA_VERSION:
                return
            _check_known(version, db.path)
            for statement in _schema_statements():
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(revocations)")}
            if "expires" not in columns:  # homes created before revocations could expire
                conn.execute("ALTER TABLE revocations ADD COLUMN expires REAL")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(approvals)")}
            if "runtime" not in columns:  # schema 2: the runtime that asked for an approval
                conn.execute("ALTER TABLE approvals ADD COLUMN runtime TEXT")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(permits)")}
            if "iat" not in columns:  # schema 5: when each permit was issued
                conn.execute("ALTER TABLE permits ADD COLUMN iat REAL")
            _backfill_iat(conn)
            for statement in PERMIT_TIME_INDEXES:
                conn.execute(statement)
            row = conn.execute("SELECT schema_version FROM log_meta WHERE id = 1").fetchone()
            if row[0] != 1:
                raise StorageError(f"{db.path} has log schema version {row[0]}; this Fiat reads version 1")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{db.path} is not a usable Fiat database: {exc}") from exc


#: Schema 5's indexes on ``permits.iat`` (made once the column exists; see ``schema.sql``).
PERMIT_TIME_INDEXES = (
    "CREATE INDEX IF NOT EXISTS permits_iat ON permits (iat)",
    "CREATE INDEX IF NOT EXISTS permits_principal_iat ON permits (principal, iat)",
)


def _token_iat(entry: bytes) -> float | None:
    """The ``iat`` claim of a logged permit (a compact JWS, RFC 7515 §7.1), or None.

    The signature is not checked: the migration only copies a time out of the log's own entry
    into an index column, and ``fiat verify`` checks the permit itself from the log.
    """
    try:
        payload = entry.decode("ascii").split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (UnicodeDecodeError, IndexError, binascii.Error, ValueError):
        return None
    iat = claims.get("iat") if isinstance(claims, dict) else None
    return float(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else None


def _backfill_iat(conn: sqlite3.Connection) -> None:
    """Fill ``permits.iat`` of rows written before schema 5 from each permit's log entry."""
    rows = conn.execute(
        "SELECT p.jti, e.data FROM permits p JOIN log_entries e ON e.idx = p.log_index WHERE p.iat IS NULL"
    ).fetchall()
    updates = [(iat, jti) for jti, data in rows if (iat := _token_iat(bytes(data))) is not None]
    conn.executemany("UPDATE permits SET iat = ? WHERE jti = ?", updates)


INSERT_PERMIT = (
    "INSERT OR IGNORE INTO permits (jti, parent, request, log_index, principal, runtime, depth, exp, iat)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_LINK = "INSERT OR IGNORE INTO evidence (jti, kind, log_index) VALUES (?, ?, ?)"
# OR IGNORE: a pending decision naming an approval already open stages its row again (see
# fiat.authorize.outcomes.Outcomes.pending); the first committed row stands.
INSERT_APPROVAL = (
    "INSERT OR IGNORE INTO approvals (id, action_digest, request, policy_group, requested_at, expires_at, status,"
    " approver, statement_digest, log_index, runtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class RowStager:
    """Rows staged in one transaction, written together before it commits (one ``executemany`` per table)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._rows: dict[str, list[tuple[object, ...]]] = {}

    def stage(self, row: StagedRow) -> None:
        match row:
            case EvidenceLink():
                self._rows.setdefault(INSERT_LINK, []).append((row.jti, row.kind, row.log_index))
            case PermitRecord():
                p = row
                values: tuple[object, ...] = (
                    p.jti,
                    p.parent,
                    p.request,
                    p.log_index,
                    p.principal,
                    p.runtime,
                    p.depth,
                    p.exp,
                    p.iat,
                )
                self._rows.setdefault(INSERT_PERMIT, []).append(values)
            case ApprovalRecord():
                a = row
                values = (
                    a.id,
                    a.action_digest,
                    a.request,
                    a.group,
                    a.requested_at,
                    a.expires_at,
                    a.status,
                    a.approver,
                    a.statement_digest,
                    a.log_index,
                    a.runtime,
                )
                self._rows.setdefault(INSERT_APPROVAL, []).append(values)
            case _:
                assert_never(row)

    def flush(self) -> None:
        for sql, rows in self._rows.items():
            self._conn.executemany(sql, rows)
        self._rows.clear()
