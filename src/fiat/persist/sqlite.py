"""SQLite (WAL) implementation of :class:`fiat.persist.store.LogStore` — the embedded default."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from fiat.errors import StorageError
from fiat.persist.store import ApprovalRecord, PermitRecord

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    tree_size INTEGER NOT NULL,
    checkpoint BLOB
);
CREATE TABLE IF NOT EXISTS log_entries (
    idx INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_tiles (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
INSERT OR IGNORE INTO log_meta (id, schema_version, tree_size, checkpoint) VALUES (1, 1, 0, NULL);
"""


class _Writer:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._deferred: dict[str, list[tuple[object, ...]]] = {}

    def defer(self, sql: str, row: tuple[object, ...]) -> None:
        """Queue a row for ``sql``; the rows of a batch go in with one ``executemany`` each before commit."""
        self._deferred.setdefault(sql, []).append(row)

    def flush(self) -> None:
        for sql, rows in self._deferred.items():
            self._conn.executemany(sql, rows)
        self._deferred.clear()

    def tree_size(self) -> int:
        row = self._conn.execute("SELECT tree_size FROM log_meta WHERE id = 1").fetchone()
        return int(row[0])

    def read_tile(self, level: int, index: int) -> bytes | None:
        row = self._conn.execute("SELECT data FROM log_tiles WHERE level = ? AND idx = ?", (level, index)).fetchone()
        return None if row is None else bytes(row[0])

    def write(
        self,
        start: int,
        entries: Sequence[bytes],
        tiles: Mapping[tuple[int, int], bytes],
        checkpoint: bytes,
    ) -> None:
        c = self._conn
        c.executemany(
            "INSERT INTO log_entries (idx, data) VALUES (?, ?)",
            ((start + i, e) for i, e in enumerate(entries)),
        )
        c.executemany(
            "INSERT OR REPLACE INTO log_tiles (level, idx, data) VALUES (?, ?, ?)",
            ((lvl, idx, data) for (lvl, idx), data in tiles.items()),
        )
        c.execute(
            "UPDATE log_meta SET tree_size = ?, checkpoint = ? WHERE id = 1",
            (start + len(entries), checkpoint),
        )


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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self._busy / 1000)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._sync}")
            conn.execute(f"PRAGMA busy_timeout={self._busy}")
        except sqlite3.Error as exc:
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
        with self._lock:
            self._closed = True
            for conn in self._all:
                with suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()


