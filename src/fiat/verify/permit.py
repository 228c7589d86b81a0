"""The one set of permit rules, shared by the offline verifier and the runtime guard.

A permit is a compact JWS (RFC 7515) whose claims bind an action to a runtime key.
Each rule below is one named step; a failure raises :class:`VerificationError`
naming it. The verifier (:mod:`fiat.verify.verifier`) runs the *static* rules on
a bundle's permit; the guard (:mod:`fiat.enforce.guard`) runs the same static
rules, then the *live* ones against what is about to run.

Static rules (:func:`check_permit`), in order:

1. ``permit-signature``    ``typ`` is ``fiat-permit+jwt``; ``kid`` names an authority key of
                           the trust root; the Ed25519 signature verifies (RFC 7515 §5.2,
                           RFC 8037 §3.1, RFC 9864).
2. ``permit-key-validity`` that authority key was valid at the permit's ``iat`` (the time it
                           claims) *and* when the permit is used: a retired or not-yet-valid key
                           signs nothing, and a permit signed before its key was retired (a
                           rotation, :mod:`fiat.keys.rotation`) is not used after. "Used" is
                           the guard's clock when it accepts the permit (establishment or
                           renewal, :func:`check_for_execution`), and for the offline verifier
                           the receipt's ``start`` (when the guard began acting on it, less the
                           verifier's clock skew).
3. ``permit-claims``       ``iss`` is the trust root's issuer; ``aud`` is, or contains, its
                           audience (RFC 7519 §4.1.3); ``iat nbf exp`` are NumericDates with
                           ``nbf <= exp`` and ``iat <= exp``; ``jti sub`` non-empty (RFC 7519
                           §4.1); ``cnf.jwk`` an Ed25519 OKP key (RFC 7800 §3.2, RFC 8037 §2);
                           the action, policy, environment, constraints, approvals and parent
                           claims well-formed; ``scope`` (at most 256 action/resource pairs),
                           ``act`` (RFC 8693 §4.1: nested ``{"sub", "act"}``, present only with a
                           parent) and ``delegation`` well-formed when present.
4. ``runtime-key``         the ``cnf`` key is a runtime key of the trust root, valid at ``iat``.

Live rules (:func:`check_for_execution`), the guard's before it starts or keeps
running an action:

5. ``permit-window``       ``nbf - skew <= now < exp`` on the guard's clock.
6. ``permit-cnf``          the ``cnf`` key is this runtime's own key.
7. ``permit-action``       the permit's action digest is the digest of what is about to run.
8. ``permit-environment``  the permit's environment digest is a fresh measurement's.

A permit's principal is :func:`permit_principal`: ``act.sub`` (the current actor, RFC 8693
§4.1) on a delegated permit, else ``sub``; every reader of a permit's principal goes through it.

No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fiat.errors import MalformedError, VerificationError
from fiat.formats import jws
from fiat.formats.action import check_scope
from fiat.formats.statement import is_sha256_hex
from fiat.verify.trust_root import MAX_LINEAGE_DEPTH, TrustedKey, TrustRoot

PERMIT_TYP = "fiat-permit+jwt"
#: Seconds after its ``exp`` a permit may still be renewed (a renewal delayed by the network;
#: docs/formats.md, "Renewal and revocation"): the authority's rule, which the verifier holds
#: the renewals of a delegating parent to.
RENEWAL_GRACE = 5.0


@dataclass(frozen=True)
class CheckedPermit:
    """A permit that passed the static rules, with the facts they established."""

    parsed: jws.Jws
    authority: TrustedKey
    runtime: TrustedKey
    cnf_key: bytes
    action_digest: str
    environment_digest: str

    @property
    def claims(self) -> dict[str, Any]:
        return self.parsed.claims


def numeric_date(claims: dict[str, Any], name: str) -> int:
    """An RFC 7519 §2 NumericDate, as Fiat writes it: non-negative integer seconds."""
    v = claims.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise VerificationError("permit-claims", f"claim {name!r} must be a NumericDate (integer seconds)")
    return v


def digest_of(obj: Any, where: str, step: str) -> str:
    """The sha256 of an in-toto style digest set ``{"sha256": "<hex>"}``."""
    if not isinstance(obj, dict) or not is_sha256_hex(obj.get("sha256")):
        raise VerificationError(step, f"{where} must be a digest set with a lower-case hex sha256")
    return str(obj["sha256"])


# -- delegation (RFC 8693 §4.1) ------------------------------------------------------------
def permit_principal(claims: dict[str, Any]) -> str:
    """The principal a permit was issued to: ``act.sub`` when ``act`` is present (the current actor,
    RFC 8693 §4.1: "the outermost act claim represents the current actor"), else ``sub``."""
    act = claims.get("act")
    if isinstance(act, dict) and isinstance(act.get("sub"), str):
        return str(act["sub"])
    return str(claims.get("sub", ""))


def chain_principals(claims: dict[str, Any]) -> list[str]:
    """Every principal of a permit's delegation chain: the current actor first, then each prior
    actor (``act`` nested, least recent innermost), then ``sub`` (the root, on whose behalf all act).
    A root permit's chain is its ``sub`` alone. Shape-checked by :func:`check_claims`."""
    actors: list[str] = []
    act = claims.get("act")
    while isinstance(act, dict) and isinstance(act.get("sub"), str) and len(actors) <= MAX_LINEAGE_DEPTH:
        actors.append(act["sub"])
        act = act.get("act")
    sub = claims.get("sub")
    return [*actors, sub] if isinstance(sub, str) else actors


