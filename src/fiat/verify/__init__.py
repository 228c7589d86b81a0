"""Fiat's offline verifier: the public API an auditor needs.

Importable with only ``cryptography`` installed: no web framework, no database
driver, no JWT or JSON-canonicalization package. ::

    from fiat.verify import Bundle, TrustRoot, verify

    result = verify(Bundle.parse(open("run.bundle.json", "rb").read()),
                    TrustRoot.parse(open("trust-root.json", "rb").read()))
    assert result.verified, result.failed

What lives here: ``permit`` (the one set of permit rules, shared with the runtime guard),
``trust_state`` (the authority's signed trust state), ``trust_root``, ``bundle`` and
``verifier`` (the 15 named steps, the assurance level, and :func:`verify_split_view` for
``split_view`` proofs of a log's misbehaviour). May import: the standard library, ``cryptography``,
``fiat.errors``, ``fiat.formats`` and ``fiat.tlog`` — never a producer
(tests/test_architecture.py and tests/test_verify_isolation.py hold it to that).
"""

from fiat.verify.bundle import MEDIA_TYPE as BUNDLE_MEDIA_TYPE
from fiat.verify.bundle import Bundle
from fiat.verify.split_view import MEDIA_TYPE as SPLIT_VIEW_MEDIA_TYPE
from fiat.verify.split_view import SplitViewProof
from fiat.verify.trust_root import MEDIA_TYPE as TRUST_ROOT_MEDIA_TYPE
from fiat.verify.trust_root import TrustedKey, TrustRoot
from fiat.verify.verifier import (
    STEPS,
    Assurance,
    SplitViewResult,
    StepResult,
    VerificationPolicy,
    VerificationResult,
    verify,
    verify_split_view,
)

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "SPLIT_VIEW_MEDIA_TYPE",
    "STEPS",
    "TRUST_ROOT_MEDIA_TYPE",
    "Assurance",
    "Bundle",
    "SplitViewProof",
    "SplitViewResult",
    "StepResult",
    "TrustRoot",
    "TrustedKey",
    "VerificationPolicy",
    "VerificationResult",
    "verify",
    "verify_split_view",
]
