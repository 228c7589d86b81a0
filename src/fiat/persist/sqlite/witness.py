"""The witness's durable state in SQLite (``witness.state``, default ``witness.db`` in the home).

Three tables in a file of their own (a witness home has no authority database):

* ``witness_latest`` — per origin, the latest cosigned checkpoint (size, root, the served note
  with the log signatures and cosignatures, the cosignatures' timestamp);
* ``witness_refusals`` — log-signed submissions refused with 422, each with the cosigned
  checkpoint it was checked against (tlog-witness §add-checkpoint: "the witness MAY log the
  request [...] as it might be proof of log misbehavior") and whether it proves a fork by
  itself (``proves``). One that does is always kept, once per refused checkpoint (origin, size,
  root): only a log that signed a fork can make one. One that does not is kept once per distinct
  request and only among the first :data:`MAX_UNPROVEN_REFUSALS_PER_ORIGIN` of its log — anyone
  can make those by sending a public checkpoint with made-up proof lines, so they must never be
  able to fill the table;
* ``witness_refusals_dropped`` — per origin, how many refusals that prove nothing were not kept.

Version 1 (one cap of 10,000 refusals of any kind per log) is upgraded in place: each kept
refusal is classified with :func:`fiat.witness.split_views.export`, as new ones are.

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
from dataclasses import replace
from pathlib import Path

from fiat.errors import StorageError
from fiat.persist.sqlite.db import SQLiteDatabase
from fiat.witness.core import Cosigned, Refusal, RefusalCounts

#: ``PRAGMA user_version`` of a witness database.
WITNESS_SCHEMA_VERSION = 2
#: Refusals that prove nothing kept per log (the first ones; later ones are only counted).
MAX_UNPROVEN_REFUSALS_PER_ORIGIN = 100
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
        at REAL NOT NULL,
        proves INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS witness_refusals_origin ON witness_refusals (origin, id)",
    "CREATE INDEX IF NOT EXISTS witness_refusals_proves ON witness_refusals (origin, proves)",
    """CREATE TABLE IF NOT EXISTS witness_refusals_dropped (
        origin TEXT PRIMARY KEY,
        dropped INTEGER NOT NULL
    )""",
)
_TABLES = {"witness_latest", "witness_refusals", "witness_refusals_dropped", "sqlite_sequence"}


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
        if version not in (0, 1, WITNESS_SCHEMA_VERSION):
            raise StorageError(
                f"{self.path} has witness schema version {version}; this Fiat reads version {WITNESS_SCHEMA_VERSION}. "
                "Is witness.state pointing at another database?"
            )
        with self.db.transaction() as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables - _TABLES:
                raise StorageError(
                    f"{self.path} is another database (it has tables {sorted(tables)[:3]}); "
                    "point witness.state at a file of its own"
                )
            if version == 1:
                conn.execute("ALTER TABLE witness_refusals ADD COLUMN proves INTEGER NOT NULL DEFAULT 0")
            for statement in _SCHEMA:
                conn.execute(statement)
            if version == 1:
                self._classify_v1(conn)
            conn.execute(f"PRAGMA user_version = {WITNESS_SCHEMA_VERSION}")

    @staticmethod
    def _classify_v1(conn: sqlite3.Connection) -> None:
        """Mark the version-1 refusals that prove a fork, keyed as new ones are (the first of each
        refused checkpoint stays); those that prove nothing stay too, even past today's cap."""
        from fiat.witness.split_views import export

        rows = conn.execute(
            "SELECT id, origin, checkpoint, old_size, proof, against, reason, at FROM witness_refusals ORDER BY id"
        ).fetchall()
        for row in rows:
            refusal = SQLiteWitnessStore._refusal(row[1:])
            if export(refusal, "").proof is None:
                continue
            digest = replace(refusal, proves=True).digest
            if conn.execute("SELECT 1 FROM witness_refusals WHERE digest = ?", (digest,)).fetchone():
                conn.execute("DELETE FROM witness_refusals WHERE id = ?", (row[0],))  # a later copy
            else:
                conn.execute("UPDATE witness_refusals SET proves = 1, digest = ? WHERE id = ?", (digest, row[0]))

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
        digest = refusal.digest
        with self.db.transaction() as conn:
            if not refusal.proves:
                if conn.execute("SELECT 1 FROM witness_refusals WHERE digest = ?", (digest,)).fetchone():
                    return  # kept already
                (count,) = conn.execute(
                    "SELECT COUNT(*) FROM witness_refusals WHERE origin = ? AND proves = 0", (refusal.origin,)
                ).fetchone()
                if count >= MAX_UNPROVEN_REFUSALS_PER_ORIGIN:
                    conn.execute(
                        "INSERT INTO witness_refusals_dropped (origin, dropped) VALUES (?, 1) "
                        "ON CONFLICT (origin) DO UPDATE SET dropped = dropped + 1",
                        (refusal.origin,),
                    )
                    return
            conn.execute(
                "INSERT OR IGNORE INTO witness_refusals "
                "(origin, digest, checkpoint, old_size, proof, against, reason, at, proves) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    refusal.origin,
                    digest,
                    refusal.checkpoint,
                    refusal.old_size,
                    b"".join(refusal.proof),
                    refusal.against,
                    refusal.reason,
                    refusal.at,
                    int(refusal.proves),
                ),
            )

    @staticmethod
    def _refusal(row: tuple[object, ...]) -> Refusal:
        o, cp, old, proof, against, reason, at, *rest = row
        assert isinstance(o, str) and isinstance(cp, bytes) and isinstance(old, int) and isinstance(proof, bytes)
        assert isinstance(reason, str) and isinstance(at, float) and (against is None or isinstance(against, bytes))
        hashes = tuple(bytes(proof[i : i + HASH]) for i in range(0, len(proof), HASH))
        return Refusal(o, cp, old, hashes, against, reason, at, bool(rest and rest[0]))

    def refusals(self, origin: str | None = None) -> list[Refusal]:
        sql = "SELECT origin, checkpoint, old_size, proof, against, reason, at, proves FROM witness_refusals"
        args: tuple[str, ...] = ()
        if origin is not None:
            sql, args = sql + " WHERE origin = ?", (origin,)
        return [self._refusal(row) for row in self.db.conn().execute(sql + " ORDER BY id", args)]

    def refusal_counts(self) -> dict[str, RefusalCounts]:
        conn = self.db.conn()
        proving: dict[str, int] = {}
        unproven: dict[str, int] = {}
        for origin, proves, count in conn.execute(
            "SELECT origin, proves, COUNT(*) FROM witness_refusals GROUP BY origin, proves"
        ):
            (proving if proves else unproven)[str(origin)] = int(count)
        dropped = {str(o): int(n) for o, n in conn.execute("SELECT origin, dropped FROM witness_refusals_dropped")}
        return {
            origin: RefusalCounts(proving.get(origin, 0), unproven.get(origin, 0), dropped.get(origin, 0))
            for origin in sorted(set(proving) | set(unproven) | set(dropped))
        }

    def close(self) -> None:
        self.db.close()
