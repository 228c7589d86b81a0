"""The authority's signed trust state: the one check of its signature, shared by every guard.

A trust state is a compact JWS (``typ`` ``fiat-trust-state+jwt``, RFC 7515) that the
authority signs every interval and at once on a revocation (docs/formats.md,
"Trust state"). :func:`verify_trust_state` is two steps:

* ``trust-signature`` — signed by an authority key of the trust root (RFC 8037 §3.1) that
  was valid at the time the state claims (its ``iat`` and its ``time``: a key retired by a
  rotation, :mod:`fiat.keys.rotation`, signs no state dated after its ``validUntil``), for
  the trust root's issuer. A failure is cryptographic: guards halt.
* ``trust-key-validity`` — that key is still valid when the state is used (``now``, the
  guard's clock on arrival). A state signed just before a rotation and arriving after it
  is not forged, only superseded: it is refused (it gives no freshness), and freshness
  must come from a state signed by the successor key.

Ordering, revocation continuity, freshness and log continuity are the subscriber's steps
(:mod:`fiat.enforce.trust`). No I/O.
"""

from __future__ import annotations

from typing import Any

from fiat.errors import MalformedError, VerificationError
from fiat.formats import jws
from fiat.verify.permit import check_authority_signature
from fiat.verify.trust_root import TrustRoot

TRUST_STATE_TYP = "fiat-trust-state+jwt"


#: The step of a state whose key was valid when it was signed but has been retired since.
KEY_VALIDITY_STEP = "trust-key-validity"


def verify_trust_state(token: str, root: TrustRoot, now: float | None = None) -> dict[str, Any]:
    """Check one trust-state JWS against the trust root, and (with ``now``) its key at use; return its claims."""
    step = "trust-signature"
    try:
        parsed = jws.parse(token)
    except MalformedError as exc:
        raise VerificationError(step, f"the trust state is not a JWS: {exc.reason}") from exc
    key = check_authority_signature(parsed, root, typ=TRUST_STATE_TYP, step=step)
    iat, at = parsed.claims.get("iat"), parsed.claims.get("time")
    if not isinstance(iat, int) or isinstance(iat, bool) or not key.valid_at(iat):
        raise VerificationError(step, f"authority key {key.kid} was not valid when the state was signed")
    if not isinstance(at, int | float) or isinstance(at, bool) or not key.valid_at(at):
        raise VerificationError(
            step, f"authority key {key.kid} was not valid at the state's time {at!r} (key valid {key.period()})"
        )
    if parsed.claims.get("iss") != root.issuer:
        raise VerificationError(step, "the trust state names another issuer")
    if now is not None and not key.valid_at(now):
        raise VerificationError(
            KEY_VALIDITY_STEP,
            f"authority key {key.kid} is not valid now (key valid {key.period()}): a state signed "
            "before a key rotation is superseded; waiting for one signed by the current key",
        )
    return parsed.claims
