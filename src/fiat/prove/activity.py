"""A read model of the transparency log: each entry decoded into a summary the console shows.

Every log entry is exact signed bytes (:mod:`fiat.prove.evidence`): a permit (a compact JWS,
RFC 7515 §7.1) or the RFC 8785 form of a DSSE envelope holding an in-toto statement v1
(:mod:`fiat.formats.statement`: decision, approval, revocation, receipt, policy, key-rotation).
:func:`describe_entry` *decodes* one; it checks no signature and no inclusion proof — that is
what ``fiat verify`` (and the in-browser proof viewer) do with an evidence bundle. The summary
is what a person reads on the governance console, never a reason to trust anything.

Summaries are JSON objects with camelCase members; every one has ``index``, ``kind``, ``time``
(POSIX seconds, or None), ``digest`` (SHA-256 hex of the entry's bytes) and ``signers`` (the
key ids that signed it). The rest depends on the kind:

* ``permit`` — ``permitId``, ``principal``, ``principalKey`` (its Cedar UID, the spelling a
  principal revocation names), ``action``, ``resource``, ``parent``, ``renewedFrom`` (the
  permit it renews, or None), ``exp``, ``runtime`` (the ``cnf`` key's RFC 7638 thumbprint),
  ``policyVersion``, ``determiningPolicies``, ``approvals``;
* ``decision`` — ``decision`` (allow|deny|pending), ``reasons``, ``principal``, ``action``,
  ``resource``, ``parent``, ``permitId``, ``approvalId``, ``approvalGroup``, ``actionDigest``,
  ``policyVersion``, ``determiningPolicies``, ``shadow`` (what shadow policies would have decided);
* ``approval`` — ``approvalId``, ``decision`` (approve|deny), ``approver``, ``reasons``, ``actionDigest``;
* ``revocation`` — ``revocationKind`` (permit|principal|runtime), ``target``, ``reasons``, ``epoch``;
* ``receipt`` — ``permitId``, ``outcome`` (completed|failed|halted), ``haltReason``, ``exitCode``,
  ``start``, ``end``, ``verifications``, ``renewedFrom`` (the renewal chain, a list);
* ``policy`` — ``policyVersion``, ``policyDigest``, ``files``;
* ``key-rotation`` — ``role``, ``name``, ``oldKid``, ``newKid``;
* ``unknown`` — ``error``: an entry this reader cannot decode (shown, never hidden).
"""

from __future__ import annotations

import hashlib
from typing import Any

from fiat.errors import MalformedError
from fiat.formats import jws
from fiat.formats.action import entity_uid
from fiat.formats.dsse import Envelope
from fiat.formats.encoding import parse_time
from fiat.formats.statement import APPROVAL, DECISION, KEY_ROTATION, POLICY, RECEIPT, REVOCATION, Statement

#: The most entries one read answers (``GET /v1/activity``'s ``limit``).
MAX_READ = 1000


def _time(value: Any) -> float | None:
    try:
        return parse_time(value, "time")
    except MalformedError:
        return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _policy(policy: Any) -> dict[str, Any]:
    p = _obj(policy)
    determining = p.get("determining")
    return {
        "policyVersion": p.get("version") if isinstance(p.get("version"), int) else None,
        "determiningPolicies": [d for d in determining if isinstance(d, str)] if isinstance(determining, list) else [],
    }


def _permit(out: dict[str, Any], token: str) -> dict[str, Any]:
    parsed = jws.parse(token)
    c = parsed.claims
    act = _obj(c.get("action"))
    act_sub = c.get("act", {}).get("sub") if isinstance(c.get("act"), dict) else None
    principal = act_sub if isinstance(act_sub, str) else _str(c.get("sub"))
    try:
        principal_key: str | None = entity_uid(principal or "", "principal")
    except MalformedError:
        principal_key = None
    try:
        runtime: str | None = jws.jwk_thumbprint(jws.public_key_from_jwk(c.get("cnf", {}).get("jwk"), "cnf"))
    except (MalformedError, AttributeError):
        runtime = None
    approvals = c.get("approvals")
    out.update(
        kind="permit",
        time=float(c["iat"]) if isinstance(c.get("iat"), int | float) else None,
        signers=[parsed.header["kid"]] if isinstance(parsed.header.get("kid"), str) else [],
        permitId=_str(c.get("jti")),
        principal=principal,
        principalKey=principal_key,
        action=_str(act.get("name")),
        resource=_str(act.get("resource")),
        parent=_str(c.get("parent")),
        renewedFrom=_str(c.get("renews")),
        exp=float(c["exp"]) if isinstance(c.get("exp"), int | float) else None,
        runtime=runtime,
        approvals=[a for a in approvals if isinstance(a, str)] if isinstance(approvals, list) else [],
        **_policy(c.get("policy")),
    )
    return out


