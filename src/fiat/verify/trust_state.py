"""The authority's signed trust state: the one check of its signature, shared by every guard.

A trust state is a compact JWS (``typ`` ``fiat-trust-state+jwt``, RFC 7515) that the
authority signs every interval and at once on a revocation (docs/formats.md,
"Trust state"). :func:`verify_trust_state` is step ``trust-signature``: signed by an
authority key of the trust root (RFC 8037 §3.1) that was valid at the state's
``iat``, for the trust root's issuer. Ordering, freshness and log continuity are the
subscriber's steps (:mod:`fiat.enforce.trust`). No I/O.
"""

from __future__ import annotations

from typing import Any

from fiat.errors import MalformedError, VerificationError
from fiat.formats import jws
from fiat.verify.trust_root import TrustRoot

TRUST_STATE_TYP = "fiat-trust-state+jwt"


def verify_trust_state(token: str, root: TrustRoot) -> dict[str, Any]:
    """Check one trust-state JWS against the trust root; return its claims."""
    step = "trust-signature"
    try:
        parsed = jws.parse(token)
    except MalformedError as exc:
        raise VerificationError(step, f"the trust state is not a JWS: {exc.reason}") from exc
    if parsed.header.get("typ") != TRUST_STATE_TYP:
        raise VerificationError(step, f"typ must be {TRUST_STATE_TYP}")
    kid = parsed.header.get("kid")
    key = root.find(kid, "authority") if isinstance(kid, str) else None
    if key is None:
        raise VerificationError(step, f"kid {kid!r} is not an authority key of the trust root")
    jws.verify_signature(parsed, key.public_key, step)
    iat = parsed.claims.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool) or not key.valid_at(iat):
        raise VerificationError(step, f"authority key {key.kid} was not valid when the state was signed")
    if parsed.claims.get("iss") != root.issuer:
        raise VerificationError(step, "the trust state names another issuer")
    return parsed.claims
