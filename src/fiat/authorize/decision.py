"""What a decision is asked and what it answers, in process.

:class:`AuthorizationRequest` is the input of the decision walk (step 2, ``request``,
checks and canonicalizes it: :func:`fiat.authorize.decider.check_request`);
:class:`AuthorizationResult` is its answer: allow (with the permit of step 8), deny or
pending (with the approval step 7 opened). ``to_json`` is the ``/v1/authorize`` response
body; :mod:`fiat.authorize.authority` re-exports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fiat.formats.encoding import rfc3339


@dataclass(frozen=True)
class AuthorizationRequest:
    principal: str
    action: str
    resource: str
    runtime_kid: str
    context: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    evidence: dict[str, Any] | None = None
    approval_id: str | None = None
    renews: str | None = None  # the permit this one renews (same action, same runtime)
    #: What this permit's descendants may be permitted: (action, resource) pairs (docs/formats.md,
    #: "Delegation"); signed into the permit as ``scope``, not part of the action digest.
    scope: list[dict[str, str]] | None = None


@dataclass(frozen=True)
class Lineage:
    """What step 4 established of a delegated request's parent (docs/formats.md, "Delegation")."""

    depth: int
    principals: tuple[str, ...]  # the parent's chain: its principal first, the root's last
    exp_cap: int  # the parent's live renewal chain head's exp: no child outlives it
    ancestors: tuple[str, ...]  # the distinct ancestor principals Cedar must also allow (not the child's)
    head: str = ""  # the jti of that head (the parent itself when it was never renewed)
    #: The parent's ``scope`` (None: it has none). A child asking for no scope of its own inherits
    #: it: a scope binds every descendant, not only the children (docs/formats.md, "Delegation").
    scope: tuple[dict[str, str], ...] | None = None


@dataclass(frozen=True)
class AuthorizationResult:
    decision: str  # allow | deny | pending
    reason: str
    action_digest: str | None = None
    permit: str | None = None
    permit_id: str | None = None
    decision_index: int | None = None
    permit_index: int | None = None
    approval_id: str | None = None
    approval_expires: float | None = None
    determining: tuple[str, ...] = ()
    shadow: tuple[dict[str, Any], ...] = ()
    obligations: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()  # why, for the caller (not part of the signed statement)

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "reasons": list(self.reasons or (self.reason,)),
            "actionDigest": self.action_digest,
            "permit": self.permit,
            "permitId": self.permit_id,
            "decisionLogIndex": self.decision_index,
            "permitLogIndex": self.permit_index,
            "approvalId": self.approval_id,
            "approvalExpires": None if self.approval_expires is None else rfc3339(self.approval_expires),
            "determiningPolicies": list(self.determining),
            "shadow": list(self.shadow),
            "obligations": self.obligations,
        }
