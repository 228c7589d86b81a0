"""The signed trust state: what guards re-check between the steps of a running execution.

A JWS (``typ`` fiat-trust-state+jwt, checked by :mod:`fiat.verify.trust_state`) signed with
the authority key, holding the log's checkpoint, the active policy (its version and digest,
step 6) and the revocations since an epoch (steps 1, 4 and 5, re-checked by every guard).

A permit revocation is listed once for the permit revoked and once more for every issued permit
it covers — its renewal successors and lineage descendants, transitively — with the same epoch,
reason and time and ``coveredBy`` naming the permit revoked (docs/formats.md, "Renewal and
revocation"). A guard therefore needs no graph: it looks up its own ids.
"""

from __future__ import annotations

from typing import Any

from fiat.authorize.policy_state import ActivePolicy
from fiat.authorize.revocations import REVOCATION_SLACK
from fiat.authorize.signing import AuthorityKeys
from fiat.formats import jws
from fiat.formats.canonical import compact
from fiat.formats.encoding import rfc3339
from fiat.persist.protocols import AuthorityStore
from fiat.prove.log import TransparencyLog
from fiat.verify.trust_state import TRUST_STATE_TYP


def sign_trust_state(
    keys: AuthorityKeys,
    store: AuthorityStore,
    transparency_log: TransparencyLog,
    active: ActivePolicy | None,
    *,
    issuer: str,
    now: float,
    since: int = 0,
    epoch: int = 0,
) -> str:
    """The signed trust state document (JWS, typ fiat-trust-state+jwt).

    Revocation continuity (docs/formats.md, "Trust state"): ``revocationEpoch`` is the highest
    revocation epoch the state covers, read *before* the revocations are listed, so that every
    revocation up to it is listed (one recorded in between is left to the next state);
    ``revocationsSince`` is ``since``: 0 for a complete state (every live revocation), else a
    delta that lists only those after that epoch. A guard folds a delta only when it has
    already seen every revocation up to ``since`` (:mod:`fiat.enforce.trust`).
    """
    rec, key = keys.authority
    covered = store.revocation_epoch()
    revocations = [r for r in store.revocations_since(since, live_at=now) if r.epoch <= covered]
    listed: list[dict[str, Any]] = []
    entries: dict[str, dict[str, Any]] = {}
    for r in revocations:
        entry = {"epoch": r.epoch, "kind": r.kind, "target": r.target, "reason": r.reason, "time": rfc3339(r.at)}
        listed.append(entry)
        if r.kind == "permit":
            entries.setdefault(r.target, entry)
    # What the permit revocations cover (renewal successors, lineage descendants), in one walk;
    # each covered permit is listed once, under the revocation that reaches it first.
    for jti, (root, exp) in sorted(store.coverage(list(entries)).items()):
        if exp + REVOCATION_SLACK > now:
            listed.append({**entries[root], "target": jti, "coveredBy": root})
    # With witnesses: the cosigned checkpoint, once it is no smaller than any embedded before.
    cp = transparency_log.embeddable_checkpoint()
    claims = {
        "iss": issuer,
        "iat": int(now),
        "time": round(now, 3),
        "epoch": epoch,
        "checkpoint": cp.note_bytes.decode("utf-8"),
        "policy": None if active is None else {"version": active.version, "digest": {"sha256": active.digest}},
        "revocationEpoch": covered,
        "revocationsSince": since,
        "revocations": listed,
    }
    return jws.sign_compact(compact(claims), key, kid=rec.kid, typ=TRUST_STATE_TYP)
