"""Execution receipts: after the permit of step 8 has been used, its runtime reports back.

A receipt is a receipt/v1 in-toto statement in DSSE, signed by the permit's ``cnf`` runtime
key; the authority logs it next to the permit's evidence, where the permit's bundle picks it up.
"""

from __future__ import annotations

from fiat.authorize.signing import AuthorityKeys, read_statement
from fiat.errors import AuthorizationError
from fiat.formats.dsse import Envelope
from fiat.formats.statement import RECEIPT
from fiat.prove import evidence as ev


def record_receipt(recorder: ev.EvidenceRecorder, keys: AuthorityKeys, envelope: Envelope) -> int:
    """Log a runtime's execution receipt after checking it is signed by the permit's cnf key."""
    statement = read_statement(envelope, RECEIPT, AuthorizationError, "receipt", "a receipt/v1")
    permit = statement.predicate.get("permit")
    jti = permit.get("jti") if isinstance(permit, dict) else None
    record = recorder.index.permit(jti) if isinstance(jti, str) else None
    if record is None or not isinstance(jti, str):
        raise AuthorizationError("the receipt names a permit this authority did not issue")
    runtime = keys.ring.find(record.runtime)
    if runtime is None or not envelope.verify_with(runtime.kid, runtime.public_key):
        raise AuthorizationError("the receipt is not signed by the permit's cnf runtime key")
    return recorder.record(statements=[(envelope, jti)], kinds=["receipt"])[0].index
