"""Build real evidence for tests: a real home, real keys, a real log, real signatures.

``make_execution`` plays the parts issue by issue will automate: the authority
mints a permit and signs an allow decision; a runtime signs its receipt; all of
it is appended to the home's transparency log; the bundle is assembled from
the log. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.authorize.permit import Constraints, PermitRequest, PolicyRef, mint_permit
from fiat.config import Config, load_config
from fiat.errors import KeyFileError
from fiat.formats import jws
from fiat.formats.action import action_digest, action_request
from fiat.formats.canonical import compact
from fiat.home import init_home, keyring, trust_root
from fiat.prove import evidence as ev
from fiat.verify import Bundle, TrustRoot
from fiat.verify.permit import PERMIT_TYP, chain_principals, permit_principal
from fiat.wiring import open_evidence

ENV_DIGEST = hashlib.sha256(b"environment measurement").hexdigest()
POLICY = PolicyRef(hashlib.sha256(b"policy bundle v1").hexdigest(), 1, ("allow-deploys",))


@dataclass
class Execution:
    home: Path
    cfg: Config
    jti: str
    token: str
    request: dict[str, Any]
    bundle: Bundle

    def bundle_json(self) -> dict[str, Any]:
        return self.bundle.to_json()

    def trust_root(self) -> TrustRoot:
        return trust_root(self.cfg)


def make_home(home: Path) -> Config:
    init_home(home)
    return load_config(home, require=True)


def make_execution(
    home: Path,
    *,
    principal: str = "agent:release-bot",
    action: str = "deploy",
    resource: str = "service:payments",
    context: dict[str, Any] | None = None,
    parent: str | None = None,
    runtime_name: str | None = None,
    approvals: int = 0,
    with_receipt: bool = True,
    now: float | None = None,
    ttl: int = 60,
    constraints: Constraints | None = None,
    approval_group: str | None = None,
    approver_groups: tuple[str, ...] | None = None,
    scope: list[dict[str, str]] | None = None,
    forge: Callable[[dict[str, Any]], None] | None = None,
    renews: str | None = None,
    parent_head: str | None = None,
    with_ancestors: bool = True,
) -> Execution:
    """One governed execution, logged end to end; returns its bundle.

    With ``parent``, the permit is delegated as the authority delegates (docs/formats.md,
    "Delegation"): ``sub`` the lineage root's principal, ``act`` the actors since, ``exp`` capped by
    the parent chain head's (``parent_head``, default the parent itself: the permit of the parent's
    renewal chain live at issue, recorded as ``delegation.parentHead``). ``renews``: the permit is
    a renewal of that one (the caller passes the same action). ``scope``: the permit's.
    ``forge(claims)`` edits the claims before they are signed with the authority key (and logged):
    a permit the authority should never have issued. ``with_ancestors``: bundle them (default).

    ``constraints``: the permit's (default: maxDuration 300 s, heartbeat 250 ms).
    ``approval_group``: the approver group the allow decision names (``@approval("ops")``);
    the approver keys it creates are of ``approver_groups`` (default: that group).
    """
    cfg = load_config(home, require=True) if (home / "fiat.toml").exists() else make_home(home)
    ring = keyring(cfg)
    arec, akey = ring.signing_key("authority")
    rrec, rkey = ring.signing_key("runtime", runtime_name)
    t = time.time() if now is None else now
    request = action_request(principal, action, resource, context or {"version": "1.4.2", "replicas": 3}, parent)
    digest = action_digest(request)
    recorder = open_evidence(cfg)
    try:
        approval_digests = []
        approval_indexes = []
        for n in range(approvals):
            groups = approver_groups if approver_groups is not None else (approval_group,) if approval_group else ()
            try:
                prec, pkey = ring.signing_key("approver", f"approver-{n}")
                assert prec.groups == groups, "another home for approvers of other groups"
            except KeyFileError:
                prec, pkey = ring.create("approver", f"approver-{n}", approver=(groups, None))
                ring.save()
            statement = ev.approval_statement(
                approval_id=f"apr-{n}", decision="approve", approver=prec.name, request_digest=digest, at=t
            )
            env = ev.sign_statement(statement, [(prec.kid, pkey)])
            result = recorder.record_statement(env)
            approval_digests.append(hashlib.sha256(env.encode()).hexdigest())
            approval_indexes.append(result.index)
        lineage: tuple[str, ...] = ()
        exp_cap = delegation = None
        if parent is not None:
            record = recorder.index.permit(parent)
            assert record is not None, f"no parent {parent} in this home"
            parent_claims = jws.parse(
                recorder.log.read_entries(record.log_index, record.log_index + 1)[0].decode()
            ).claims
            head = parent_head or parent
            head_record = recorder.index.permit(head)
            assert head_record is not None, f"no parent chain head {head} in this home"
            lineage, exp_cap = tuple(chain_principals(parent_claims)), int(head_record.exp)
            ancestors = [
                {"principal": p, "determining": ["allow-deploys"]} for p in dict.fromkeys(lineage) if p != principal
            ]
            delegation = {"depth": record.depth + 1, "parentExp": exp_cap, "parentHead": head, "ancestors": ancestors}
            if scope is None and isinstance(parent_claims.get("scope"), list):
                scope = parent_claims["scope"]  # as the authority signs it: a scope binds every descendant
        spec = PermitRequest(
            request,
            rrec.public_key,
            POLICY,
            ENV_DIGEST,
            ttl=ttl,
            constraints=constraints or Constraints(max_duration=300, heartbeat_interval_ms=250),
            approvals=tuple(approval_digests),
            scope=scope,
            lineage=lineage,
            exp_cap=exp_cap,
            delegation=delegation,
            renews=renews,
        )
        token, claims = mint_permit(
            spec, key=akey, kid=arec.kid, issuer=cfg.authority.issuer, audience=cfg.authority.audience, now=int(t)
        )
        if forge is not None:
            forge(claims)
            token = jws.sign_compact(compact(claims), akey, kid=arec.kid, typ=PERMIT_TYP)
        assert permit_principal(claims) == principal or forge is not None
        jti = claims["jti"]
        permit_digest = jws.parse(token).digest
        recorder.record_permit(token, request)
        for idx in approval_indexes:
            recorder.link(jti, "approval", idx)
        decision = ev.decision_statement(
            decision="allow",
            reason="allow-deploys permits release-bot to deploy",
            request=request,
            request_digest=digest,
            policy=POLICY.to_json(),
            at=t,
            permit=(jti, permit_digest),
            approval_group=approval_group if approvals else None,
        )
        recorder.record_statement(ev.sign_statement(decision, [(arec.kid, akey)]), jti)
        if with_receipt:
            receipt = ev.receipt_statement(
                permit_id=jti,
                permit_digest=permit_digest,
                start=t,
                end=t + 2,
                outcome="completed",
                exit_code=0,
                halt_reason=None,
                verifications=8,
                verification_chain=hashlib.sha256(b"chain").hexdigest(),
                measurement_start={"digest": {"sha256": ENV_DIGEST}},
                measurement_end={"digest": {"sha256": ENV_DIGEST}},
                outputs=[("artifact.tar", hashlib.sha256(b"artifact").hexdigest())],
            )
            recorder.record_statement(ev.sign_statement(receipt, [(rrec.kid, rkey)]), jti)
        bundle = recorder.bundle(jti, with_ancestors=with_ancestors)
    finally:
        recorder.close()
    return Execution(home, cfg, jti, token, request, bundle)


def dump(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()


def custom_execution(
    cfg: Config,
    *,
    now: float,
    decision_at: float | None = None,
    authority: tuple[str, Ed25519PrivateKey] | None = None,
    resource: str = "service:ledger",
    context: dict[str, Any] | None = None,
    constraints: Constraints | None = None,
) -> Bundle:
    """A completed execution like ``make_execution``'s, with the decision time, the permit-signing key,
    the resource, the request context and the permit's constraints chosen by the caller."""
    ring = keyring(cfg)
    if authority is None:
        arec, akey = ring.signing_key("authority")
        authority = (arec.kid, akey)
    akid, akey = authority
    rrec, rkey = ring.signing_key("runtime", cfg.runtime_name)
    request = action_request(
        "agent:release-bot", "deploy", resource, {"version": "2.0.0"} if context is None else context
    )
    digest = action_digest(request)
    spec = PermitRequest(
        request, rrec.public_key, POLICY, ENV_DIGEST, ttl=60, constraints=constraints or Constraints(max_duration=300)
    )
    token, claims = mint_permit(
        spec, key=akey, kid=akid, issuer=cfg.authority.issuer, audience=cfg.authority.audience, now=int(now)
    )
    jti, permit_digest = claims["jti"], jws.parse(token).digest
    recorder = open_evidence(cfg)
    try:
        recorder.record_permit(token, request)
        decision = ev.decision_statement(
            decision="allow",
            reason="custom execution",
            request=request,
            request_digest=digest,
            policy=POLICY.to_json(),
            at=now if decision_at is None else decision_at,
            permit=(jti, permit_digest),
        )
        recorder.record_statement(ev.sign_statement(decision, [(akid, akey)]), jti)
        receipt = ev.receipt_statement(
            permit_id=jti,
            permit_digest=permit_digest,
            start=now,
            end=now + 1,
            outcome="completed",
            exit_code=0,
            halt_reason=None,
            verifications=1,
            verification_chain="0" * 64,
            measurement_start={"digest": {"sha256": ENV_DIGEST}},
            measurement_end={"digest": {"sha256": ENV_DIGEST}},
        )
        recorder.record_statement(ev.sign_statement(receipt, [(rrec.kid, rkey)]), jti)
        return recorder.bundle(jti)
    finally:
        recorder.close()
