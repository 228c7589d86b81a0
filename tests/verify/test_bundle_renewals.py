"""The renewals a descendant's bundle carries for each ancestor (docs/formats.md, "Evidence bundle").

A child records the permit of its parent's renewal chain that was live (``delegation.parentHead``);
the bundle builder carries the chain from the parent up to it, at most ``MAX_RENEWALS`` permits,
and refuses to build a longer bundle, or one whose head is no renewal of the parent, with a clear
error. Real homes, real logs, real signatures.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fiat.authorize.permit import Constraints, PermitRequest, mint_permit
from fiat.errors import FiatError
from fiat.formats.action import action_digest
from fiat.home import keyring
from fiat.verify import Bundle, verify
from fiat.verify.bundle import MAX_RENEWALS
from fiat.wiring import open_evidence
from support.evidence import ENV_DIGEST, POLICY, Execution, dump, make_execution

PLANNER = {"principal": "agent:planner", "with_receipt": False, "ttl": 3600}


def renew_many(parent: Execution, count: int, now: int, after: str | None = None) -> list[str]:
    """``count`` successive renewals of ``parent``'s chain (from ``after``, default ``parent``),
    minted and logged as the authority mints them."""
    ring = keyring(parent.cfg)
    arec, akey = ring.signing_key("authority")
    rrec, _ = ring.signing_key("runtime")
    request = parent.request
    digest = action_digest(request)
    recorder = open_evidence(parent.cfg)
    jtis: list[str] = []
    prev = after or parent.jti
    try:
        futures = []
        for _ in range(count):
            spec = PermitRequest(
                request,
                rrec.public_key,
                POLICY,
                ENV_DIGEST,
                ttl=3600,
                constraints=Constraints(max_duration=300, heartbeat_interval_ms=250),
                action_digest=digest,
                renews=prev,
            )
            token, claims = mint_permit(
                spec,
                key=akey,
                kid=arec.kid,
                issuer=parent.cfg.authority.issuer,
                audience=parent.cfg.authority.audience,
                now=now,
            )
            futures += recorder.submit((token, request), claims=claims)
            prev = claims["jti"]
            jtis.append(prev)
        recorder.log.flush()
        for f in futures:
            f.result()
    finally:
        recorder.close()
    return jtis


def test_a_bundle_carries_up_to_the_cap_of_renewals_and_refuses_one_more(tmp_path: Path) -> None:
    home = tmp_path / "home"
    t = int(time.time())
    parent = make_execution(home, now=t, **PLANNER)
    chain = renew_many(parent, MAX_RENEWALS, t)
    child = make_execution(home, principal="agent:coder", parent=parent.jti, parent_head=chain[-1], now=t + 1)
    (anc,) = child.bundle.ancestors
    assert [r.permit.claims["jti"] for r in anc.renewals] == chain
    started = time.perf_counter()
    result = verify(Bundle.parse(dump(child.bundle_json())), child.trust_root())
    took = time.perf_counter() - started
    assert result.verified, [s.to_json() for s in result.steps if s.status != "pass"]
    print(f"{MAX_RENEWALS} renewals: bundle {len(dump(child.bundle_json())) / 1e6:.1f} MB, verified in {took:.2f} s")
    (more,) = renew_many(parent, 1, t, after=chain[-1])
    with pytest.raises(FiatError, match=f"longer than {MAX_RENEWALS} permits, the most a bundle carries"):
        make_execution(home, principal="agent:coder", parent=parent.jti, parent_head=more, now=t + 1)


def test_a_bundle_is_not_built_for_a_head_that_is_no_renewal_of_the_parent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    t = int(time.time())
    parent = make_execution(home, now=t, **PLANNER)
    other = make_execution(home, now=t, resource="service:billing", **PLANNER)
    (head,) = renew_many(other, 1, t)
    with pytest.raises(FiatError, match=f"is not a renewal of {parent.jti}"):
        make_execution(home, principal="agent:coder", parent=parent.jti, parent_head=head, now=t + 1)
