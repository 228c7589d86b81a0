"""The decision walk and the one thread that takes every decision.

Step 2 (``request``) runs in the caller's thread (:func:`check_request`). The
:class:`Decider` thread then takes every queued request, in batches: steps 1, 3, 4 and 5
for each (:meth:`Decider.prepare`), one Cedar batch per policy version (step 6,
``policy``: a delegated request is evaluated there for each ancestor principal too, the
attenuation of :meth:`Decider.check_lineage`), then the decision, step 7 (``approval``) and
step 8 (``permit``) for each (:meth:`Decider.conclude`). Any exception on the way but a refusal is a logged denial
(fail closed). What the walk needs it is given explicitly: the keyring
(:class:`~fiat.authorize.signing.AuthorityKeys`), the revocations, the active policy, the
approvals, and the outcomes that sign the evidence and hand it to the log.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from fiat.authorize import explain
from fiat.authorize.approvals import Approvals
from fiat.authorize.decision import AuthorizationRequest, AuthorizationResult, Lineage
from fiat.authorize.names import entity_uid
from fiat.authorize.outcomes import Answer, Outcomes
from fiat.authorize.permit import new_permit_id
from fiat.authorize.policy import Evaluation, PolicyError
from fiat.authorize.policy_state import ActivePolicy, PolicyState
from fiat.authorize.revocations import Revocations, covered_reason, principal_key
from fiat.authorize.signing import AuthorityKeys
from fiat.errors import (
    AlreadyRenewedError,
    ApprovalError,
    AuthorizationError,
    MalformedError,
    MalformedRequestError,
)
from fiat.establish.appraisal import appraise
from fiat.formats import jws
from fiat.formats.action import EncodedRequest, check_scope, encode_action_request, scope_pairs
from fiat.formats.canonical import canonical
from fiat.formats.encoding import json_digest
from fiat.persist.protocols import AuthorityStore
from fiat.prove import evidence as ev
from fiat.verify.bundle import MAX_RENEWALS
from fiat.verify.permit import RENEWAL_GRACE as _RENEWAL_GRACE
from fiat.verify.permit import chain_principals, permit_principal
from fiat.verify.trust_root import MAX_LINEAGE_DEPTH

log = logging.getLogger("fiat.authority")
_T = TypeVar("_T")

#: Seconds after its ``exp`` a permit may still be renewed (a renewal delayed by a slow network);
#: docs/formats.md, "Renewal and revocation". The verifier holds a parent's renewals to it too.
RENEWAL_GRACE = _RENEWAL_GRACE


def check_request(req: AuthorizationRequest) -> EncodedRequest:
    """Step 2, ``request``: well-formed and canonicalizable; its digests computed once.

    A malformed request raises :class:`MalformedRequestError` (a refusal, not a decision).
    """
    try:
        enc = encode_action_request(req.principal, req.action, req.resource, req.context, req.parent, encode=canonical)
        entity_uid(req.principal, "principal")
        entity_uid(req.resource, "resource")
        if req.scope is not None:
            check_scope(req.scope)
    except MalformedError as exc:
        raise MalformedRequestError(str(exc)) from exc
    return enc


@dataclass(frozen=True)
class Prepared:
    """A request past steps 1–5, waiting for Cedar."""

    req: AuthorizationRequest
    enc: EncodedRequest
    now: float
    attestation: dict[str, Any]
    active: ActivePolicy
    context: dict[str, Any]
    lineage: Lineage | None = None

    def cedar_requests(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """The request itself, then the same action, resource and context for each ancestor principal
        (attenuation: a child is permitted nothing its ancestors' principals would not be)."""
        own = [(self.req.principal, self.req.action, self.req.resource, self.context)]
        ancestors = self.lineage.ancestors if self.lineage else ()
        return own + [(a, self.req.action, self.req.resource, self.context) for a in ancestors]


_Queued = tuple[AuthorizationRequest, EncodedRequest, float, Future[AuthorizationResult]]


class Decider:
    """One thread takes every decision, in batches, while earlier batches are being made durable.

    Callers queue their checked request and wait. The thread decides everything queued,
    back to back, with one Cedar call for the batch; it stages each decision's evidence and
    hands the whole burst to the log's sequencer at once, without waiting, and goes on with
    the next batch while the sequencer makes this one durable and answers each caller.
    Threads of one process share one interpreter lock, so more deciding threads would only
    take turns; one decider keeps the lock hand-offs to a few per batch.
    """

    def __init__(
        self,
        *,
        recorder: ev.EvidenceRecorder,
        keys: AuthorityKeys,
        revocations: Revocations,
        policy: PolicyState,
        approvals: Approvals,
        outcomes: Outcomes,
        store: AuthorityStore,
    ) -> None:
        self.recorder, self.keys, self.revocations, self.store = recorder, keys, revocations, store
        self.policy, self.approvals, self.outcomes = policy, approvals, outcomes
        self._cond = threading.Condition()
        self._queue: deque[_Queued] = deque()
        self._thread: threading.Thread | None = None
        self._closing = False

    def submit(self, req: AuthorizationRequest, enc: EncodedRequest, now: float) -> Future[AuthorizationResult]:
        done: Future[AuthorizationResult] = Future()
        with self._cond:
            if self._closing:
                raise AuthorizationError("the authority is closed")
            self._queue.append((req, enc, now, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fiat-decider", daemon=True)
                self._thread.start()
            self._cond.notify()
        return done

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            with self.recorder.log.staged():  # the batch's evidence goes to the log as one batch
                self._decide_batch(batch)

    def _decide_batch(self, batch: list[_Queued]) -> None:
        """Steps 1–5 for each request, one Cedar call per policy version, then steps 6–8 for each."""
        waiting: list[tuple[Prepared, Future[AuthorizationResult]]] = []
        for req, enc, now, done in batch:
            try:
                prepared = self._guarded(partial(self.prepare, req, enc, now), enc, now)
            except BaseException as exc:  # AuthorizationError: the caller sees it
                done.set_exception(exc)
                continue
            if isinstance(prepared, Prepared):
                waiting.append((prepared, done))
            else:
                self._answer(prepared, done)
        by_policy: dict[int, list[tuple[Prepared, Future[AuthorizationResult]]]] = {}
        for item in waiting:
            by_policy.setdefault(id(item[0].active), []).append(item)
        for items in by_policy.values():
            bundle = items[0][0].active.bundle
            # One Cedar batch: each request, then its ancestors' principals (step 4's attenuation).
            requests = [p.cedar_requests() for p, _ in items]
            flat = [r for rs in requests for r in rs]
            try:
                evaluations: list[Evaluation | Exception] = list(bundle.evaluate_many(flat))
            except Exception as exc:  # fail closed, each request on its own
                evaluations = [exc] * len(flat)
            at = 0
            for (p, done), rs in zip(items, requests, strict=True):
                evaluation, ancestors = evaluations[at], evaluations[at + 1 : at + len(rs)]
                at += len(rs)
                try:
                    answer = self._guarded(partial(self.conclude, p, evaluation, ancestors), p.enc, p.now)
                except BaseException as exc:
                    done.set_exception(exc)
                    continue
                self._answer(answer, done)

    def _answer(self, answer: Answer, done: Future[AuthorizationResult]) -> None:
        try:
            self.outcomes.settle_later(answer, done)
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)

    def close(self, timeout: float = 30.0) -> None:
        """Decide what is queued, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _guarded(self, step: Callable[[], _T], enc: EncodedRequest, now: float) -> _T | Answer:
        """Run a decision step; any failure but a refusal is a logged denial (fail closed)."""
        try:
            return step()
        except (AuthorizationError, ApprovalError):
            raise
        except Exception as exc:
            log.error("authorization failed closed: %s", exc)
            return self.outcomes.deny_later(enc, now, f"failed closed: {exc}")

    def prepare(self, req: AuthorizationRequest, enc: EncodedRequest, now: float) -> Prepared | Answer:
        """Steps 1–5, and the policy context of step 6."""
        deny_later, is_revoked = self.outcomes.deny_later, self.revocations.is_revoked
        # 1. runtime
        runtime = self.keys.ring.find(req.runtime_kid)
        if runtime is None or runtime.role != "runtime" or not runtime.valid_at(now):
            raise AuthorizationError(f"runtime key {req.runtime_kid} is not enrolled or not active")
        if is_revoked("runtime", req.runtime_kid):
            return deny_later(enc, now, f"runtime {req.runtime_kid} is revoked")
        # 3. evidence
        attestation = appraise(req.evidence)
        # 4. lineage (a revocation covers the parent's renewal chain and lineage: its ancestry)
        lineage: Lineage | None = None
        if req.parent is not None:
            found = self.check_lineage(req, now)
            if isinstance(found, str):
                return deny_later(enc, now, f"delegation refused: {found}")
            lineage = found
        if req.renews is not None:
            self.check_renewal(req, enc, now)
        # 5. revocation (principals compared in their one Cedar spelling), the whole chain's
        for who in (req.principal, *(lineage.principals if lineage else ())):
            if is_revoked("principal", principal_key(who)):
                what = "principal" if who == req.principal else "delegation refused: ancestor principal"
                return deny_later(enc, now, f"{what} {who} is revoked")
        # 6. policy (another process sharing this home may have published a newer version)
        self.policy.follow()
        active = self.policy.active
        if active is None:
            return deny_later(enc, now, self.policy.error or "no active policy")
        context = {
            "input": req.context,
            "fiat": {
                "time": int(now),
                "weekday": int(time.gmtime(now).tm_wday),
                "runtime": req.runtime_kid,
                "environment": {"verified": attestation["verified"], "digest": attestation["digest"]},
                "lineageDepth": lineage.depth if lineage else 0,
            },
        }
        return Prepared(req, enc, now, attestation, active, context, lineage)

    def check_lineage(self, req: AuthorizationRequest, now: float) -> Lineage | str:
        """Step 4 for a delegated request: the parent and the attenuation a child permit must keep
        (docs/formats.md, "Delegation"); a failure is the reason of a logged denial.

        The parent was issued here and no revocation covers it; it is live now: ``nbf <= now <
        exp`` of its live renewal chain's head (the latest successor, by the store's renewal
        links), whose jti the child records as ``delegation.parentHead`` and whose ``exp`` caps
        the child's (``parentExp``); the depth stays within :data:`MAX_LINEAGE_DEPTH`; when the parent names a
        ``scope``, the child's action and resource are in it and the child's own ``scope`` is a
        subset of it. Cedar's check of the ancestor principals is step 6's batch.
        """
        assert req.parent is not None
        parent = self.recorder.index.permit(req.parent)
        if parent is None:
            return f"parent permit {req.parent} was not issued here"
        revoked = self.revocations.revoked_ancestor(req.parent)
        if revoked is not None:
            return f"parent {covered_reason(req.parent, revoked)}"
        depth = parent.depth + 1
        if depth > MAX_LINEAGE_DEPTH:
            return f"the lineage would be {depth} deep; at most {MAX_LINEAGE_DEPTH} (maxLineageDepth)"
        token = self.recorder.log.read_entries(parent.log_index, parent.log_index + 1)[0].decode("ascii")
        claims = jws.parse(token).claims
        head, exp, seen = req.parent, parent.exp, {req.parent}
        while (successor := self.store.successor_of(head)) is not None and successor not in seen:
            if len(seen) > MAX_RENEWALS:  # a bundle carries at most that many renewals per link
                return (
                    f"parent permit {req.parent} was renewed more than {MAX_RENEWALS} times; name its live "
                    "renewal as the parent instead"
                )
            record = self.recorder.index.permit(successor)
            if record is None:  # claimed, not yet durable: the chain's head is still ``head``
                break
            seen.add(successor)
            head, exp = successor, record.exp
        if head != req.parent:
            # A revoked renewal ends the parent's execution: the head must be uncovered too.
            revoked = self.revocations.revoked_ancestor(head)
            if revoked is not None:
                return f"parent {req.parent}'s live renewal {covered_reason(head, revoked)}"
        if now < claims["nbf"]:
            return f"parent permit {req.parent} is not valid yet (nbf {claims['nbf']})"
        if now >= exp:
            chain = "" if head == req.parent else f" (its renewal chain ends with {head})"
            return f"parent permit {req.parent} expired at {int(exp)}{chain}; a child needs a live parent"
        scope = claims.get("scope")
        if isinstance(scope, list):
            allowed = scope_pairs(scope)
            if (req.action, entity_uid(req.resource, "resource")) not in allowed:
                return (
                    f"{req.action} on {req.resource} is outside the scope of parent permit {req.parent}; "
                    "the parent must name it in its scope"
                )
            wider = sorted(scope_pairs(req.scope) - allowed) if req.scope is not None else []
            if wider:
                action, resource = wider[0]
                return (
                    f"the requested scope is wider than parent permit {req.parent}'s: {action} on {resource} "
                    f"(and {len(wider) - 1} more) is not in it"
                )
        principals = tuple(chain_principals(claims))
        own = principal_key(req.principal)
        ancestors: list[str] = []
        keys = {own}
        for who in principals:
            key = principal_key(who)
            if key not in keys:
                keys.add(key)
                ancestors.append(who)
        assert permit_principal(claims) == principals[0]
        inherited = tuple(check_scope(scope, "parent scope")) if isinstance(scope, list) else None
        return Lineage(depth, principals, int(exp), tuple(ancestors), head, inherited)

    def check_renewal(self, req: AuthorizationRequest, enc: EncodedRequest, now: float) -> None:
        """A renewal only extends a live, consumed execution (docs/formats.md, "Renewal and revocation").

        The permit it renews was issued here, is not covered by a revocation (its renewal chain and
        lineage walked up), is bound to the same runtime key (cnf) as the renewing request's DPoP
        key, has the same action digest, is unexpired (or expired less than :data:`RENEWAL_GRACE`
        ago), was consumed if it was single use, and has no successor yet. Any
        failure is a refusal (:class:`AuthorizationError`, 403; :class:`AlreadyRenewedError`, 409),
        not a logged denial: nothing was decided.
        """
        jti = req.renews
        assert jti is not None
        old = self.recorder.index.permit(jti)
        if old is None:
            raise AuthorizationError(f"cannot renew {jti}: no such permit was issued here")
        revoked = self.revocations.revoked_ancestor(jti)
        if revoked is not None:
            raise AuthorizationError(f"cannot renew: {covered_reason(jti, revoked)}")
        if old.runtime != req.runtime_kid:
            raise AuthorizationError(f"cannot renew {jti}: it is bound to another runtime key (cnf)")
        if json_digest(json.loads(old.request)) != enc.digest:
            raise AuthorizationError(f"cannot renew {jti}: it permits another action (action digest differs)")
        if old.exp + RENEWAL_GRACE < now:
            raise AuthorizationError(
                f"cannot renew {jti}: it expired {now - old.exp:.0f} s ago (grace {RENEWAL_GRACE:.0f} s); "
                "ask for a new permit instead"
            )
        token = self.recorder.log.read_entries(old.log_index, old.log_index + 1)[0].decode("ascii")
        constraints = jws.parse(token).claims.get("constraints") or {}
        if constraints.get("singleUse") is True and not self.store.is_consumed(jti):
            raise AuthorizationError(
                f"cannot renew {jti}: it is single use and was never consumed; a renewal only extends "
                "an execution that started (consume the permit first)"
            )
        successor = self.store.successor_of(jti)
        if successor is not None:
            raise AlreadyRenewedError(f"permit {jti} was already renewed (by {successor}); renew {successor} instead")

    def conclude(
        self, p: Prepared, evaluation: Evaluation | Exception, ancestors: list[Evaluation | Exception] | None = None
    ) -> Answer:
        """Steps 6 (the decision), 7 and 8, given Cedar's evaluation of the prepared request (and,
        for a delegated request, of the same request for each ancestor principal)."""
        req, enc, now, active = p.req, p.enc, p.now, p.active
        outcomes = self.outcomes
        if isinstance(evaluation, PolicyError | MalformedError):
            return outcomes.deny_later(enc, now, f"policy evaluation failed: {evaluation}", policy=active)
        if isinstance(evaluation, Exception):
            raise evaluation
        delegation: dict[str, Any] | None = None
        if p.lineage is not None and evaluation.allowed:
            ancestors = ancestors or []
            if len(ancestors) != len(p.lineage.ancestors):
                raise AuthorizationError("the ancestors' policy evaluation is missing")  # fail closed
            evidence = []
            for who, ev_ in zip(p.lineage.ancestors, ancestors, strict=True):
                if isinstance(ev_, Exception):
                    reason = f"delegation refused: policy evaluation for ancestor {who} failed: {ev_}"
                    return outcomes.deny_later(enc, now, reason, policy=active)
                if not ev_.allowed:
                    why = "forbidden by " + ", ".join(ev_.determining) if ev_.determining else "no policy permits it"
                    reason = (
                        f"delegation refused: ancestor principal {who} would not be allowed {req.action} on "
                        f"{req.resource} ({why}); a child is permitted only what every ancestor is"
                    )
                    return outcomes.deny_later(enc, now, reason, policy=active, evaluation=ev_)
                evidence.append({"principal": who, "determining": list(ev_.determining)})
            delegation = {
                "depth": p.lineage.depth,
                "parentExp": p.lineage.exp_cap,
                "parentHead": p.lineage.head,
                "ancestors": evidence,
            }
        shadow = tuple({"scope": s, "decision": d, "determining": list(x)} for s, d, x in evaluation.shadow)
        if not evaluation.allowed:
            reason = (
                "forbidden by " + ", ".join(evaluation.determining)
                if evaluation.determining
                else "no policy permits it (deny by default)"
            )
            if evaluation.errors:
                reason += f"; errors: {'; '.join(evaluation.errors)}"
            reasons = explain.denial(
                active.bundle,
                evaluation,
                principal=req.principal,
                action=req.action,
                resource=req.resource,
                evidence=req.evidence,
                attestation=p.attestation,
            )
            return outcomes.deny_later(
                enc, now, reason, policy=active, evaluation=evaluation, shadow=shadow, reasons=reasons
            )
        # 7. approval. A renewal redeems nothing: it names, for the record, the approvals the permit
        # it renews named (redeemed once, by the chain's first permit); without them it is pending.
        approvals: tuple[str, ...] = ()
        group = evaluation.obligations.approval
        if group is not None:
            carried = self.approvals.renewed(req, enc.digest, group, now) if req.renews else None
            if carried:
                approvals = carried
            elif req.renews is not None:
                # A renewal redeems no approval, so a pending one could never be used on this path:
                # the execution must be authorized anew (a refused renewal halts its guard).
                reason = (
                    f"renewal refused: the policy asks approval by {group}, which the permit being renewed "
                    "does not carry; authorize the action anew"
                )
                return outcomes.deny_later(enc, now, reason, policy=active, evaluation=evaluation, shadow=shadow)
            else:
                used = (
                    self.approvals.use(req.approval_id, enc.digest, req.runtime_kid, group, now)
                    if req.approval_id
                    else None
                )
                if used is None or used.statement_digest is None:
                    note = None if used is None else used.refusal
                    return outcomes.pending(enc, now, active, evaluation, shadow, runtime=req.runtime_kid, note=note)
                approvals = (used.statement_digest,)
        # 8. permit. A renewal's successor is claimed first: one per predecessor, by the store's key.
        jti = new_permit_id()
        if req.renews is not None and not self.store.claim_renewal(req.renews, jti, now):
            successor = self.store.successor_of(req.renews)
            raise AlreadyRenewedError(f"permit {req.renews} was already renewed (by {successor}); renew that instead")
        return outcomes.allow(
            enc,
            now,
            req,
            p.attestation,
            active,
            evaluation,
            approvals,
            shadow,
            jti=jti,
            lineage=p.lineage,
            delegation=delegation,
        )
