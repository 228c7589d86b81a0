"""SQLite (WAL) implementation of :class:`fiat.persist.store.LogStore` — the embedded default."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from fiat.errors import StorageError

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


class SQLiteLogStore:
    """One SQLite file in WAL mode; a connection per thread; one writer at a time across processes.

    ``synchronous`` is ``FULL`` by default: a commit is on disk (WAL fsynced)
    before an append is acknowledged. ``NORMAL`` survives a crash of the
    process (``kill -9``) but not of the machine.
    """

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
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StorageError("the log store is closed")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self._busy / 1000)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._sync}")
            conn.execute(f"PRAGMA busy_timeout={self._busy}")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the log database {self.path}: {exc}") from exc
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def writer(self) -> Iterator[_Writer]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot lock the log database {self.path} for writing: {exc}") from exc
        try:
            yield _Writer(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise StorageError(f"cannot commit to the log database {self.path}: {exc}") from exc

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
        with self._lock:
            self._closed = True
            for conn in self._all:
                with suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()


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
    log_index INTEGER NOT NULL
);
"""


class SQLiteEvidenceIndex:
    """:class:`fiat.persist.store.EvidenceIndex` in the same SQLite file as the log."""

    def __init__(self, store: SQLiteLogStore) -> None:
        self._store = store
        conn = store._conn()
        with conn:
            conn.executescript(_EVIDENCE_SCHEMA)

    def record(self, jti: str, kind: str, log_index: int) -> None:
        conn = self._store._conn()
        conn.execute("INSERT OR IGNORE INTO evidence (jti, kind, log_index) VALUES (?, ?, ?)", (jti, kind, log_index))

    def record_permit(self, jti: str, parent: str | None, request: bytes, log_index: int) -> None:
        conn = self._store._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR IGNORE INTO permits (jti, parent, request, log_index) VALUES (?, ?, ?, ?)",
                (jti, parent, request, log_index),
            )
            conn.execute(
                "INSERT OR IGNORE INTO evidence (jti, kind, log_index) VALUES (?, 'permit', ?)", (jti, log_index)
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def entries(self, jti: str) -> list[tuple[str, int]]:
        rows = (
            self._store._conn()
            .execute("SELECT kind, log_index FROM evidence WHERE jti = ? ORDER BY log_index", (jti,))
            .fetchall()
        )
        return [(str(k), int(i)) for k, i in rows]

    def permit(self, jti: str) -> tuple[str | None, bytes, int] | None:
        row = (
            self._store._conn()
            .execute("SELECT parent, request, log_index FROM permits WHERE jti = ?", (jti,))
            .fetchone()
        )
        return None if row is None else (row[0], bytes(row[1]), int(row[2]))