def _statement(out: dict[str, Any], raw: bytes) -> dict[str, Any]:
    env = Envelope.parse(raw)
    st = Statement.from_envelope(env)
    p = st.predicate
    out["signers"] = [s.keyid for s in env.signatures]
    out["time"] = _time(p.get("time"))
    if st.predicate_type == DECISION:
        req = _obj(p.get("request"))
        permit = _obj(p.get("permit"))
        approval = _obj(p.get("approval"))
        shadow = p.get("shadow")
        out.update(
            kind="decision",
            decision=_str(p.get("decision")),
            reasons=[p["reason"]] if isinstance(p.get("reason"), str) else [],
            principal=_str(req.get("principal")),
            action=_str(req.get("action")),
            resource=_str(req.get("resource")),
            parent=_str(req.get("parent")),
            permitId=_str(permit.get("jti")),
            approvalId=_str(approval.get("id")),
            approvalGroup=_str(approval.get("group")),
            actionDigest=st.subject("action-request"),
            shadow=[s for s in shadow if isinstance(s, dict)] if isinstance(shadow, list) else [],
            **_policy(p.get("policy")),
        )
    elif st.predicate_type == APPROVAL:
        out.update(
            kind="approval",
            approvalId=_str(p.get("id")),
            decision=_str(p.get("decision")),
            approver=_str(p.get("approver")),
            reasons=[p["reason"]] if isinstance(p.get("reason"), str) and p["reason"] else [],
            actionDigest=st.subject("action-request"),
        )
    elif st.predicate_type == REVOCATION:
        out.update(
            kind="revocation",
            revocationKind=_str(p.get("kind")),
            target=_str(p.get("target")),
            reasons=[p["reason"]] if isinstance(p.get("reason"), str) else [],
            epoch=p.get("epoch") if isinstance(p.get("epoch"), int) else None,
        )
    elif st.predicate_type == RECEIPT:
        permit = _obj(p.get("permit"))
        verifications = _obj(p.get("verifications"))
        renewed = p.get("renewedFrom")
        out.update(
            kind="receipt",
            time=_time(p.get("end")),
            permitId=_str(permit.get("jti")),
            outcome=_str(p.get("outcome")),
            haltReason=_str(p.get("haltReason")),
            exitCode=p.get("exitCode") if isinstance(p.get("exitCode"), int) else None,
            start=_time(p.get("executionStart") or p.get("start")),
            end=_time(p.get("end")),
            verifications=verifications.get("count") if isinstance(verifications.get("count"), int) else None,
            renewedFrom=[r for r in renewed if isinstance(r, str)] if isinstance(renewed, list) else [],
        )
    elif st.predicate_type == POLICY:
        files = _obj(p.get("files"))
        out.update(
            kind="policy",
            policyVersion=p.get("version") if isinstance(p.get("version"), int) else None,
            policyDigest=st.subjects[0].sha256,
            files=sorted(str(f) for f in files),
        )
    elif st.predicate_type == KEY_ROTATION:
        old = _obj(p.get("old"))
        new = _obj(p.get("new"))
        out.update(
            kind="key-rotation",
            role=_str(p.get("role")),
            name=_str(p.get("name")),
            oldKid=_str(old.get("kid")),
            newKid=_str(new.get("kid")),
        )
    else:
        out.update(kind="unknown", error=f"a statement of predicate type {st.predicate_type[:200]!r}")
    return out


def describe_entry(index: int, raw: bytes) -> dict[str, Any]:
    """A summary of log entry ``index`` (its exact bytes ``raw``), decoded and **not verified**.

    A DSSE envelope is a JSON object (it starts with ``{``); anything else is read as a permit,
    a compact JWS (RFC 7515 §7.1). An entry that decodes as neither is an ``unknown`` summary
    with the reason, never an exception: the console shows every entry of the log.
    """
    out: dict[str, Any] = {
        "index": index,
        "kind": "unknown",
        "time": None,
        "digest": hashlib.sha256(raw).hexdigest(),
        "signers": [],
    }
    try:
        if raw[:1] == b"{":
            return _statement(out, raw)
        return _permit(out, raw.decode("ascii"))
    except (MalformedError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        out.update(kind="unknown", error=f"not a permit or a statement Fiat can read: {str(exc)[:300]}")
        return out


def read_activity(read_entries: Any, size: int, after: int, limit: int) -> list[dict[str, Any]]:
    """Summaries of the entries with index > ``after`` (−1: from the first), at most ``limit``,
    of a log of ``size`` entries; ``read_entries(start, end)`` is the log's reader."""
    start = max(after + 1, 0)
    end = min(size, start + max(0, min(limit, MAX_READ)))
    if start >= end:
        return []
    return [describe_entry(start + n, raw) for n, raw in enumerate(read_entries(start, end))]
