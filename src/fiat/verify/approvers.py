"""Step 9 (``approvals``), the approver rules: who may approve, judged by the trust root alone.

An approval the permit names counts only when a key that validly signed it (docs/formats.md,
"Approvals"):

* is an ``approver`` key of the trust root, valid at the approval's ``time``;
* belongs to the approver group the permit's allow decision names (its ``approval.group``,
  signed by the authority): ``@approval("ops")`` needs a key whose ``groups`` list ``ops``;
  the group ``default`` (``@approval`` naming none) any approver key;
* is not held by the principal who asked: the key's ``identity`` (``user:<name>`` when the
  trust root gives none), compared with the action request's principal in the principal's
  one spelling (``user:alice`` is ``User::"alice"``).

An allow decision from before approvals named their group names none; then the group rule
has nothing to hold the approval to, and the others still apply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from fiat.errors import MalformedError, VerificationError
from fiat.formats.action import entity_uid
from fiat.formats.encoding import parse_time
from fiat.formats.statement import DECISION
from fiat.verify.bundle import Bundle, BundleStatement
from fiat.verify.trust_root import TrustedKey, TrustRoot

STEP = "approvals"


def required_group(bundle: Bundle) -> str | None:
    """The approver group the allow decision for this permit names, or None (a decision from before)."""
    jti, digest = bundle.permit.claims.get("jti"), bundle.permit.digest
    for s in bundle.statements:
        p = s.statement.predicate
        permit = p.get("permit")
        if s.statement.predicate_type != DECISION or p.get("decision") != "allow" or not isinstance(permit, dict):
            continue
        if permit.get("jti") != jti or permit.get("digest") != {"sha256": digest}:
            continue
        approval = p.get("approval")
        group = approval.get("group") if isinstance(approval, dict) else None
        if group is not None and not isinstance(group, str):
            raise VerificationError(STEP, "the allow decision's approval group is not a string")
        return group
    return None


def _signers(s: BundleStatement, root: TrustRoot, label: str) -> list[TrustedKey]:
    """The approver keys that validly signed ``s``, valid at its time (after step 6 passed)."""
    try:
        at = parse_time(s.statement.predicate.get("time"), "approval time")
    except MalformedError as exc:
        raise VerificationError(STEP, f"{label}: {exc.reason}") from exc
    candidates = [
        (sig, key)
        for sig in s.envelope.signatures
        if (key := root.find(sig.keyid, "approver")) is not None and key.valid_at(at)
    ]
    if len(candidates) == 1:
        # Step 6 (statement-signatures) found a valid signature by a trusted approver key valid at
        # this time: with one candidate, it is this one (each signature is checked once).
        return [candidates[0][1]]
    return [key for sig, key in candidates if s.envelope.verify_signature(sig, key.public_key)]


def check_approvers(bundle: Bundle, root: TrustRoot, approvals: Sequence[BundleStatement]) -> None:
    """Each of ``approvals`` (the ones the permit names) is signed by an approver entitled to it."""
    group = required_group(bundle)
    try:
        principal = entity_uid(str(bundle.action_request.get("principal", "")), "principal")
    except MalformedError as exc:
        raise VerificationError(STEP, f"the action request's principal: {exc.reason}") from exc
    for s in approvals:
        label = f"approval {hashlib.sha256(s.entry).hexdigest()[:16]}…"
        signers = _signers(s, root, label)
        if not signers:
            raise VerificationError(STEP, f"{label} is not signed by an approver key of the trust root")
        entitled = [k for k in signers if group is None or k.approves_group(group)]
        if not entitled:
            held = "; ".join(f"{k.name} ({', '.join(k.groups) or 'no group'})" for k in signers)
            raise VerificationError(
                STEP,
                f"{label} is signed by approver {held}, not by an approver of group {group!r} "
                "(the group the decision requires)",
            )
        if all(k.principal == principal for k in entitled):
            raise VerificationError(
                STEP,
                f"{label} is signed by {entitled[0].name}, the principal who asked ({principal}): no self-approval",
            )
