"""The SQLite backend: the embedded default, one file in WAL mode for a whole home.

* ``db.py`` — connections (one per thread), the cross-process writer lock, the
  schema (``schema.sql``, package data) and its version, recorded in ``PRAGMA
  user_version`` and checked on open, and the rows a log batch stages.
* ``log.py`` — :class:`SQLiteLogStore` (entries, tiles, checkpoint).
* ``evidence.py`` — :class:`SQLiteEvidenceIndex` (permit id → log entries).
* ``authority.py`` — :class:`SQLiteAuthorityStore` (policy versions, approvals,
  revocations, single-use permits).

The three stores share the file, so the log's writer commits the rows it stages
(index rows, new approvals) in the same transaction as the entries. Imports: the
standard library, :mod:`fiat.errors` and :mod:`fiat.persist` only.
"""

from fiat.persist.sqlite.authority import SQLiteAuthorityStore
from fiat.persist.sqlite.db import SCHEMA_VERSION, SQLiteDatabase
from fiat.persist.sqlite.evidence import SQLiteEvidenceIndex
from fiat.persist.sqlite.log import SQLiteLogStore

__all__ = ["SCHEMA_VERSION", "SQLiteAuthorityStore", "SQLiteDatabase", "SQLiteEvidenceIndex", "SQLiteLogStore"]
