"""Human approvals: step 7 (``approval``) of the decision walk.

When an obligation of the permitting policy asks for a human, the decision is pending and
opens an approval (:meth:`fiat.authorize.outcomes.Outcomes.pending`); the same action asked
again by the same runtime gets the approval already open for it. An approver decides it
with a signed approval/v1 statement in DSSE, bound to the action digest
(:meth:`Approvals.decide`): the signing key must be an approver of the group the policy
names (``@approval("ops")``), and its holder must not be the principal who asked
(docs/formats.md, "Approvals"). A granted approval is used once, unexpired, by a request
that names it from the runtime that asked for it (:meth:`Approvals.use`). A renewal redeems
none: its successor names, for the record, the approvals of the permit it renews while the
policy asks the same group (:meth:`Approvals.renewed`), and is never single use
(docs/formats.md, "Renewal and revocation"). Pending approvals past their timeout become
logged denials (:meth:`Approvals.expire`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fiat.authorize.decision import AuthorizationRequest
from fiat.authorize.revocations import Revocations
from fiat.authorize.signing import AuthorityKeys, read_statement
from fiat.errors import (
    AlreadyDecidedError,
    ApprovalError,
    ApproverGroupError,
    ApproverSignatureError,
    SelfApprovalError,
    UnknownApprovalError,
)
from fiat.formats import jws
from fiat.formats.action import EncodedRequest, encode_action_request, entity_uid
from fiat.formats.dsse import Envelope
from fiat.formats.encoding import json_digest, rfc3339
from fiat.formats.statement import APPROVAL
from fiat.keys.keyring import KeyRecord
from fiat.persist.protocols import AuthorityStore
from fiat.persist.records import ApprovalRecord
from fiat.prove import evidence as ev

APPROVAL_TIMEOUT = 300.0
APPROVAL_VALIDITY = 600.0  # a granted approval must be used within this long


def approval_json(a: ApprovalRecord) -> dict[str, Any]:
    """An approval as approvers are shown it (``/v1/approvals``, ``fiat approvals``)."""
    return {
        "id": a.id,
        "status": a.status,
        "actionDigest": a.action_digest,
        "request": json.loads(a.request),
        "group": a.group,
        "requestedAt": rfc3339(a.requested_at),
        "expiresAt": rfc3339(a.expires_at),
        "approver": a.approver,
        "runtime": a.runtime,
    }


@dataclass(frozen=True)
class Redemption:
    """What became of the approval a request names: the digest of its statement, when granted to
    this request now, else why not (said in the pending decision that follows)."""

    statement_digest: str | None
    refusal: str | None = None


def check_entitled(approval: ApprovalRecord, signer: KeyRecord) -> None:
    """The approver rules (docs/formats.md, "Approvals"): a key of the group the request needs,
    held by someone other than the principal who asked (compared in the principal's one spelling)."""
    group = approval.group
    if not signer.approves_group(group):
        member = ", ".join(signer.groups) if signer.groups else "no group"
        raise ApproverGroupError(
            f"approval {approval.id} needs an approver of group {group!r}; approver key {signer.kid} "
            f"({signer.name}) is in {member}. An approver of group {group!r} must decide it "
            f"(approver keys get their groups at enrolment: `fiat keys add --role approver --group {group}`)"
        )
    principal = json.loads(approval.request)["principal"]
    if signer.principal == entity_uid(principal, "principal"):
        raise SelfApprovalError(
            f"approval {approval.id} was asked for by {principal}, who holds approver key {signer.kid} "
            f"({signer.name}): nobody approves their own request; another approver of group {group!r} must decide it"
        )


class Approvals:
    """Open approvals are rows of the authority store; every decision on one is logged."""

    def __init__(
        self,
        store: AuthorityStore,
        recorder: ev.EvidenceRecorder,
        keys: AuthorityKeys,
        revocations: Revocations,
        clock: Callable[[], float],
        deny: Callable[[EncodedRequest, float, str], object],
    ) -> None:
        self.store, self.recorder, self.keys, self.revocations = store, recorder, keys, revocations
        self.clock = clock
        self._deny = deny  # a logged denial, waited for

    def use(self, approval_id: str, digest: str, runtime: str, group: str, now: float) -> Redemption:
        """Consume a granted approval bound to this action, to the runtime that asked for it and to
        the approver ``group`` the policy asks for now.

        An approval is redeemed only by the runtime key that requested it (recorded with it since
        schema version 2; one recorded without a runtime is redeemed by none), once, unexpired, and
        only while the active policy still asks the group it was granted for: a policy that now asks
        another group (``@approval("ops")`` became ``@approval("sec")``) needs an approval of that
        group. Anything else leaves the approval as it was and says why it was not used.
        """
        a = self.store.approval(approval_id)
        if a is None or a.action_digest != digest:
            return Redemption(None, f"approval {approval_id} is not for this action")
        if a.runtime != runtime:
            return Redemption(None, f"approval {approval_id} was requested by another runtime")
        if a.group != group:
            return Redemption(
                None, f"approval {approval_id} was granted by group {a.group!r}; the policy now asks group {group!r}"
            )
        if a.status != "approved":
            return Redemption(None, f"approval {approval_id} is {a.status}, not approved")
        if a.expires_at + APPROVAL_VALIDITY < now:
            return Redemption(None, f"approval {approval_id} was granted too long ago to be used")
        if not self.store.set_approval(approval_id, "approved", "used", None, None, None):
            return Redemption(None, f"approval {approval_id} was used by another request")  # single use
        return Redemption(a.statement_digest)

    def renewed(self, req: AuthorizationRequest, digest: str, group: str, now: float) -> tuple[str, ...] | None:
        """Approvals of the permit being renewed, if it is this runtime's, for this action, and live,
        and each was granted for the ``group`` the policy asks for now."""
        assert req.renews is not None
        old = self.recorder.index.permit(req.renews)
        if old is None or old.runtime != req.runtime_kid or self.revocations.is_revoked("permit", req.renews):
            return None
        if json_digest(json.loads(old.request)) != digest or old.exp + 5 < now:
            return None
        token = self.recorder.log.read_entries(old.log_index, old.log_index + 1)[0].decode("ascii")
        claims = jws.parse(token).claims
        approvals = tuple(a for a in claims.get("approvals") or [] if isinstance(a, str))
        for d in approvals:
            granted = self.store.approval_by_statement(d)
            if granted is None or granted.group != group:
                return None  # the policy now asks another group: a new approval
        return approvals or None

    def get(self, approval_id: str) -> dict[str, Any]:
        self.expire()
        a = self.store.approval(approval_id)
        if a is None:
            raise UnknownApprovalError(f"no approval {approval_id!r}")
        return approval_json(a)

    def newest(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest approvals (with ``status``, when given), oldest first: what approvers are asked."""
        self.expire()
        return [approval_json(a) for a in self.store.approvals(status, limit)]

    def decide(self, approval_id: str, envelope: Envelope) -> dict[str, Any]:
        """Accept an approver's signed approval/denial (approval/v1 statement in DSSE)."""
        now = self.clock()
        self.expire()
        a = self.store.approval(approval_id)
        if a is None:
            raise UnknownApprovalError(f"no approval {approval_id!r}")
        if a.status != "pending":
            raise AlreadyDecidedError(f"approval {approval_id} is already {a.status}")
        statement = read_statement(envelope, APPROVAL, ApprovalError, "approval", "an approval/v1")
        p = statement.predicate
        if p.get("id") != approval_id or p.get("decision") not in ("approve", "deny"):
            raise ApprovalError("the approval names another request or has no decision")
        if statement.subject("action-request") != a.action_digest:
            raise ApprovalError("the approval is bound to another action")
        signers = []
        for sig in envelope.signatures:
            key = self.keys.ring.find(sig.keyid)
            usable = key is not None and key.role == "approver" and key.valid_at(now)
            if key is not None and usable and envelope.verify_with(key.kid, key.public_key):
                signers.append(key)
        if not signers:
            raise ApproverSignatureError("the approval is not signed by an enrolled, active approver key")
        signer = next((k for k in signers if k.name == p.get("approver")), None)
        if signer is None:
            raise ApproverSignatureError(
                f"the approval names {p.get('approver')!r} but is signed by {signers[0].name!r}"
            )
        check_entitled(a, signer)  # of the group asked for, and not the principal who asked
        index = self.recorder.record(statements=[(envelope, None)])[0].index
        status = "approved" if p["decision"] == "approve" else "denied"
        digest = hashlib.sha256(envelope.encode()).hexdigest()
        if not self.store.set_approval(approval_id, "pending", status, signer.name, digest, index):
            raise AlreadyDecidedError(f"approval {approval_id} was decided concurrently")
        return {"id": approval_id, "status": status, "approver": signer.name, "logIndex": index}

    def expire(self) -> list[str]:
        """Pending approvals past their timeout become denials (logged)."""
        now = self.clock()
        expired = []
        for approval_id in self.store.pending_expired(now):
            if not self.store.set_approval(approval_id, "pending", "expired", None, None, None):
                continue
            a = self.store.approval(approval_id)
            if a is None:
                continue
            r = json.loads(a.request)
            enc = encode_action_request(r["principal"], r["action"], r["resource"], r["context"], r["parent"])
            self._deny(enc, now, f"approval {approval_id} timed out; denied")
            expired.append(approval_id)
        return expired
