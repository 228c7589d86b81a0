"""Receipts that claim what they like, logged and bundled by the real authority.

A holder of the runtime key can sign any receipt, and the authority logs any receipt its
permit's cnf key signed (``POST /v1/receipts``). ``claimed_execution`` plays that: the
permit and the allow decision come from ``make_execution``; revocations and the receipt
go through the home's real authority (:func:`fiat.wiring.open_authority`, its clock set
to the time each happens), and the bundle is the one that authority assembles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fiat.authorize.permit import Constraints
from fiat.formats import jws
from fiat.home import keyring
from fiat.prove import evidence as ev
from fiat.verify import Bundle
from fiat.wiring import open_authority
from support.evidence import ENV_DIGEST, Execution, make_execution


@dataclass(frozen=True)
class Revoke:
    """A revocation of the execution's permit, principal or runtime, signed and logged at ``at``."""

    kind: str  # permit, principal or runtime
    at: float
    #: Another permit to revoke (one the receipt says it renewed); None: the execution's own.
    target: str | None = None


def honest_receipt(t: float) -> dict[str, Any]:
    """What a guard writes for a 2 s run started at ``t`` (``receipt_statement``'s arguments)."""
    return {
        "start": t,
        "end": t + 2,
        "outcome": "completed",
        "exit_code": 0,
        "halt_reason": None,
        "verifications": 8,
        "verification_chain": hashlib.sha256(b"chain").hexdigest(),
        "measurement_start": {"digest": {"sha256": ENV_DIGEST}},
        "measurement_end": {"digest": {"sha256": ENV_DIGEST}},
    }


def claimed_execution(
    home: Path,
    *,
    now: float,
    receipt: dict[str, Any],
    revocations: Sequence[Revoke] = (),
    constraints: Constraints | None = None,
    parent: str | None = None,
    ttl: int = 60,
) -> Execution:
    """A logged permit and decision at ``now``; then ``revocations`` by the real authority; then a
    receipt with ``honest_receipt(now)`` updated by ``receipt``, signed by the permit's runtime
    key and logged by that authority; returns the bundle it assembles."""
    ex = make_execution(home, now=now, with_receipt=False, constraints=constraints, parent=parent, ttl=ttl)
    clock = [now]
    authority = open_authority(ex.cfg, clock=lambda: clock[0])
    try:
        claims = jws.parse(ex.token).claims
        runtime = jws.jwk_thumbprint(jws.public_key_from_jwk(claims["cnf"]["jwk"], "cnf"))
        targets = {"permit": ex.jti, "principal": str(claims["sub"]), "runtime": runtime}
        for r in revocations:
            clock[0] = r.at
            target = r.target or targets[r.kind]
            _, index = authority.revoke(r.kind, target, f"test: {r.kind} revoked")
            if target != ex.jti:  # the authority links a permit's own revocations; these are linked here
                authority.recorder.link(ex.jti, "revocation", index)
        rrec, rkey = keyring(ex.cfg).signing_key("runtime", ex.cfg.runtime_name)
        claimed = {**honest_receipt(now), **receipt}
        statement = ev.receipt_statement(permit_id=ex.jti, permit_digest=jws.parse(ex.token).digest, **claimed)
        clock[0] = max(clock[0], float(claimed["end"]))  # posted once the claimed execution has ended
        authority.record_receipt(ev.sign_statement(statement, [(rrec.kid, rkey)]))
        bundle = Bundle.from_json(authority.bundle(ex.jti))
    finally:
        authority.close()
    return Execution(ex.home, ex.cfg, ex.jti, ex.token, ex.request, bundle)
