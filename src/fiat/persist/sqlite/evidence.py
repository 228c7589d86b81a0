"""SQLite implementation of :class:`fiat.persist.protocols.EvidenceIndex`, in the log's file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fiat.persist.protocols import LogWriter
from fiat.persist.records import EvidenceLink, PermitRecord
from fiat.persist.sqlite.db import RowStager, SQLiteDatabase, open_schema


class SQLiteEvidenceIndex:
    """Permit id → log entries, in the log's SQLite file.

    Rows about new entries are staged in the log batch's own transaction (``record_in``,
    durable with the entries). Its own connection (``NORMAL``) only serves reads and later
    links (``record``), which merely point into the log: the log itself is the evidence.
    """

    def __init__(self, path: str | Path, busy_timeout_ms: int = 30_000) -> None:
        self.db = SQLiteDatabase(path, "NORMAL", busy_timeout_ms)
        try:
            open_schema(self.db)
        except BaseException:
            self.db.close()
            raise

    def record(self, permit: PermitRecord | None, links: Sequence[EvidenceLink]) -> None:
        with self.db.transaction() as conn:
            stager = RowStager(conn)
            self.record_in(stager, permit, links)
            stager.flush()

    def record_in(
        self, writer: LogWriter | RowStager, permit: PermitRecord | None, links: Sequence[EvidenceLink]
    ) -> None:
        """Stage the rows in ``writer``'s transaction (atomic with the entries they point at).

        The rows are written at the end of the batch, so a batch of decisions costs one
        ``executemany`` per table rather than several statements per decision.
        """
        if permit is not None:
            writer.stage(permit)
            writer.stage(EvidenceLink(permit.jti, "permit", permit.log_index))
        for link in links:
            writer.stage(link)

    def entries(self, jti: str) -> list[EvidenceLink]:
        rows = (
            self.db.conn()
            .execute("SELECT kind, log_index FROM evidence WHERE jti = ? ORDER BY log_index", (jti,))
            .fetchall()
        )
        return [EvidenceLink(jti, str(k), int(i)) for k, i in rows]

    def permit(self, jti: str) -> PermitRecord | None:
        row = self.db.conn().execute(f"{_PERMIT_SELECT} WHERE jti = ?", (jti,)).fetchone()
        return None if row is None else _permit(row)

    def find_permits(
        self,
        *,
        principal: str | None = None,
        jti: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[PermitRecord]:
        """One query over the indexes ``permits_principal_iat`` / ``permits_iat`` (schema 5)."""
        where: list[str] = []
        args: list[object] = []
        for clause, value in (("jti = ?", jti), ("principal = ?", principal), ("iat >= ?", since), ("iat <= ?", until)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = _PERMIT_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.db.conn().execute(f"{sql} ORDER BY iat DESC, log_index DESC LIMIT ?", (*args, max(limit, 0)))
        return [_permit(r) for r in rows]

    def children(self, jti: str) -> list[PermitRecord]:
        rows = self.db.conn().execute(f"{_PERMIT_SELECT} WHERE parent = ? ORDER BY log_index", (jti,))
        return [_permit(r) for r in rows]

    def renewals(self, jtis: Sequence[str]) -> list[tuple[str, str]]:
        out: dict[tuple[str, str], None] = {}
        conn = self.db.conn()
        for i in range(0, len(jtis), _IN_CHUNK):
            chunk = list(jtis[i : i + _IN_CHUNK])
            marks = ",".join("?" * len(chunk))
            for pred, succ in conn.execute(_RENEWALS.format(marks=marks), (*chunk, *chunk)):
                out[(str(pred), str(succ))] = None
        return list(out)

    def lineage(self, jti: str, limit: int = 1000) -> list[PermitRecord]:
        """Up to the root (one indexed lookup per generation), then breadth-first down, one
        indexed lookup per level and edge kind (``permits_parent``, ``renewals``' keys)."""
        conn = self.db.conn()
        if self.permit(jti) is None:
            return []
        root, seen_up = jti, {jti}
        while len(seen_up) <= limit:
            row = conn.execute(
                "SELECT COALESCE((SELECT parent FROM permits WHERE jti = ?),"
                " (SELECT predecessor FROM renewals WHERE successor = ?))",
                (root, root),
            ).fetchone()
            up = None if row is None else row[0]
            if up is None or up in seen_up or self.permit(str(up)) is None:
                break  # the root, a loop (a corrupt graph) or a parent not issued here
            root = str(up)
            seen_up.add(root)
        found: dict[str, None] = {root: None}
        frontier = [root]
        while frontier and len(found) < limit:
            nxt: list[str] = []
            for i in range(0, len(frontier), _IN_CHUNK):
                chunk = frontier[i : i + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                for query in _DOWN:
                    for (j,) in conn.execute(query.format(marks), chunk):
                        if j is not None and j not in found and len(found) < limit:
                            found[str(j)] = None
                            nxt.append(str(j))
            frontier = nxt
        ids = list(found)
        out: list[PermitRecord] = []
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            out.extend(
                _permit(r) for r in conn.execute(f"{_PERMIT_SELECT} WHERE jti IN ({','.join('?' * len(chunk))})", chunk)
            )
        return sorted(out, key=lambda p: p.log_index)

    def close(self) -> None:
        self.db.close()


_PERMIT_SELECT = "SELECT jti, parent, request, log_index, principal, runtime, depth, exp, iat FROM permits"
#: The edges down a lineage: sub-executions (``parent``) and renewal successors.
_DOWN = (
    "SELECT jti FROM permits WHERE parent IN ({})",
    "SELECT successor FROM renewals WHERE predecessor IN ({})",
)
_RENEWALS = "SELECT predecessor, successor FROM renewals WHERE predecessor IN ({marks}) OR successor IN ({marks})"
#: Ids per ``IN (…)`` list (far below SQLite's limit on host parameters).
_IN_CHUNK = 400


def _permit(row: Any) -> PermitRecord:
    iat = None if row[8] is None else float(row[8])
    return PermitRecord(row[0], row[1], bytes(row[2]), int(row[3]), row[4], row[5], int(row[6]), float(row[7]), iat)
