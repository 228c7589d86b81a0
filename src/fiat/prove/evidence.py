"""Evidence: sign in-toto statements in DSSE, log them (and permits), assemble bundles.

Every permit and every statement is appended to the transparency log as its
exact signed bytes (the compact JWS; the RFC 8785 form of the DSSE envelope).
:class:`EvidenceRecorder` does that and keeps an index from permit id to log
entries, from which :meth:`EvidenceRecorder.bundle` builds the
``application/vnd.fiat.bundle.v1+json`` file that ``fiat verify`` checks offline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.errors import FiatError, NotFoundError
from fiat.formats import jws
from fiat.formats.canonical import canonical_built
from fiat.formats.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, sign_envelope
from fiat.formats.encoding import json_digest, loads_strict, rfc3339
from fiat.formats.jcs import canonicalize
from fiat.formats.statement import (
    APPROVAL,
    DECISION,
    KEY_ROTATION,
    POLICY,
    RECEIPT,
    REVOCATION,
    Statement,
    Subject,
)
from fiat.persist.protocols import EvidenceIndex, LogWriter
from fiat.persist.records import EvidenceLink, PermitRecord, StagedRow
from fiat.prove.log import AppendResult, TransparencyLog
from fiat.tlog.checkpoint import SignedCheckpoint
from fiat.tlog.proof_file import TlogProof
from fiat.verify.bundle import MAX_ANCESTORS, MAX_RENEWALS, Bundle, BundlePermit, BundleStatement
from fiat.verify.permit import permit_principal

if TYPE_CHECKING:
    from fiat.prove.witnessing import WitnessCollector

KIND_BY_TYPE = {
    DECISION: "decision",
    APPROVAL: "approval",
    REVOCATION: "revocation",
    RECEIPT: "receipt",
    POLICY: "policy",
    KEY_ROTATION: "key-rotation",
}


# -- statements ------------------------------------------------------------------------


def decision_statement(
    *,
    decision: str,
    reason: str,
    request: dict[str, Any],
    request_digest: str,
    policy: dict[str, Any],
    at: float,
    permit: tuple[str, str] | None = None,
    evidence_digest: str | None = None,
    approval_id: str | None = None,
    context_digest: str | None = None,
    shadow: Sequence[dict[str, Any]] = (),
    approval_group: str | None = None,
) -> Statement:
    """A decision (allow, deny or pending). Denials are evidence too.

    ``shadow`` holds what shadow policies would have decided (evaluated and logged,
    not enforced); ``context_digest`` spares re-canonicalizing the request's context.
    ``approval``: for a pending decision the approval it opened (``id``) and the approver
    group it needs (``group``); for an allow that consumed approvals, that ``group`` — what
    the verifier holds each approval's signing key to (docs/formats.md, "Approvals").
    """
    if decision not in ("allow", "deny", "pending"):
        raise ValueError("decision must be allow, deny or pending")
    predicate: dict[str, Any] = {
        "decision": decision,
        "reason": reason,
        "time": rfc3339(at),
        "request": {k: request[k] for k in ("principal", "action", "resource", "parent")},
        "inputs": {
            "actionRequest": {"sha256": request_digest},
            "context": {
                "sha256": context_digest if context_digest is not None else json_digest(request.get("context", {}))
            },
            "evidence": None if evidence_digest is None else {"sha256": evidence_digest},
        },
        "policy": policy,
        "permit": None if permit is None else {"jti": permit[0], "digest": {"sha256": permit[1]}},
        "approval": _approval_member(approval_id, approval_group),
    }
    if shadow:
        predicate["shadow"] = [dict(s) for s in shadow]
    return Statement((Subject("action-request", request_digest),), DECISION, predicate)


def _approval_member(approval_id: str | None, group: str | None) -> dict[str, str] | None:
    member = {} if approval_id is None else {"id": approval_id}
    if group is not None:
        member["group"] = group
    return member or None


def approval_statement(
    *, approval_id: str, decision: str, approver: str, request_digest: str, at: float, reason: str = ""
) -> Statement:
    if decision not in ("approve", "deny"):
        raise ValueError("an approval decision is approve or deny")
    predicate = {"id": approval_id, "decision": decision, "approver": approver, "time": rfc3339(at), "reason": reason}
    return Statement((Subject("action-request", request_digest),), APPROVAL, predicate)


def revocation_statement(*, kind: str, target: str, reason: str, epoch: int, at: float) -> Statement:
    if kind not in ("permit", "principal", "runtime"):
        raise ValueError("a revocation targets a permit, a principal or a runtime")
    digest = json_digest({"kind": kind, "target": target})
    predicate = {"kind": kind, "target": target, "reason": reason, "epoch": epoch, "time": rfc3339(at)}
    return Statement((Subject(f"{kind}:{target}", digest),), REVOCATION, predicate)


def receipt_statement(
    *,
    permit_id: str,
    permit_digest: str,
    start: float,
    end: float,
    outcome: str,
    exit_code: int | None,
    halt_reason: str | None,
    verifications: int,
    verification_chain: str,
    measurement_start: dict[str, Any],
    measurement_end: dict[str, Any],
    outputs: Sequence[tuple[str, str]] = (),
    execution_start: float | None = None,
    renewed_from: Sequence[str] = (),
    containment: str | None = None,
    heartbeat_ms: int | None = None,
    arguments_digest: str | None = None,
    result_digest: str | None = None,
) -> Statement:
    """A receipt. ``start`` is when this permit began governing the execution (for a renewed
    permit, the renewal); ``execution_start`` is when the action itself started;
    ``containment`` which containment held it (absent: not recorded); ``heartbeat_ms`` the
    guard's re-verification interval, which the verifier holds ``verifications`` to
    (docs/formats.md, "What a receipt may claim"; absent: not recorded). A governed tool call
    (:mod:`fiat.mcp`) adds ``arguments_digest`` and ``result_digest``: SHA-256 (hex) of the RFC 8785
    form of the call's arguments object (the action request's context) and of its result."""
    if outcome not in ("completed", "failed", "halted"):
        raise ValueError("outcome is completed, failed or halted")
    predicate: dict[str, Any] = {
        "permit": {"jti": permit_id, "digest": {"sha256": permit_digest}},
        "start": rfc3339(start),
        "end": rfc3339(end),
        "outcome": outcome,
        "exitCode": exit_code,
        "haltReason": halt_reason,
        "verifications": {"count": verifications, "chain": {"sha256": verification_chain}},
        "measurements": {"start": measurement_start, "end": measurement_end},
        "outputs": [{"name": n, "digest": {"sha256": d}} for n, d in outputs],
        "executionStart": rfc3339(start if execution_start is None else execution_start),
        "renewedFrom": list(renewed_from),
    }
    if containment is not None:
        predicate["containment"] = containment
    if heartbeat_ms is not None:
        predicate["heartbeatMs"] = heartbeat_ms
    if arguments_digest is not None:
        predicate["argumentsDigest"] = {"sha256": arguments_digest}
    if result_digest is not None:
        predicate["resultDigest"] = {"sha256": result_digest}
    return Statement((Subject("permit", permit_digest),), RECEIPT, predicate)


def policy_statement(*, digest: str, version: int, files: dict[str, str], at: float) -> Statement:
    predicate = {"version": version, "time": rfc3339(at), "files": {k: {"sha256": v} for k, v in sorted(files.items())}}
    return Statement((Subject(f"policy-bundle:v{version}", digest),), POLICY, predicate)


def key_rotation_statement(
    *, role: str, name: str, old_kid: str, new_kid: str, new_public_key: bytes, at: float
) -> Statement:
    predicate = {
        "role": role,
        "name": name,
        "old": {"kid": old_kid},
        "new": {"kid": new_kid, "jwk": jws.jwk(new_public_key)},
        "time": rfc3339(at),
    }
    digest = hashlib.sha256(new_public_key).hexdigest()
    return Statement((Subject(f"key:{new_kid}", digest),), KEY_ROTATION, predicate)


def sign_statement(
    statement: Statement, signers: Sequence[tuple[str, Ed25519PrivateKey]], *, built: bool = False
) -> Envelope:
    """Sign a statement in DSSE. ``built``: the statement holds only values Fiat built (strings,
    small integers, booleans, null; no floats), so its RFC 8785 form needs no type walk."""
    payload = canonical_built(statement.to_json()) if built else canonicalize(statement.to_json())
    return sign_envelope(IN_TOTO_PAYLOAD_TYPE, payload, list(signers))


# -- recording and bundling -----------------------------------------------------------------


class EvidenceRecorder:
    """Appends permits and signed statements to the log and indexes them by permit id."""

    def __init__(self, log: TransparencyLog, index: EvidenceIndex) -> None:
        self.log = log
        self.index = index
        #: With witnesses (set by the server): bundles prove against the newest cosigned checkpoint
        #: that covers their entries, waited for up to ``witness_timeout`` seconds (log.witness_timeout_ms).
        self.witnesses: WitnessCollector | None = None
        self.witness_timeout = 2.0

    def record(
        self,
        permit: tuple[str, dict[str, Any]] | None = None,
        statements: Sequence[tuple[Envelope, str | None]] = (),
        *,
        claims: dict[str, Any] | None = None,
        kinds: Sequence[str] | None = None,
        request_bytes: bytes | None = None,
        runtime: str | None = None,
        links: Sequence[EvidenceLink] = (),
        rows: Sequence[StagedRow] = (),
    ) -> list[AppendResult]:
        """Append a permit (token, action request) and statements (envelope, permit id) as one batch.

        Returns one result per entry, the permit's first, once they are durable. The index
        rows pointing at the entries are written inside the same storage transaction as the
        entries themselves. ``claims`` (the permit's), ``kinds`` (one per statement),
        ``request_bytes`` (the request's RFC 8785 bytes) and ``runtime`` (the cnf key's
        thumbprint) spare re-parsing and re-encoding what the caller already has; ``links``
        attach already-logged entries in the same transaction; ``rows`` are further rows that
        must commit with these entries (the approval a pending decision opens).
        """
        futures = self.submit(
            permit,
            statements,
            claims=claims,
            kinds=kinds,
            request_bytes=request_bytes,
            runtime=runtime,
            links=links,
            rows=rows,
        )
        self.log.flush()  # staged by this thread (the decider): queue before waiting
        return [f.result() for f in futures]

    def submit(
        self,
        permit: tuple[str, dict[str, Any]] | None = None,
        statements: Sequence[tuple[Envelope, str | None]] = (),
        *,
        claims: dict[str, Any] | None = None,
        kinds: Sequence[str] | None = None,
        request_bytes: bytes | None = None,
        runtime: str | None = None,
        links: Sequence[EvidenceLink] = (),
        rows: Sequence[StagedRow] = (),
    ) -> list[Future[AppendResult]]:
        """As :meth:`record`, without waiting: one future per entry, resolved once durable."""
        entries: list[bytes] = []
        record_args = None
        if permit is not None:
            token, request = permit
            c = claims if claims is not None else jws.parse(token).claims
            parent = c.get("parent")
            parent_rec = self.index.permit(parent) if isinstance(parent, str) else None
            record_args = (
                c["jti"],
                parent,
                canonicalize(request) if request_bytes is None else request_bytes,
                permit_principal(c),
                runtime or jws.jwk_thumbprint(jws.public_key_from_jwk(c["cnf"]["jwk"], "cnf")),
                0 if parent_rec is None else parent_rec.depth + 1,
                float(c["exp"]),
                float(c["iat"]) if isinstance(c.get("iat"), int | float) else None,
            )
            entries.append(token.encode("ascii"))
        entries.extend(env.encode() for env, _ in statements)
        offset = 0 if permit is None else 1
        statement_kinds = (
            list(kinds)
            if kinds is not None
            else [
                KIND_BY_TYPE.get(Statement.from_envelope(env).predicate_type, "statement") if jti is not None else ""
                for env, jti in statements
            ]
        )

        def sidecar(writer: LogWriter, first: int) -> None:
            record = None
            if record_args is not None:
                jti, parent, request_bytes, sub, runtime, depth, exp, iat = record_args
                record = PermitRecord(jti, parent, request_bytes, first, sub, runtime, depth, exp, iat)
            own = [
                EvidenceLink(jti, statement_kinds[n], first + offset + n)
                for n, (_, jti) in enumerate(statements)
                if jti is not None
            ]
            own.extend(links)
            if record is not None or own:
                self.index.record_in(writer, record, own)
            for row in rows:
                writer.stage(row)

        return self.log.submit(entries, sidecar=sidecar)

    def record_permit(self, token: str, request: dict[str, Any]) -> AppendResult:
        return self.record(permit=(token, request))[0]

    def record_statement(self, envelope: Envelope, jti: str | None = None) -> AppendResult:
        return self.record(statements=[(envelope, jti)])[0]

    def link(self, jti: str, kind: str, log_index: int) -> None:
        """Attach an already-logged statement (e.g. an approval) to a permit's evidence."""
        self.index.record(None, [EvidenceLink(jti, kind, log_index)])

    def close(self) -> None:
        """Finish queued appends and release the log (which closes its store) and the index. Idempotent."""
        self.log.close()
        self.index.close()

    def bundle(
        self, jti: str, with_ancestors: bool = True, extra: Callable[[str], Sequence[int]] | None = None
    ) -> Bundle:
        """Assemble the evidence of one execution, every entry proven against one checkpoint.

        That checkpoint is the latest one; with witnesses (:attr:`witnesses`), the newest checkpoint
        their quorum cosigned that covers every entry of the bundle, waited for up to
        :attr:`witness_timeout` (the latest plain one when none comes in time); without a collector
        here (the CLI), the stored cosigned checkpoint once it covers them — waited for as long when
        the home has witnesses (:attr:`TransparencyLog.witnessing`: the server's collector stores it).
        Entries logged after the chosen checkpoint are left to a later bundle.

        ``extra(jti)`` names further logged statements that belong in a permit's part of the
        bundle though they are indexed under other ids: the authority passes the revocations that
        cover the permit (docs/formats.md, "Renewal and revocation").

        Each ancestor carries its ``renewals``: its renewal chain from its first successor up to
        the head its child names (``delegation.parentHead``), each permit with its proof, at most
        :data:`MAX_RENEWALS` (docs/formats.md, "Delegation").
        """
        cp = self.log.checkpoint()
        built = self._bundle_at(jti, cp, with_ancestors, extra)
        needed = _max_index(built) + 1
        if self.witnesses is None:  # no collector here (the CLI): a stored cosigned one, if it covers
            witnessed = self.log.witnessed_checkpoint()
            # The home's witnesses cosign through the server's collector, which stores what they
            # cosign: a bundle asked for just after its last entry waits for that, like the server's.
            deadline = time.monotonic() + (self.witness_timeout if self.log.witnessing else 0.0)
            while (witnessed is None or witnessed.size < needed) and time.monotonic() < deadline:
                time.sleep(0.05)
                witnessed = self.log.witnessed_checkpoint()
            if witnessed is None or witnessed.size < needed:
                return built
        else:
            witnessed = self.witnesses.wait_covering(needed, self.witness_timeout)
            if witnessed is None:
                return built
        return self._bundle_at(jti, witnessed, with_ancestors, extra)

    def _bundle_at(
        self,
        jti: str,
        cp: SignedCheckpoint,
        with_ancestors: bool,
        extra: Callable[[str], Sequence[int]] | None,
    ) -> Bundle:
        own = self._bundle(jti, cp, extra)
        if not with_ancestors:
            return own
        ancestors: list[Bundle] = []
        child = own
        parent = own.permit.claims.get("parent")
        seen = {jti}
        while isinstance(parent, str):
            if parent in seen or len(ancestors) >= MAX_ANCESTORS:
                raise FiatError(f"the lineage of {jti} loops or is deeper than {MAX_ANCESTORS}")
            seen.add(parent)
            anc = self._bundle(parent, cp, extra)
            delegation = child.permit.claims.get("delegation")
            head = delegation.get("parentHead") if isinstance(delegation, dict) else None
            if isinstance(head, str) and head != parent:
                anc = dataclasses.replace(anc, renewals=self._renewals(parent, head, cp))
            ancestors.append(anc)
            child, parent = anc, anc.permit.claims.get("parent")
        return dataclasses.replace(own, ancestors=tuple(ancestors))

    def _renewals(self, parent: str, head: str, cp: SignedCheckpoint) -> tuple[BundlePermit, ...]:
        """``parent``'s renewal chain after it, up to ``head``: walked back from ``head`` by each
        permit's ``renews``; refused beyond :data:`MAX_RENEWALS` or when ``head`` is no renewal of it."""
        out: list[BundlePermit] = []
        at: object = head
        while at != parent:
            if len(out) >= MAX_RENEWALS:
                raise FiatError(
                    f"the renewal chain of parent permit {parent} up to {head} is longer than {MAX_RENEWALS} "
                    "permits, the most a bundle carries for one link; this bundle cannot be built"
                )
            record = self.index.permit(at) if isinstance(at, str) else None
            if record is None:
                raise FiatError(f"permit {head} is not a renewal of {parent}: the chain breaks at {at!r}")
            token = jws.parse(self.log.read_entries(record.log_index, record.log_index + 1)[0].decode("ascii"))
            out.append(BundlePermit(token, self._proof(record.log_index, cp)))
            at = token.claims.get("renews")
        return tuple(reversed(out))

    def _proof(self, index: int, cp: SignedCheckpoint) -> TlogProof:
        """The inclusion proof of entry ``index`` in the tree of ``cp``, carrying ``cp``'s own note
        (not the latest checkpoint's: the path is for ``cp.size``)."""
        path, _ = self.log.inclusion_proof(index, cp.size)
        return TlogProof(index, tuple(path), cp.note_bytes)

    def _bundle(self, jti: str, cp: SignedCheckpoint, extra: Callable[[str], Sequence[int]] | None = None) -> Bundle:
        size = cp.size
        permit = self.index.permit(jti)
        if permit is None:
            raise NotFoundError(f"no permit {jti!r} in this home's evidence; check the id (`fiat verify` prints it)")
        request_bytes, permit_index = permit.request, permit.log_index
        token = self.log.read_entries(permit_index, permit_index + 1)[0].decode("ascii")
        statements = []
        if permit_index >= size:
            raise FiatError(f"permit {jti} (log entry {permit_index}) is not in the checkpoint of size {size}")
        # Only what this checkpoint covers: an entry indexed since it was read belongs to a later bundle.
        links = self.index.entries(jti)
        indexes = {link.log_index for link in links if link.kind != "permit" and link.log_index < size}
        if extra is not None:
            indexes.update(i for i in extra(jti) if i < size)  # proven against this checkpoint
        for idx in sorted(indexes):
            env = Envelope.parse(self.log.read_entries(idx, idx + 1)[0])
            statements.append(BundleStatement(env, Statement.from_envelope(env), self._proof(idx, cp)))
        request = loads_strict(request_bytes, "action request")
        return Bundle(request, jws.parse(token), self._proof(permit_index, cp), tuple(statements))


def _max_index(b: Bundle) -> int:
    """The largest log index a bundle (with its ancestors and their renewals) proves."""
    indexes = [b.permit_proof.index, *(s.tlog_proof.index for s in b.statements)]
    indexes.extend(r.tlog_proof.index for r in b.renewals)
    indexes.extend(_max_index(a) for a in b.ancestors)
    return max(indexes)
