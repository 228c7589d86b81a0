"""The witness's durable state in SQLite (``witness.state``, default ``witness.db`` in the home).

Two tables in a file of their own (a witness home has no authority database):

* ``witness_latest`` — per origin, the latest cosigned checkpoint (size, root, the served note
  with the log signatures and cosignatures, the cosignatures' timestamp);
* ``witness_refusals`` — log-signed submissions refused with 422, each with the cosigned
  checkpoint it was checked against (tlog-witness §add-checkpoint: "the witness MAY log the
  request [...] as it might be proof of log misbehavior"), once per distinct request, at most
  :data:`MAX_REFUSALS_PER_ORIGIN` per log.

:meth:`SQLiteWitnessStore.compare_and_set` is one ``BEGIN IMMEDIATE`` transaction (with the
cross-process writer lock of :class:`~fiat.persist.sqlite.db.SQLiteDatabase`) in WAL mode with
``synchronous=FULL``: the compare and the write cannot interleave with another request's, in
this process or another, and a commit is on disk (the WAL fsynced) before the witness answers
200 — tlog-witness: "The witness MUST persist the new checkpoint before responding [...]
checking the old size against the latest checkpoint and persisting the new checkpoint must be
performed atomically". A ``kill -9`` right after a 200 loses nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fiat.errors import StorageError
from fiat.persist.sqlite.db import SQLiteDatabase
from fiat.witness.core import Cosigned, Refusal

#: ``PRAGMA user_version`` of a witness database.
WITNESS_SCHEMA_VERSION = 1
MAX_REFUSALS_PER_ORIGIN = 10_000
HASH = 32

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS witness_latest (
        origin TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        note BLOB NOT NULL,
        timestamp INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS witness_refusals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        digest TEXT NOT NULL UNIQUE,
        checkpoint BLOB NOT NULL,
        old_size INTEGER NOT NULL,
        proof BLOB NOT NULL,
        against BLOB,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS witness_refusals_origin ON witness_refusals (origin, id)",
)


class SQLiteWitnessStore:
    """A :class:`fiat.witness.core.WitnessStore` in one SQLite file."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 30_000) -> None:
        self.db = SQLiteDatabase(path, "FULL", busy_timeout_ms)
        self.path = self.db.path
        try:
            self._open_schema()
        except BaseException:
            self.db.close()
            raise

    def _open_schema(self) -> None:
        try:
            version = int(self.db.conn().execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path} is not a usable witness database: {exc}") from exc
        if version == WITNESS_SCHEMA_VERSION:
            return
        if version not in (0, WITNESS_SCHEMA_VERSION):
            raise StorageError(
                f"{self.path} has witness schema version {version}; this Fiat reads version {WITNESS_SCHEMA_VERSION}. "
                "Is witness.state pointing at another database?"
            )
        with self.db.transaction() as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables - {"witness_latest", "witness_refusals", "sqlite_sequence"}:
                raise StorageError(
                    f"{self.path} is another database (it has tables {sorted(tables)[:3]}); "
                    "point witness.state at a file of its own"
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {WITNESS_SCHEMA_VERSION}")

    @staticmethod
    def _row(row: tuple[object, ...]) -> Cosigned:
        origin, size, root, note_, ts = row
        assert isinstance(origin, str) and isinstance(size, int) and isinstance(ts, int)
        assert isinstance(root, bytes) and isinstance(note_, bytes)
        return Cosigned(origin, size, root, note_, ts)

    def latest(self, origin: str) -> Cosigned | None:
        row = (
            self.db.conn()
            .execute("SELECT origin, size, root, note, timestamp FROM witness_latest WHERE origin = ?", (origin,))
            .fetchone()
        )
        return None if row is None else self._row(row)

    def all_latest(self) -> list[Cosigned]:
        rows = self.db.conn().execute("SELECT origin, size, root, note, timestamp FROM witness_latest ORDER BY origin")
        return [self._row(r) for r in rows]

    def compare_and_set(self, expected: Cosigned | None, new: Cosigned) -> Cosigned | None:
        if expected is not None and expected.origin != new.origin:
            raise ValueError("compare_and_set compares one log's checkpoints")
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT origin, size, root, note, timestamp FROM witness_latest WHERE origin = ?", (new.origin,)
            ).fetchone()
            current = None if row is None else self._row(row)
            same = (
                current is None
                if expected is None
                else current is not None and (current.size, current.root) == (expected.size, expected.root)
            )
            if not same:
                return current
            conn.execute(
                "INSERT INTO witness_latest (origin, size, root, note, timestamp) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, "
                "note = excluded.note, timestamp = excluded.timestamp",
                (new.origin, new.size, new.root, new.note, new.timestamp),
            )
        return None

    def record_refusal(self, refusal: Refusal) -> None:
        with self.db.transaction() as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM witness_refusals WHERE origin = ?", (refusal.origin,)
            ).fetchone()
            if count >= MAX_REFUSALS_PER_ORIGIN:
                return
            conn.execute(
                "INSERT OR IGNORE INTO witness_refusals "
                "(origin, digest, checkpoint, old_size, proof, against, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    refusal.origin,
                    refusal.digest,
                    refusal.checkpoint,
                    refusal.old_size,
                    b"".join(refusal.proof),
                    refusal.against,
                    refusal.reason,
                    refusal.at,
                ),
            )

    def refusals(self, origin: str | None = None) -> list[Refusal]:
        sql = "SELECT origin, checkpoint, old_size, proof, against, reason, at FROM witness_refusals"
        args: tuple[str, ...] = ()
        if origin is not None:
            sql, args = sql + " WHERE origin = ?", (origin,)
        out = []
        for o, cp, old, proof, against, reason, at in self.db.conn().execute(sql + " ORDER BY id", args):
            hashes = tuple(bytes(proof[i : i + HASH]) for i in range(0, len(proof), HASH))
            out.append(Refusal(o, bytes(cp), int(old), hashes, None if against is None else bytes(against), reason, at))
        return out

    def refusal_counts(self) -> dict[str, int]:
        rows = self.db.conn().execute("SELECT origin, COUNT(*) FROM witness_refusals GROUP BY origin")
        return {str(origin): int(count) for origin, count in rows}

    def close(self) -> None:
        self.db.close()
