"""The narrow storage interface behind the transparency log.

The log logic (:mod:`fiat.prove.log`) talks to storage only through
:class:`LogStore` and :class:`LogWriter`. A backend stores three things:

* entries, by index (append-only);
* hash tiles, by ``(level, index)``, each stored at its widest width so far
  (a tile only ever grows to the right, so a narrower partial tile is a prefix);
* the latest signed checkpoint and the tree size it covers.

A write is one atomic, durable transaction: the entries of a batch, the tiles
they change and the checkpoint that covers them commit together or not at all.
That is what makes an acknowledged entry survive ``kill -9`` and what keeps the
stored checkpoint consistent with the stored tree after any crash.

SQLite (:mod:`fiat.persist.sqlite`) is the embedded default; a PostgreSQL
backend implements the same two protocols (``SELECT ... FOR UPDATE`` on the
state row gives the same single-writer guarantee as SQLite's ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


class LogWriter(Protocol):
    """Operations inside one exclusive write transaction."""

    def tree_size(self) -> int:
        """The committed tree size, read inside the transaction (another writer may have grown it)."""

    def read_tile(self, level: int, index: int) -> bytes | None:
        """The stored hashes of a tile (its widest version), or None."""

    def write(
        self,
        start: int,
        entries: Sequence[bytes],
        tiles: Mapping[tuple[int, int], bytes],
        checkpoint: bytes,
    ) -> None:
        """Stage entries ``start..start+len(entries)``, the changed tiles and the new checkpoint."""


class LogStore(Protocol):
    """Storage for one transparency log. Safe to share between threads."""

    def writer(self) -> AbstractContextManager[LogWriter]:
        """An exclusive write transaction; commits durably on normal exit, rolls back on error."""

    def tree_size(self) -> int:
        """The tree size of the latest committed checkpoint (0 for an empty log)."""

    def checkpoint(self) -> bytes | None:
        """The latest committed signed checkpoint, or None before the first one."""

    def read_tile(self, level: int, index: int) -> bytes | None:
        """The stored hashes of a tile (its widest version), or None."""

    def read_entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``start..end-1`` (fewer if the log is shorter)."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class PermitRecord:
    """What the evidence index keeps about an issued permit."""

    jti: str
    parent: str | None
    request: bytes  # the RFC 8785 action request
    log_index: int
    principal: str
    runtime: str  # the cnf key's kid
    depth: int  # lineage depth: 0 for a root execution
    exp: float


@dataclass(frozen=True)
class ApprovalRecord:
    """A request for human approval and what became of it."""

    id: str
    action_digest: str
    request: bytes
    group: str
    requested_at: float
    expires_at: float
    status: str  # pending | approved | denied | expired | used
    approver: str | None
    statement_digest: str | None
    log_index: int | None


class EvidenceIndex(Protocol):
    """Which log entries belong to which execution (by permit id), so a bundle can be assembled.

    The log holds the evidence itself; this index only points into it.
    """

    def record(self, permit: PermitRecord | None, links: Sequence[tuple[str, str, int]]) -> None:
        """In one transaction: note a permit (if given) and ``(jti, kind, log index)`` links."""

    def record_in(self, writer: LogWriter, permit: PermitRecord | None, links: Sequence[tuple[str, str, int]]) -> None:
        """The same, inside a log batch's transaction (see ``TransparencyLog.submit(sidecar=...)``)."""

    def entries(self, jti: str) -> list[tuple[str, int]]:
        """(kind, log index) of every entry about ``jti``, in log order."""

    def permit(self, jti: str) -> PermitRecord | None:
        """The record of an issued permit, or None."""
