"""Execution receipts: after the permit of step 8 has been used, its runtime reports back.

A receipt is a receipt/v1 in-toto statement in DSSE, signed by the permit's ``cnf`` runtime
key; the authority logs it next to the permit's evidence, where the permit's bundle picks it up.

One receipt per permit, and uploading is idempotent (a runtime spools its receipt and may
upload it more than once, :mod:`fiat.enforce.spool`): the same envelope again answers the
index it was logged at, and no new entry; a *different* receipt for a permit that already has
one is refused (:class:`ReceiptConflictError`, 409), since an execution ends once.
"""

from __future__ import annotations

import threading

from fiat.authorize.signing import AuthorityKeys, read_statement
from fiat.errors import AuthorizationError, ConflictError, MalformedError
from fiat.formats.dsse import Envelope
from fiat.formats.encoding import parse_time
from fiat.formats.statement import RECEIPT
from fiat.prove import evidence as ev


class ReceiptConflictError(AuthorizationError, ConflictError):
    """A different receipt for this permit is already logged."""


#: Serializes check-then-append of receipts in this process. Several server processes on one
#: home are serialized only in-process here: two of them could each log the same receipt once
#: (a later change adds idempotency keys in the shared database).
_RECEIPTS = threading.Lock()


#: How far in the future (by the authority's clock) a receipt's ``end`` may lie: what a DPoP
#: proof's ``iat`` may (``fiat.authorize.dpop``, ``max_future``) and the verifier's clock skew;
#: a runtime whose clock runs further ahead got no permit in the first place.
RECEIPT_FUTURE_SKEW_S = 5.0


def record_receipt(recorder: ev.EvidenceRecorder, keys: AuthorityKeys, envelope: Envelope, now: float) -> int:
    """Log a runtime's execution receipt after checking it is signed by the permit's cnf key.

    An execution that has not ended yet has no receipt: one whose ``end`` is more than
    :data:`RECEIPT_FUTURE_SKEW_S` after ``now`` is refused (it would claim a run longer than
    the one that happened), as is one whose ``end`` is no time at all.

    Idempotent: if this exact envelope (its RFC 8785 bytes) is already logged for the permit,
    its index is returned and nothing is appended; a different logged receipt is a conflict.
    """
    statement = read_statement(envelope, RECEIPT, AuthorizationError, "receipt", "a receipt/v1")
    try:
        end = parse_time(statement.predicate.get("end"), "the receipt's end")
    except MalformedError as exc:
        raise AuthorizationError(f"the receipt's end is not an RFC 3339 time: {exc.reason}") from exc
    if end > now + RECEIPT_FUTURE_SKEW_S:
        raise AuthorizationError(
            f"the receipt's end {statement.predicate.get('end')} is {end - now:.0f} s in the future "
            "by the authority's clock: a receipt is signed when its execution has ended"
        )
    permit = statement.predicate.get("permit")
    jti = permit.get("jti") if isinstance(permit, dict) else None
    record = recorder.index.permit(jti) if isinstance(jti, str) else None
    if record is None or not isinstance(jti, str):
        raise AuthorizationError("the receipt names a permit this authority did not issue")
    runtime = keys.ring.find(record.runtime)
    if runtime is None or not envelope.verify_with(runtime.kid, runtime.public_key):
        raise AuthorizationError("the receipt is not signed by the permit's cnf runtime key")
    encoded = envelope.encode()
    with _RECEIPTS:
        for link in recorder.index.entries(jti):
            if link.kind != "receipt":
                continue
            logged = recorder.log.read_entries(link.log_index, link.log_index + 1)[0]
            if logged == encoded:
                return link.log_index
            raise ReceiptConflictError(
                f"a different receipt for permit {jti} is already logged at index {link.log_index}; "
                "an execution has one receipt"
            )
        return recorder.record(statements=[(envelope, jti)], kinds=["receipt"])[0].index
