"""SQLite (WAL) implementation of :class:`fiat.persist.protocols.LogStore`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from fiat.persist.records import StagedRow
from fiat.persist.sqlite.db import RowStager, SQLiteDatabase, open_schema


class _Writer:
    """:class:`fiat.persist.protocols.LogWriter` over one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._staged = RowStager(conn)

    def stage(self, row: StagedRow) -> None:
        """Queue a row; the rows of a batch go in with one ``executemany`` per table before commit."""
        self._staged.stage(row)

    def flush(self) -> None:
        self._staged.flush()

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
        self.db = SQLiteDatabase(path, synchronous, busy_timeout_ms)
        self.path = self.db.path
        try:
            open_schema(self.db)
        except BaseException:
            self.db.close()
            raise

    def _conn(self) -> sqlite3.Connection:
        return self.db.conn()

    @contextmanager
    def writer(self) -> Iterator[_Writer]:
        with self.db.transaction() as conn:
            w = _Writer(conn)
            yield w
            w.flush()  # staged rows commit with the batch

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

    def witnessed_checkpoint(self) -> bytes | None:
        row = self._conn().execute("SELECT checkpoint FROM log_witnessed WHERE id = 1").fetchone()
        return None if row is None else bytes(row[0])

    def set_witnessed_checkpoint(self, size: int, note: bytes) -> bool:
        # One statement: the size comparison and the write cannot be split by another writer.
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO log_witnessed (id, tree_size, checkpoint) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE"
                " SET tree_size = excluded.tree_size, checkpoint = excluded.checkpoint"
                " WHERE excluded.tree_size >= log_witnessed.tree_size",
                (size, note),
            )
            return cur.rowcount > 0

    def close(self) -> None:
        self.db.close()
