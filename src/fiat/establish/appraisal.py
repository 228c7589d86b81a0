"""Appraisal of runtime Evidence into an Attestation Result (RATS, RFC 9334 §3).

Step 3 (``evidence``) of the authority's decision walk (see
:mod:`fiat.authorize.authority`): the Evidence a runtime measured
(:mod:`fiat.establish.measure`) is ``verified`` iff its digest recomputes over its
claims (RFC 8785 canonical JSON, SHA-256). The result feeds the policy context
(``fiat.environment``) and the permit's environment digest.

Imports only :mod:`fiat.formats` and :mod:`fiat.errors`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fiat.errors import MalformedError
from fiat.formats.canonical import canonical
from fiat.formats.encoding import json_digest


def appraise(evidence: dict[str, Any] | None) -> dict[str, Any]:
    """Appraise runtime Evidence into an Attestation Result (RATS, RFC 9334 §3)."""
    if not isinstance(evidence, dict):
        return {"verified": False, "digest": json_digest({}), "reason": "no evidence"}
    claims, digest = evidence.get("claims"), evidence.get("digest")
    if not isinstance(claims, dict) or not isinstance(digest, str):
        return {"verified": False, "digest": json_digest({}), "reason": "evidence needs claims and digest"}
    try:
        recomputed = hashlib.sha256(canonical(claims)).hexdigest()
    except MalformedError as exc:
        return {"verified": False, "digest": json_digest({}), "reason": exc.reason}
    if recomputed != digest:
        return {"verified": False, "digest": recomputed, "reason": "the digest does not match the claims"}
    return {"verified": True, "digest": digest, "reason": "digest recomputed over the claims"}
