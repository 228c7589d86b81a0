"""Why a decision came out as it did, in terms a user can act on.

Each explanation is derived from facts the authority already holds for the request:
whether Evidence was sent and how it was appraised (the Attestation Result, RFC 9334
§3), whether the bundle's entities know the principal and the resource, the
determining policies (Cedar's diagnostics: ``reasons``), located as ``file:line``, and
Cedar's evaluation errors. Nothing is re-evaluated.

The explanation travels in the authority's answer (``reasons``), not in the signed
decision statement, whose ``reason`` stays the one-line summary.

Imports: ``fiat.authorize.names`` and ``fiat.authorize.policy`` only.
"""

from __future__ import annotations

from typing import Any

from fiat.authorize.names import action_uid, entity_uid
from fiat.authorize.policy import Evaluation, PolicyBundle

NO_PERMIT = "no policy permits it (deny by default)"


def environment_fact(evidence: Any, attestation: dict[str, Any]) -> str | None:
    """Why the environment was not verified, or None when it was."""
    if attestation.get("verified"):
        return None
    if evidence is None:
        return "the environment was not verified because no Evidence was sent"
    return f"the environment was not verified: the Evidence was not accepted ({attestation.get('reason', '?')})"


def unknown_entities(bundle: PolicyBundle, principal: str, resource: str) -> list[str]:
    """The request's principal and resource that the bundle's entities.json does not hold."""
    facts = []
    for what, name in (("principal", principal), ("resource", resource)):
        uid = entity_uid(name, what)
        if not bundle.knows(uid):
            facts.append(f"{what} {uid} is unknown to the entities (entities.json of the active policy)")
    return facts


def denial(
    bundle: PolicyBundle,
    evaluation: Evaluation,
    *,
    principal: str,
    action: str,
    resource: str,
    evidence: Any,
    attestation: dict[str, Any],
) -> tuple[str, ...]:
    """A denial by policy: the forbidding policies, or what stood in the way of a permit."""
    if evaluation.determining:
        reasons = [f"forbidden by policy {bundle.where(name)}" for name in evaluation.determining]
    else:
        reasons = [NO_PERMIT]
        env = environment_fact(evidence, attestation)
        if env is not None:
            reasons.append(env)
        reasons.extend(unknown_entities(bundle, principal, resource))
        uid = action_uid(action)
        candidates = bundle.permits_for(uid)
        if not candidates:
            reasons.append(f"no permit policy of the active version is for action {uid}")
        else:
            names = ", ".join(bundle.where(name) for name in candidates)
            reasons.append(f"the permit policies for {uid} did not match: {names}")
    reasons.extend(evaluation.errors)
    return tuple(reasons)


def permitted(bundle: PolicyBundle, evaluation: Evaluation, *, pending: bool = False) -> tuple[str, ...]:
    """An allow, or a pending approval: the permitting policies (and who must approve)."""
    if not pending:
        return tuple(f"permitted by policy {bundle.where(name)}" for name in evaluation.determining)
    group = evaluation.obligations.approval or "default"
    return (
        f"an approval by {group} is required first",
        *(f"permitted by policy {bundle.where(name)} once approved" for name in evaluation.determining),
    )
