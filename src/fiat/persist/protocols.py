"""The storage contract, as typing Protocols: what every backend implements.

The log logic (:mod:`fiat.prove.log`) talks to storage only through :class:`LogStore`
and :class:`LogWriter`; evidence recording through :class:`EvidenceIndex`; the authority
through :class:`AuthorityStore`. Records are the frozen dataclasses of
:mod:`fiat.persist.records`.

A log store keeps three things:

* entries, by index (append-only);
* hash tiles, by ``(level, index)``, each stored at its widest width so far
  (a tile only ever grows to the right, so a narrower partial tile is a prefix);
* the latest signed checkpoint and the tree size it covers.

A write is one atomic, durable transaction: the entries of a batch, the tiles
they change, the checkpoint that covers them and the rows staged with them
(:meth:`LogWriter.stage`: evidence index rows, the approval a pending decision
opens) commit together or not at all. That is what makes an acknowledged entry
survive ``kill -9`` and what keeps the stored checkpoint, the index and the
approvals consistent with the stored tree after any crash. It is why the stores
of one backend share one database: the log's writer writes the staged rows of the
other stores in its own transaction.

The DPoP replay cache (:class:`ReplayCache`, part of :class:`AuthorityStore`) is stored
too: a proof refused as a replay stays refused after a restart, and every authority
process over one store refuses a proof another one accepted (RFC 9449 §11.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from fiat.persist.records import (
    ApprovalRecord,
    EvidenceLink,
    PermitRecord,
    PolicyVersion,
    Revocation,
    StagedRow,
    StoredPolicy,
)


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

    def stage(self, row: StagedRow) -> None:
        """Write ``row`` in this transaction; a batch's rows may be written together just before it commits.

        An :class:`ApprovalRecord` whose id is already stored is left as stored (a pending decision
        naming an approval already open stages it again, so that it exists whichever batch commits).
        """


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

    def witnessed_checkpoint(self) -> bytes | None:
        """The newest checkpoint that reached the witness quorum, with its cosignature lines, or None."""

    def set_witnessed_checkpoint(self, size: int, note: bytes) -> bool:
        """Store a witnessed checkpoint of tree size ``size`` unless a larger one is stored (atomically).

        One of the same size replaces the stored one (fresher cosignature timestamps). Returns whether
        it was stored.
        """

    def close(self) -> None:
        """Release connections. Idempotent."""


class EvidenceIndex(Protocol):
    """Which log entries belong to which execution (by permit id), so a bundle can be assembled.

    The log holds the evidence itself; this index only points into it.
    """

    def record(self, permit: PermitRecord | None, links: Sequence[EvidenceLink]) -> None:
        """In one transaction of its own: note a permit (if given) and links to already-logged entries."""

    def record_in(self, writer: LogWriter, permit: PermitRecord | None, links: Sequence[EvidenceLink]) -> None:
        """The same, staged in a log batch's transaction (see ``TransparencyLog.submit(sidecar=...)``)."""

    def entries(self, jti: str) -> list[EvidenceLink]:
        """Every entry about ``jti`` (its permit too), in log order."""

    def permit(self, jti: str) -> PermitRecord | None:
        """The record of an issued permit, or None."""

    # lineage (the explorer's queries: docs/formats.md, "Delegation" and "Renewal and revocation")
    def find_permits(
        self,
        *,
        principal: str | None = None,
        jti: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[PermitRecord]:
        """Issued permits matching every filter given, newest ``iat`` first, at most ``limit``.

        ``since``/``until``: ``iat`` in ``[since, until]``. An indexed lookup for each filter.
        """

    def children(self, jti: str) -> list[PermitRecord]:
        """The permits whose ``parent`` is ``jti`` (its sub-executions), in log order."""

    def renewals(self, jtis: Sequence[str]) -> list[tuple[str, str]]:
        """The renewals touching any of ``jtis``: (predecessor, successor) pairs, either end in ``jtis``."""

    def lineage(self, jti: str, limit: int = 1000) -> list[PermitRecord]:
        """The connected lineage of ``jti``: its root ancestor (up the ``parent`` and renewal edges)
        and every permit below it (down ``parent`` and renewal edges), in log order, at most
        ``limit`` permits. Empty when ``jti`` was not issued here."""

    def close(self) -> None:
        """Release connections. Idempotent."""


class ReplayCache(Protocol):
    """The DPoP proofs already accepted, each until it could no longer pass the ``iat`` window (RFC 9449 §11.1)."""

    def remember_proof(self, key: str, expires: float, now: float) -> bool:
        """Atomically insert ``key`` (a digest naming one proof) unless it is held and unexpired at ``now``.

        True: the proof is new and is now remembered until ``expires``; False: a replay. One
        atomic insert-if-absent, so of two processes offered the same proof only one gets True.
        A row that expired by ``now`` counts as absent. Survives a restart of the process.
        """

    def prune_proofs(self, now: float) -> int:
        """Delete the rows that expired by ``now`` (the caller does so periodically); returns how many."""


class AuthorityStore(ReplayCache, Protocol):
    """The authority's durable state: policy versions, approvals, revocations, single-use permits,
    and the DPoP replay cache.

    Every write is durable when it returns. A new approval is not written here: it is
    staged (:meth:`LogWriter.stage`) in the log batch of the pending decision that opens it.
    """

    # policy versions
    def latest_policy_version(self) -> int | None:
        """The newest published version number, or None before the first publication."""

    def latest_policy(self) -> StoredPolicy | None:
        """The newest published version with its files, or None."""

    def policy(self, version: int) -> StoredPolicy | None:
        """One published version with its files, or None."""

    def policy_history(self) -> list[PolicyVersion]:
        """Every published version, oldest first."""

    def add_policy(self, policy: StoredPolicy) -> None:
        """Store a newly published version (its number must be new)."""

    # approvals
    def approval(self, approval_id: str) -> ApprovalRecord | None:
        """One approval, or None."""

    def approvals(self, status: str | None = None, limit: int = 100) -> list[ApprovalRecord]:
        """The newest ``limit`` approvals (with ``status``, when given), oldest first."""

    def set_approval(
        self,
        approval_id: str,
        expect: str,
        status: str,
        approver: str | None,
        statement_digest: str | None,
        log_index: int | None,
    ) -> bool:
        """Move an approval from ``expect`` to ``status`` (None keeps a field); False if it was not in ``expect``."""

    def approval_log_index(self, statement_digest: str) -> int | None:
        """Where the approval statement with this digest was logged."""

    def approval_by_statement(self, statement_digest: str) -> ApprovalRecord | None:
        """The approval decided by the approval statement with this digest, or None."""

    def pending_approval(self, action_digest: str, runtime: str, now: float) -> ApprovalRecord | None:
        """The newest approval still pending and unexpired at ``now`` that ``runtime`` asked for
        this action, or None (an indexed lookup: asked on every pending decision)."""

    def pending_expired(self, now: float) -> list[str]:
        """The ids of pending approvals whose time ran out by ``now``."""

    # revocations
    def add_revocation(
        self, kind: str, target: str, reason: str, at: float, log_index: int, expires: float | None = None
    ) -> int:
        """Store a logged revocation; returns its epoch. ``expires``: when it stops mattering, or None."""

    def revocations_since(self, epoch: int, live_at: float | None = None) -> list[Revocation]:
        """Revocations after ``epoch``, in epoch order; with ``live_at``, only those that still matter then."""

    def revocation_epoch(self) -> int:
        """The epoch of the latest revocation (0 before any)."""

    def is_revoked(self, kind: str, target: str) -> bool:
        """Whether ``target`` of ``kind`` was ever revoked."""

    def revocation_log_indexes(self, targets: Sequence[tuple[str, str]]) -> list[int]:
        """Where the revocations of any of ``targets`` (kind, target) were logged, in log order."""

    # single-use permits
    def consume(self, jti: str, at: float) -> bool:
        """Mark a single-use permit used; False if it already was."""

    def is_consumed(self, jti: str) -> bool:
        """Whether a single-use permit was used."""

    # renewal chains and lineage (docs/formats.md, "Renewal and revocation")
    def claim_renewal(self, predecessor: str, successor: str, at: float) -> bool:
        """Atomically record that ``successor`` renews ``predecessor``; False if it already has one.

        One insert-if-absent on a unique key: of any number of concurrent renewals of one permit,
        across processes too, exactly one is claimed.
        """

    def successor_of(self, predecessor: str) -> str | None:
        """The permit that renewed ``predecessor``, or None."""

    def ancestry(self, jti: str) -> list[str]:
        """``jti``, the permits it renews (transitively) and its lineage parents (theirs too): every
        permit whose revocation covers ``jti``. Reads the evidence index's permits (same database)."""

    def covered(self, roots: Sequence[str]) -> dict[str, float]:
        """Every issued permit a revocation of ``roots`` covers (them, their renewal successors and
        lineage descendants, transitively) → its ``exp``. Reads the evidence index's permits."""

    def coverage(self, roots: Sequence[str]) -> dict[str, tuple[str, float]]:
        """As :meth:`covered` for many roots at once, without the roots themselves: each issued
        permit their revocations cover → (the root that covers it, its ``exp``). One walk for all
        roots, so a trust state listing many revocations costs what they cover."""

    def close(self) -> None:
        """Release connections. Idempotent."""
