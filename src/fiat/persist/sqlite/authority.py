"""SQLite implementation of :class:`fiat.persist.protocols.AuthorityStore`, in the log's file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fiat.persist.records import ApprovalRecord, PolicyVersion, Revocation, StoredPolicy
from fiat.persist.sqlite.db import SQLiteDatabase, open_schema

#: The most expired DPoP proofs one pruning transaction deletes.
PRUNE_CHUNK = 1000

_POLICY = "SELECT version, digest, published_at, log_index, files FROM policy_versions"


def _policy(row: Any) -> StoredPolicy | None:
    return None if row is None else StoredPolicy(int(row[0]), str(row[1]), float(row[2]), int(row[3]), str(row[4]))


class SQLiteAuthorityStore:
    """The authority's durable state: policy versions, approvals, revocations, permit use (``FULL`` sync),
    and the DPoP replay cache (``NORMAL`` sync: see :meth:`remember_proof`)."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 30_000) -> None:
        self.db = SQLiteDatabase(path, "FULL", busy_timeout_ms)
        self._proofs = SQLiteDatabase(path, "NORMAL", busy_timeout_ms)
        try:
            open_schema(self.db)
            _ensure_index(self.db)
        except BaseException:
            self.db.close()
            raise

    def _c(self) -> sqlite3.Connection:
        return self.db.conn()

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute(sql, args)
        return cur.rowcount

    def close(self) -> None:
        self.db.close()
        self._proofs.close()

    # policy
    def latest_policy_version(self) -> int | None:
        row = self._c().execute("SELECT MAX(version) FROM policy_versions").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def latest_policy(self) -> StoredPolicy | None:
        return _policy(self._c().execute(_POLICY + " ORDER BY version DESC LIMIT 1").fetchone())

    def policy(self, version: int) -> StoredPolicy | None:
        return _policy(self._c().execute(_POLICY + " WHERE version = ?", (version,)).fetchone())

    def policy_history(self) -> list[PolicyVersion]:
        rows = (
            self._c()
            .execute("SELECT version, digest, published_at, log_index FROM policy_versions ORDER BY version")
            .fetchall()
        )
        return [PolicyVersion(int(v), str(d), float(t), int(i)) for v, d, t, i in rows]

    def add_policy(self, policy: StoredPolicy) -> None:
        p = policy
        self._write(
            "INSERT INTO policy_versions (version, digest, files, published_at, log_index) VALUES (?, ?, ?, ?, ?)",
            (p.version, p.digest, p.files, p.published_at, p.log_index),
        )

    # approvals (a new one is staged with its pending decision: fiat.persist.sqlite.db.RowStager)
    def approval(self, approval_id: str) -> ApprovalRecord | None:
        row = self._c().execute(_APPROVAL_SELECT + " WHERE id = ?", (approval_id,)).fetchone()
        return None if row is None else _approval(row)

    def approvals(self, status: str | None = None, limit: int = 100) -> list[ApprovalRecord]:
        """The newest ``limit`` approvals (with ``status``, when given), oldest first."""
        rows = (
            self._c()
            .execute(
                _APPROVAL_SELECT + " WHERE ? IS NULL OR status = ? ORDER BY requested_at DESC, id LIMIT ?",
                (status, status, limit),
            )
            .fetchall()
        )
        return [_approval(r) for r in reversed(rows)]

    def set_approval(
        self,
        approval_id: str,
        expect: str,
        status: str,
        approver: str | None,
        statement_digest: str | None,
        log_index: int | None,
    ) -> bool:
        """Move an approval from status ``expect`` to ``status``; False if it was not in ``expect``."""
        return (
            self._write(
                "UPDATE approvals SET status = ?, approver = COALESCE(?, approver),"
                " statement_digest = COALESCE(?, statement_digest), log_index = COALESCE(?, log_index)"
                " WHERE id = ? AND status = ?",
                (status, approver, statement_digest, log_index, approval_id, expect),
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

    def approval_by_statement(self, statement_digest: str) -> ApprovalRecord | None:
        """The approval decided by the approval statement with this digest, or None."""
        row = self._c().execute(_APPROVAL_SELECT + " WHERE statement_digest = ?", (statement_digest,)).fetchone()
        return None if row is None else _approval(row)

    def pending_approval(self, action_digest: str, runtime: str, now: float) -> ApprovalRecord | None:
        """The newest approval pending and unexpired at ``now`` for this action and runtime (index
        ``approvals_open``), or None."""
        row = (
            self._c()
            .execute(
                _APPROVAL_SELECT + " WHERE action_digest = ? AND runtime = ? AND status = 'pending' AND expires_at > ?"
                " ORDER BY requested_at DESC LIMIT 1",
                (action_digest, runtime, now),
            )
            .fetchone()
        )
        return None if row is None else _approval(row)

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

    def revocations_since(self, epoch: int, live_at: float | None = None) -> list[Revocation]:
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
        return [Revocation(int(e), str(k), str(t), str(r), float(a)) for e, k, t, r, a in rows]

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

    def revocation_log_indexes(self, targets: Sequence[tuple[str, str]]) -> list[int]:
        """Where the revocations of any of ``targets`` were logged, in log order."""
        if not targets:
            return []
        rows = (
            self._c()
            .execute(
                "SELECT DISTINCT r.log_index FROM revocations r JOIN json_each(?) t"
                " ON r.kind = json_extract(t.value, '$[0]') AND r.target = json_extract(t.value, '$[1]')"
                " ORDER BY r.log_index",
                (json.dumps([list(t) for t in targets]),),
            )
            .fetchall()
        )
        return [int(r[0]) for r in rows]

    # single-use permits
    def consume(self, jti: str, at: float) -> bool:
        """Mark a single-use permit used; False if it already was."""
        return self._write("INSERT OR IGNORE INTO consumed_permits (jti, at) VALUES (?, ?)", (jti, at)) == 1

    def is_consumed(self, jti: str) -> bool:
        row = self._c().execute("SELECT 1 FROM consumed_permits WHERE jti = ?", (jti,)).fetchone()
        return row is not None

    # renewal chains and lineage (schema 4)
    def claim_renewal(self, predecessor: str, successor: str, at: float) -> bool:
        """One ``INSERT OR IGNORE`` on the primary key ``predecessor``: atomic across processes."""
        return (
            self._write(
                "INSERT OR IGNORE INTO renewals (predecessor, successor, at) VALUES (?, ?, ?)",
                (predecessor, successor, at),
            )
            == 1
        )

    def successor_of(self, predecessor: str) -> str | None:
        row = self._c().execute("SELECT successor FROM renewals WHERE predecessor = ?", (predecessor,)).fetchone()
        return None if row is None else str(row[0])

    def ancestry(self, jti: str) -> list[str]:
        """Walk up the renewal (successor → predecessor) and lineage (child → parent) edges."""
        return list(_walk(self._c(), [jti], _UP))

    def covered(self, roots: Sequence[str]) -> dict[str, float]:
        """Walk down the renewal and lineage edges from ``roots``; the issued permits found, with ``exp``."""
        return {j: exp for j, (_, exp) in self._reach(roots).items()}

    def coverage(self, roots: Sequence[str]) -> dict[str, tuple[str, float]]:
        """Walk down from every root at once, remembering which root reached each permit first."""
        return {j: found for j, found in self._reach(roots).items() if j not in roots}

    def _reach(self, roots: Sequence[str]) -> dict[str, tuple[str, float]]:
        """Every issued permit reached from ``roots`` (them included) → (the root that reached it
        first, its ``exp``): one breadth-first walk down :data:`_DOWN_FROM`, one indexed lookup per
        level and edge kind."""
        conn = self._c()
        origin: dict[str, str] = {r: r for r in roots}
        frontier = list(origin)
        while frontier and len(origin) < _WALK_LIMIT:
            nxt: list[str] = []
            for i in range(0, len(frontier), _IN_CHUNK):
                chunk = frontier[i : i + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                for query in _DOWN_FROM:
                    for j, up in conn.execute(query.format(marks), chunk):
                        if j is not None and j not in origin:
                            origin[str(j)] = origin[str(up)]
                            nxt.append(str(j))
            frontier = nxt
        found = list(origin)[:_WALK_LIMIT]
        out: dict[str, tuple[str, float]] = {}
        for i in range(0, len(found), _IN_CHUNK):
            chunk = found[i : i + _IN_CHUNK]
            for j, e in conn.execute(_EXP.format(",".join("?" * len(chunk))), chunk):
                out[str(j)] = (origin[str(j)], float(e))
        return out

    # the DPoP replay cache (RFC 9449 §11.1)
    def remember_proof(self, key: str, expires: float, now: float) -> bool:
        """Insert ``key`` unless a live row has it (one statement: atomic across processes).

        Written with ``synchronous = NORMAL``: it survives a crash or restart of the process at
        once, and a power loss from the next ``FULL`` commit on, which the WAL orders after it
        (the decision the proof asked for is one).
        """
        with self._proofs.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO dpop_proofs (key, expires) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET expires = excluded.expires WHERE dpop_proofs.expires <= ?",
                (key, expires, now),
            )
        return cur.rowcount == 1

    def prune_proofs(self, now: float) -> int:
        """Forget the proofs that expired by ``now``; how many.

        In transactions of at most :data:`PRUNE_CHUNK` rows, so the log's writer, which shares
        the file's writer lock, never waits behind one long delete.
        """
        pruned = 0
        while True:
            with self._proofs.transaction() as conn:
                cur = conn.execute(
                    "DELETE FROM dpop_proofs WHERE key IN"
                    " (SELECT key FROM dpop_proofs WHERE expires <= ? ORDER BY expires LIMIT ?)",
                    (now, PRUNE_CHUNK),
                )
            pruned += cur.rowcount
            if cur.rowcount < PRUNE_CHUNK:
                return pruned


#: The lookup of an open approval by action and runtime (``pending_approval``), made on open
#: once the schema is current (the ``runtime`` column it covers came with version 2). An index
#: only: the layout, and so the schema version, is unchanged.
_INDEX = "CREATE INDEX IF NOT EXISTS approvals_open ON approvals (action_digest, runtime, status)"


def _ensure_index(db: SQLiteDatabase) -> None:
    present = db.conn().execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'approvals_open'")
    if present.fetchone() is None:
        with db.transaction() as conn:
            conn.execute(_INDEX)


#: The most permits one walk of a renewal chain and its lineage visits (a bound on a corrupt graph).
_WALK_LIMIT = 100_000
#: The walks follow the edges between a permit and the permits whose revocation covers it: the
#: permit it renews (``renewals``) and its lineage parent (``permits.parent``). Each level of a
#: walk is one indexed lookup per edge kind (``renewals``' primary key and unique ``successor``,
#: ``permits``' primary key and ``permits_parent``), so a walk costs what it finds, never a scan
#: of every renewal and permit.
_UP = (
    "SELECT predecessor FROM renewals WHERE successor IN ({})",
    "SELECT parent FROM permits WHERE jti IN ({}) AND parent IS NOT NULL",
)
#: Down the same edges, with the permit each edge leaves from (so a walk keeps the root it came from).
_DOWN_FROM = (
    "SELECT successor, predecessor FROM renewals WHERE predecessor IN ({})",
    "SELECT jti, parent FROM permits WHERE parent IN ({})",
)
_EXP = "SELECT jti, exp FROM permits WHERE jti IN ({})"
#: Ids per ``IN (…)`` list (SQLite's default limit on host parameters is 32,766; far below it).
_IN_CHUNK = 500


def _walk(conn: sqlite3.Connection, roots: Sequence[str], edges: tuple[str, str]) -> dict[str, None]:
    """Breadth-first over ``edges`` from ``roots`` (included), in visiting order, at most
    :data:`_WALK_LIMIT` permits."""
    seen: dict[str, None] = dict.fromkeys(roots)
    frontier = list(seen)
    while frontier and len(seen) < _WALK_LIMIT:
        nxt: list[str] = []
        for i in range(0, len(frontier), _IN_CHUNK):
            chunk = frontier[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for query in edges:
                for (j,) in conn.execute(query.format(marks), chunk):
                    if j is not None and j not in seen:
                        seen[str(j)] = None
                        nxt.append(str(j))
        frontier = nxt
    return dict(list(seen.items())[:_WALK_LIMIT])


_APPROVAL_SELECT = (
    "SELECT id, action_digest, request, policy_group, requested_at, expires_at, status, approver,"
    " statement_digest, log_index, runtime FROM approvals"
)


def _approval(r: Any) -> ApprovalRecord:
    return ApprovalRecord(r[0], r[1], bytes(r[2]), r[3], float(r[4]), float(r[5]), r[6], r[7], r[8], r[9], r[10])