class SQLiteLogStore:
    """One SQLite file in WAL mode; a connection per thread; one writer at a time across processes.

    ``synchronous`` is ``FULL`` by default: a commit is on disk (WAL fsynced)
    before an append is acknowledged. ``NORMAL`` survives a crash of the
    process (``kill -9``) but not of the machine.
    """

    def __init__(self, path: str | Path, synchronous: str = "FULL", busy_timeout_ms: int = 30_000) -> None:
        self.db = SQLiteDatabase(path, synchronous, busy_timeout_ms)
        self.path = self.db.path
        conn = self._conn()
        try:
            with conn:
                conn.executescript(_SCHEMA)
            row = conn.execute("SELECT schema_version FROM log_meta WHERE id = 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path} is not a usable Fiat log database: {exc}") from exc
        if row[0] != SCHEMA_VERSION:
            raise StorageError(f"{self.path} has log schema version {row[0]}; this Fiat reads version {SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        return self.db.conn()

    @contextmanager
    def writer(self) -> Iterator[_Writer]:
        with self.db.transaction() as conn:
            w = _Writer(conn)
            yield w
            w.flush()  # deferred sidecar rows commit with the batch

    def tree_size(self) -> int:
        row = self._conn().execute("SELECT tree_size FROM log_meta WHERE id = 1").fetchone()
        return int(row[0])

    def checkpoint(self) -> bytes | None:
        row = self._conn().execute("SELECT checkpoint FROM log_meta WHERE id = 1").fetchone()
        return None if row[0] is None else bytes(row[0])

    def read_tile(self, level: int, index: int) -> bytes | None:
        row = self._conn().execute("SELECT data FROM log_tiles WHERE level = ? AND idx = ?", (level, index)).fetchone()
        return None if row is None else bytes(row[0])

    def read_entries(self, start: int, end: int) -> list[bytes]:
        rows = (
            self._conn()
            .execute("SELECT data FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end))
            .fetchall()
        )
        return [bytes(r[0]) for r in rows]

    def close(self) -> None:
        self.db.close()


_INSERT_PERMIT = (
    "INSERT OR IGNORE INTO permits (jti, parent, request, log_index, principal, runtime, depth, exp)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVIDENCE = "INSERT OR IGNORE INTO evidence (jti, kind, log_index) VALUES (?, ?, ?)"


def _permit_row(p: PermitRecord) -> tuple[object, ...]:
    return (p.jti, p.parent, p.request, p.log_index, p.principal, p.runtime, p.depth, p.exp)


_EVIDENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS evidence (
    jti TEXT NOT NULL,
    kind TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    PRIMARY KEY (jti, log_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS permits (
    jti TEXT PRIMARY KEY,
    parent TEXT,
    request BLOB NOT NULL,
    log_index INTEGER NOT NULL,
    principal TEXT NOT NULL,
    runtime TEXT NOT NULL,
    depth INTEGER NOT NULL,
    exp REAL NOT NULL
);
"""


class SQLiteEvidenceIndex:
    """:class:`fiat.persist.store.EvidenceIndex` in the log's SQLite file.

    Rows about new entries are written inside the log batch's own transaction
    (``record_in``, durable with the entries). Its own connection (``NORMAL``)
    only serves reads and later links (``record``), which merely point into the
    log: the log itself is the evidence.
    """

    def __init__(self, path: str | Path, busy_timeout_ms: int = 30_000) -> None:
        self.db = SQLiteDatabase(path, "NORMAL", busy_timeout_ms)
        with self.db.transaction() as conn:
            for statement in _EVIDENCE_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def record(self, permit: PermitRecord | None, links: Sequence[tuple[str, str, int]]) -> None:
        with self.db.transaction() as conn:
            writer = _Writer(conn)
            self.record_in(writer, permit, links)
            writer.flush()

    def record_in(self, writer: object, permit: PermitRecord | None, links: Sequence[tuple[str, str, int]]) -> None:
        """Record inside a log batch's transaction (atomic with the entries it points at).

        The rows are deferred to the end of the batch, so a batch of decisions costs one
        ``executemany`` per table rather than several statements per decision.
        """
        if not isinstance(writer, _Writer):
            raise StorageError("the evidence index needs a SQLite log writer")
        if permit is not None:
            writer.defer(_INSERT_PERMIT, _permit_row(permit))
            writer.defer(_INSERT_EVIDENCE, (permit.jti, "permit", permit.log_index))
        for link in links:
            writer.defer(_INSERT_EVIDENCE, link)

    def entries(self, jti: str) -> list[tuple[str, int]]:
        rows = (
            self.db.conn()
            .execute("SELECT kind, log_index FROM evidence WHERE jti = ? ORDER BY log_index", (jti,))
            .fetchall()
        )
        return [(str(k), int(i)) for k, i in rows]

    def permit(self, jti: str) -> PermitRecord | None:
        row = (
            self.db.conn()
            .execute(
                "SELECT jti, parent, request, log_index, principal, runtime, depth, exp FROM permits WHERE jti = ?",
                (jti,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return PermitRecord(row[0], row[1], bytes(row[2]), int(row[3]), row[4], row[5], int(row[6]), float(row[7]))

    def close(self) -> None:
        self.db.close()


_AUTHORITY_SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_versions (
    version INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    files TEXT NOT NULL,
    published_at REAL NOT NULL,
    log_index INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    action_digest TEXT NOT NULL,
    request BLOB NOT NULL,
    policy_group TEXT NOT NULL,
    requested_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL,
    approver TEXT,
    statement_digest TEXT,
    log_index INTEGER
);
CREATE TABLE IF NOT EXISTS revocations (
    epoch INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    log_index INTEGER NOT NULL,
    expires REAL
);
CREATE TABLE IF NOT EXISTS consumed_permits (
    jti TEXT PRIMARY KEY,
    at REAL NOT NULL
);
"""


class SQLiteAuthorityStore:
    """The authority's durable state: policy versions, approvals, revocations, permit use, DPoP replay."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 30_000) -> None:
        self.db = SQLiteDatabase(path, "FULL", busy_timeout_ms)
        with self.db.transaction() as conn:
            for statement in _AUTHORITY_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(revocations)")}
            if "expires" not in columns:  # homes created before revocations could expire
                conn.execute("ALTER TABLE revocations ADD COLUMN expires REAL")

    def _c(self) -> sqlite3.Connection:
        return self.db.conn()

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute(sql, args)
        return cur.rowcount

    def close(self) -> None:
        self.db.close()

    # policy
    def latest_policy_version(self) -> int | None:
        row = self._c().execute("SELECT MAX(version) FROM policy_versions").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def latest_policy(self) -> tuple[int, str, str, float] | None:
        row = (
            self._c()
            .execute("SELECT version, digest, files, published_at FROM policy_versions ORDER BY version DESC LIMIT 1")
            .fetchone()
        )
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]), float(row[3]))

    def policy(self, version: int) -> tuple[int, str, str, float] | None:
        row = (
            self._c()
            .execute("SELECT version, digest, files, published_at FROM policy_versions WHERE version = ?", (version,))
            .fetchone()
        )
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]), float(row[3]))

    def policy_history(self) -> list[tuple[int, str, float, int]]:
        rows = (
            self._c()
            .execute("SELECT version, digest, published_at, log_index FROM policy_versions ORDER BY version")
            .fetchall()
        )
        return [(int(v), str(d), float(t), int(i)) for v, d, t, i in rows]

    def add_policy(self, version: int, digest: str, files: str, at: float, log_index: int) -> None:
        self._write(
            "INSERT INTO policy_versions (version, digest, files, published_at, log_index) VALUES (?, ?, ?, ?, ?)",
            (version, digest, files, at, log_index),
        )

    # approvals
    def add_approval(
        self, approval_id: str, digest: str, request: bytes, group: str, at: float, expires: float
    ) -> None:
        self._write(
            "INSERT INTO approvals (id, action_digest, request, policy_group, requested_at, expires_at, status)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending')",
            (approval_id, digest, request, group, at, expires),
        )

    def approval(self, approval_id: str) -> ApprovalRecord | None:
        row = (
            self._c()
            .execute(
                "SELECT id, action_digest, request, policy_group, requested_at, expires_at, status, approver,"
                " statement_digest, log_index FROM approvals WHERE id = ?",
                (approval_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return ApprovalRecord(
            row[0], row[1], bytes(row[2]), row[3], float(row[4]), float(row[5]), row[6], row[7], row[8], row[9]
        )

    def approvals(self, status: str | None = None, limit: int = 100) -> list[ApprovalRecord]:
        """The newest ``limit`` approvals (with ``status``, when given), oldest first."""
        rows = (
            self._c()
            .execute(
                "SELECT id, action_digest, request, policy_group, requested_at, expires_at, status, approver,"
                " statement_digest, log_index FROM approvals WHERE ? IS NULL OR status = ?"
                " ORDER BY requested_at DESC, id LIMIT ?",
                (status, status, limit),
            )
            .fetchall()
        )
        return [
            ApprovalRecord(r[0], r[1], bytes(r[2]), r[3], float(r[4]), float(r[5]), r[6], r[7], r[8], r[9])
            for r in reversed(rows)
        ]

    def set_approval(
        self, approval_id: str, expect: str, status: str, approver: str | None, digest: str | None, idx: int | None
    ) -> bool:
        """Move an approval from status ``expect`` to ``status``; False if it was not in ``expect``."""
        return (
            self._write(
                "UPDATE approvals SET status = ?, approver = COALESCE(?, approver),"
                " statement_digest = COALESCE(?, statement_digest), log_index = COALESCE(?, log_index)"
                " WHERE id = ? AND status = ?",
                (status, approver, digest, idx, approval_id, expect),
            )
            == 1
        )

    def approval_log_index(self, statement_digest: str) -> int | None:
        """Where the approval statement with this digest was logged."""
        row = (
            self._c()
            .execute("SELECT log_index FROM approvals WHERE statement_digest = ?", (statement_digest,))
            .fetchone()
        )
        return None if row is None or row[0] is None else int(row[0])

    def pending_expired(self, now: float) -> list[str]:
        rows = (
            self._c()
            .execute("SELECT id FROM approvals WHERE status = 'pending' AND expires_at <= ?", (now,))
            .fetchall()
        )
        return [str(r[0]) for r in rows]

    # revocations
    def add_revocation(
        self, kind: str, target: str, reason: str, at: float, log_index: int, expires: float | None = None
    ) -> int:
        """``expires``: when the revocation stops mattering (a revoked permit's own expiry), or None."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO revocations (kind, target, reason, at, log_index, expires) VALUES (?, ?, ?, ?, ?, ?)",
                (kind, target, reason, at, log_index, expires),
            )
        return int(cur.lastrowid or 0)

    def revocations_since(self, epoch: int, live_at: float | None = None) -> list[tuple[int, str, str, str, float]]:
        """Revocations after ``epoch``; with ``live_at``, only those that can still matter then."""
        rows = (
            self._c()
            .execute(
                "SELECT epoch, kind, target, reason, at FROM revocations WHERE epoch > ?"
                " AND (? IS NULL OR expires IS NULL OR expires > ?) ORDER BY epoch",
                (epoch, live_at, live_at),
            )
            .fetchall()
        )
        return [(int(e), str(k), str(t), str(r), float(a)) for e, k, t, r, a in rows]

    def revocation_epoch(self) -> int:
        row = self._c().execute("SELECT COALESCE(MAX(epoch), 0) FROM revocations").fetchone()
        return int(row[0])

    def is_revoked(self, kind: str, target: str) -> bool:
        row = (
            self._c()
            .execute("SELECT 1 FROM revocations WHERE kind = ? AND target = ? LIMIT 1", (kind, target))
            .fetchone()
        )
        return row is not None

    # single-use permits
    def consume(self, jti: str, at: float) -> bool:
        """Mark a single-use permit used; False if it already was."""
        return self._write("INSERT OR IGNORE INTO consumed_permits (jti, at) VALUES (?, ?)", (jti, at)) == 1
