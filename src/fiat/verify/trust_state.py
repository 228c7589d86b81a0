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
from fiat.verify.permit import check_authority_signature
from fiat.verify.trust_root import TrustRoot

TRUST_STATE_TYP = "fiat-trust-state+jwt"


def verify_trust_state(token: str, root: TrustRoot) -> dict[str, Any]:
    """Check one trust-state JWS against the trust root; return its claims."""
    step = "trust-signature"
    try:
        parsed = jws.parse(token)
    except MalformedError as exc:
        raise VerificationError(step, f"the trust state is not a JWS: {exc.reason}") from exc
    key = check_authority_signature(parsed, root, typ=TRUST_STATE_TYP, step=step)
    iat = parsed.claims.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool) or not key.valid_at(iat):
        raise VerificationError(step, f"authority key {key.kid} was not valid when the state was signed")
    if parsed.claims.get("iss") != root.issuer:
        raise VerificationError(step, "the trust state names another issuer")
    return parsed.claims