def act_chain(actors: list[str]) -> dict[str, Any] | None:
    """The nested ``act`` claim of actors given current first (RFC 8693 §4.1: the least recent
    actor most deeply nested); None for no actors (a root permit carries no ``act``)."""
    act: dict[str, Any] | None = None
    for principal in reversed(actors):
        act = {"sub": principal} if act is None else {"sub": principal, "act": act}
    return act


def _check_act(act: Any, step: str) -> None:
    depth = 0
    while act is not None:
        depth += 1
        if depth > MAX_LINEAGE_DEPTH + 1:
            raise VerificationError(step, f"act nests deeper than {MAX_LINEAGE_DEPTH + 1} actors")
        if not isinstance(act, dict) or not isinstance(act.get("sub"), str) or not act["sub"]:
            raise VerificationError(step, "act must be an object with a non-empty sub (RFC 8693 §4.1)")
        extra = sorted(set(act) - {"sub", "act"})
        if extra:
            raise VerificationError(step, f"act holds members other than sub and act: {extra}")
        act = act.get("act")


# -- static rules ---------------------------------------------------------------------------
def check_authority_signature(parsed: jws.Jws, root: TrustRoot, *, typ: str, step: str) -> TrustedKey:
    """``typ`` is as expected, ``kid`` names an authority key of the trust root, and its signature verifies.

    The rule for everything the authority signs as a JWS (permits, trust states); returns the key.
    """
    h = parsed.header
    if h.get("typ") != typ:
        raise VerificationError(step, f"typ must be {typ!r}, not {h.get('typ')!r}")
    kid = h.get("kid")
    key = root.find(kid, "authority") if isinstance(kid, str) else None
    if key is None:
        raise VerificationError(step, f"kid {kid!r} is not an authority key of the trust root")
    jws.verify_signature(parsed, key.public_key, step)
    return key


def check_signature(parsed: jws.Jws, root: TrustRoot) -> TrustedKey:
    """Step ``permit-signature``: returns the authority key that signed it."""
    return check_authority_signature(parsed, root, typ=PERMIT_TYP, step="permit-signature")


def check_key_validity(authority: TrustedKey, claims: dict[str, Any], used_at: float | None = None) -> None:
    """Step ``permit-key-validity``: the key was valid at ``iat`` and, given ``used_at``, then too."""
    iat = numeric_date(claims, "iat")
    if not authority.valid_at(iat):
        raise VerificationError(
            "permit-key-validity",
            f"authority key {authority.kid} was not valid when the permit was issued "
            f"(iat {iat}; key valid {authority.period()})",
        )
    if used_at is not None and not authority.valid_at(max(float(iat), used_at)):
        raise VerificationError(
            "permit-key-validity",
            f"authority key {authority.kid} is not valid when the permit is used (at {used_at:.3f}; key valid "
            f"{authority.period()}): it was retired; ask the authority for a permit signed by its current key",
        )


