"""Fiat's offline verifier: the public API an auditor needs.

Importable with only ``cryptography`` installed: no web framework, no database
driver, no JWT or JSON-canonicalization package. ::

    from fiat.verify import Bundle, TrustRoot, verify

    result = verify(Bundle.parse(open("run.bundle.json", "rb").read()),
                    TrustRoot.parse(open("trust-root.json", "rb").read()))
    assert result.verified, result.failed
"""

from fiat.verify.bundle import MEDIA_TYPE as BUNDLE_MEDIA_TYPE
from fiat.verify.bundle import Bundle
from fiat.verify.trust_root import MEDIA_TYPE as TRUST_ROOT_MEDIA_TYPE
from fiat.verify.trust_root import TrustedKey, TrustRoot
from fiat.verify.verifier import STEPS, StepResult, VerificationPolicy, VerificationResult, verify

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "STEPS",
    "TRUST_ROOT_MEDIA_TYPE",
    "Bundle",
    "StepResult",
    "TrustRoot",
    "TrustedKey",
    "VerificationPolicy",
    "VerificationResult",
    "verify",
]
