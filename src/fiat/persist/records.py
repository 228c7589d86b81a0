"""What the stores return and what a log batch stages: typed, frozen records (no raw tuples).

Each record mirrors one row of the storage contract (:mod:`fiat.persist.protocols`), so a
backend and its callers agree on names rather than on column positions. Times are POSIX
seconds (floats); digests are lower-case hex SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
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
    iat: float | None = None  # issued at (schema 5; None only where the permit's log entry had none)


@dataclass(frozen=True, slots=True)
class EvidenceLink:
    """One log entry that belongs to the evidence of a permit (``kind``: permit, decision, approval, receipt…)."""

    jti: str
    kind: str
    log_index: int


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """A request for human approval and what became of it.

    A new one (``status`` pending, no approver yet) is staged in the log batch that logs the
    pending decision opening it, so neither exists without the other.
    """

    id: str
    action_digest: str
    request: bytes  # the RFC 8785 action request
    group: str
    requested_at: float
    expires_at: float
    status: str = "pending"  # pending | approved | denied | expired | used
    approver: str | None = None
    statement_digest: str | None = None  # of the approver's signed approval/v1 statement
    log_index: int | None = None  # where that statement was logged
    runtime: str | None = None  # the kid of the runtime that asked (None: recorded before schema 2)


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """A published policy version, as ``fiat policy history`` lists it."""

    version: int
    digest: str  # the bundle digest
    published_at: float
    log_index: int  # the policy statement's


@dataclass(frozen=True, slots=True)
class StoredPolicy(PolicyVersion):
    """A published policy version with its files (JSON object: file name → base64 of its bytes)."""

    files: str


@dataclass(frozen=True, slots=True)
class Revocation:
    """A logged revocation; ``epoch`` counts revocations from 1, in the order they were stored."""

    epoch: int
    kind: str  # permit | principal | runtime
    target: str
    reason: str
    at: float


#: A row a log batch writes in its own transaction (:meth:`fiat.persist.protocols.LogWriter.stage`).
StagedRow = PermitRecord | EvidenceLink | ApprovalRecord