def check_claims(claims: dict[str, Any], root: TrustRoot) -> tuple[bytes, str, str]:
    """Step ``permit-claims``: returns the cnf key, the action digest and the environment digest."""
    c = claims
    step = "permit-claims"
    if c.get("iss") != root.issuer:
        raise VerificationError(step, f"iss {c.get('iss')!r} is not the trust root's issuer {root.issuer!r}")
    aud = c.get("aud")
    if not (aud == root.audience or (isinstance(aud, list) and root.audience in aud)):
        raise VerificationError(step, f"aud {aud!r} does not include {root.audience!r}")
    iat, nbf, exp = numeric_date(c, "iat"), numeric_date(c, "nbf"), numeric_date(c, "exp")
    if not nbf <= exp:
        raise VerificationError(step, "nbf is after exp")
    if iat > exp:
        raise VerificationError(step, "iat is after exp")
    for name in ("jti", "sub"):
        if not isinstance(c.get(name), str) or not c[name]:
            raise VerificationError(step, f"claim {name!r} must be a non-empty string")
    cnf = c.get("cnf")
    if not isinstance(cnf, dict) or "jwk" not in cnf:
        raise VerificationError(step, "cnf must hold the runtime's public key as a JWK (RFC 7800 §3.2)")
    try:
        cnf_key = jws.public_key_from_jwk(cnf["jwk"], "cnf.jwk")
    except MalformedError as exc:
        raise VerificationError(step, exc.reason) from exc
    action = c.get("action")
    if not isinstance(action, dict) or not isinstance(action.get("name"), str):
        raise VerificationError(step, "the action claim needs a name, a resource and a digest")
    action_digest = digest_of(action.get("digest"), "action.digest", step)
    policy = c.get("policy")
    if not isinstance(policy, dict):
        raise VerificationError(step, "the policy claim must be an object")
    digest_of(policy.get("digest"), "policy.digest", step)
    environment = c.get("environment")
    if not isinstance(environment, dict):
        raise VerificationError(step, "the environment claim must be an object with a digest")
    environment_digest = digest_of(environment.get("digest"), "environment.digest", step)
    constraints = c.get("constraints", {})
    if not isinstance(constraints, dict):
        raise VerificationError(step, "constraints must be an object")
    approvals = c.get("approvals", [])
    if not isinstance(approvals, list) or not all(is_sha256_hex(a) for a in approvals):
        raise VerificationError(step, "approvals must be a list of sha256 hex digests")
    if c.get("parent") is not None and not isinstance(c.get("parent"), str):
        raise VerificationError(step, "parent must be a permit id or null")
    if "renews" in c and not isinstance(c["renews"], str):
        raise VerificationError(step, "renews must be a permit id (present only on a renewal)")
    if "scope" in c:
        try:
            check_scope(c["scope"], "the scope claim")
        except MalformedError as exc:
            raise VerificationError(step, str(exc)) from exc
    if "act" in c:
        if c.get("parent") is None:
            raise VerificationError(step, "act is present on a permit without a parent (a root permit has no actor)")
        _check_act(c["act"], step)
    delegation = c.get("delegation")
    if "delegation" in c and (
        not isinstance(delegation, dict)
        or not isinstance(delegation.get("depth"), int)
        or not isinstance(delegation.get("ancestors"), list)
    ):
        raise VerificationError(step, "delegation must be an object with a depth and a list of ancestors")
    if isinstance(delegation, dict) and "parentHead" in delegation and not isinstance(delegation["parentHead"], str):
        raise VerificationError(step, "delegation.parentHead must be a permit id (the parent chain's live head)")
    return cnf_key, action_digest, environment_digest


def check_runtime_key(cnf_key: bytes, claims: dict[str, Any], root: TrustRoot) -> TrustedKey:
    """Step ``runtime-key``: the cnf key is a runtime key of the trust root, valid at ``iat``."""
    kid = jws.jwk_thumbprint(cnf_key)
    key = root.find(kid, "runtime")
    if key is None:
        raise VerificationError("runtime-key", f"cnf key {kid} is not a runtime key of the trust root")
    iat = numeric_date(claims, "iat")
    if not key.valid_at(iat):
        raise VerificationError("runtime-key", f"runtime key {key.kid} was not valid at iat (valid {key.period()})")
    return key


def check_permit(parsed: jws.Jws, root: TrustRoot, used_at: float | None = None) -> CheckedPermit:
    """Run the static rules 1-4 in order (rule 2 also at ``used_at``, when given); the first failure raises."""
    authority = check_signature(parsed, root)
    check_key_validity(authority, parsed.claims, used_at)
    cnf_key, action_digest, environment_digest = check_claims(parsed.claims, root)
    runtime = check_runtime_key(cnf_key, parsed.claims, root)
    return CheckedPermit(parsed, authority, runtime, cnf_key, action_digest, environment_digest)


# -- live rules -----------------------------------------------------------------------------
def check_for_execution(
    token: str,
    root: TrustRoot,
    *,
    runtime_public: bytes,
    action_digest: str,
    environment_digest: str,
    now: float,
    skew: float,
) -> CheckedPermit:
    """All eight rules for a permit the guard is about to act on (steps 1-8)."""
    try:
        parsed = jws.parse(token)
    except MalformedError as exc:
        raise VerificationError("permit-signature", f"the permit is not a JWS: {exc.reason}") from exc
    checked = check_permit(parsed, root, used_at=now)
    claims = checked.claims
    if not claims["nbf"] - skew <= now < claims["exp"]:
        raise VerificationError("permit-window", "the permit is not valid now")
    if checked.cnf_key != runtime_public:
        raise VerificationError("permit-cnf", "the permit is bound to another runtime key")
    if checked.action_digest != action_digest:
        raise VerificationError("permit-action", "the permit is for another action than the one about to run")
    if checked.environment_digest != environment_digest:
        raise VerificationError("permit-environment", "the permit was granted for another environment")
    return checked
