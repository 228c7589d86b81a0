"""SQLite implementation of :class:`fiat.persist.protocols.EvidenceIndex`, in the log's file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
