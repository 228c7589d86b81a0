"""The decision walk and the one thread that takes every decision.

Step 2 (``request``) runs in the caller's thread (:func:`check_request`). The
:class:`Decider` thread then takes every queued request, in batches: steps 1, 3, 4 and 5
for each (:meth:`Decider.prepare`), one Cedar batch per policy version (step 6,
``policy``), then the decision, step 7 (``approval``) and step 8 (``permit``) for each
(:meth:`Decider.conclude`). Any exception on the way but a refusal is a logged denial
(fail closed). What the walk needs it is given explicitly: the keyring
(:class:`~fiat.authorize.signing.AuthorityKeys`), the revocations, the active policy, the
approvals, and the outcomes that sign the evidence and hand it to the log.
"""

from __future__ import annotations

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
from fiat.authorize.decision import AuthorizationRequest, AuthorizationResult
from fiat.authorize.names import entity_uid
from fiat.authorize.outcomes import Answer, Outcomes
from fiat.authorize.policy import Evaluation, PolicyError
from fiat.authorize.policy_state import ActivePolicy, PolicyState
from fiat.authorize.revocations import Revocations, principal_key
from fiat.authorize.signing import AuthorityKeys
from fiat.errors import ApprovalError, AuthorizationError, MalformedError, MalformedRequestError
from fiat.establish.appraisal import appraise
from fiat.formats.action import EncodedRequest, encode_action_request
from fiat.formats.canonical import canonical
from fiat.prove import evidence as ev

log = logging.getLogger("fiat.authority")
_T = TypeVar("_T")


def check_request(req: AuthorizationRequest) -> EncodedRequest:
    """Step 2, ``request``: well-formed and canonicalizable; its digests computed once.

    A malformed request raises :class:`MalformedRequestError` (a refusal, not a decision).
    """
    try:
        enc = encode_action_request(req.principal, req.action, req.resource, req.context, req.parent, encode=canonical)
        entity_uid(req.principal, "principal")
        entity_uid(req.resource, "resource")
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

    def cedar_request(self) -> tuple[str, str, str, dict[str, Any]]:
        return (self.req.principal, self.req.action, self.req.resource, self.context)


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
    ) -> None:
        self.recorder, self.keys, self.revocations = recorder, keys, revocations
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
            try:
                evaluations: list[Evaluation | Exception] = list(
                    bundle.evaluate_many([p.cedar_request() for p, _ in items])
                )
            except Exception as exc:  # fail closed, each request on its own
                evaluations = [exc] * len(items)
            for (p, done), evaluation in zip(items, evaluations, strict=True):
                try:
                    answer = self._guarded(partial(self.conclude, p, evaluation), p.enc, p.now)
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
        # 4. lineage
        depth = 0
        if req.parent is not None:
            parent = self.recorder.index.permit(req.parent)
            if parent is None:
                return deny_later(enc, now, f"parent permit {req.parent} was not issued here")
            if is_revoked("permit", req.parent):
                return deny_later(enc, now, f"parent permit {req.parent} is revoked")
            depth = parent.depth + 1
        # 5. revocation (principals compared in their one Cedar spelling)
        if is_revoked("principal", principal_key(req.principal)):
            return deny_later(enc, now, f"principal {req.principal} is revoked")
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
                "lineageDepth": depth,
            },
        }
        return Prepared(req, enc, now, attestation, active, context)

    def conclude(self, p: Prepared, evaluation: Evaluation | Exception) -> Answer:
        """Steps 6 (the decision), 7 and 8, given Cedar's evaluation of the prepared request."""
        req, enc, now, active = p.req, p.enc, p.now, p.active
        outcomes = self.outcomes
        if isinstance(evaluation, PolicyError | MalformedError):
            return outcomes.deny_later(enc, now, f"policy evaluation failed: {evaluation}", policy=active)
        if isinstance(evaluation, Exception):
            raise evaluation
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
        # 7. approval (a renewal carries over the approvals of the permit it renews)
        approvals: tuple[str, ...] = ()
        group = evaluation.obligations.approval
        if group is not None:
            carried = self.approvals.renewed(req, enc.digest, group, now) if req.renews else None
            if carried:
                approvals = carried
            else:
                used = (
                    self.approvals.use(req.approval_id, enc.digest, req.runtime_kid, now) if req.approval_id else None
                )
                if used is None or used.statement_digest is None:
                    note = None if used is None else used.refusal
                    return outcomes.pending(enc, now, active, evaluation, shadow, runtime=req.runtime_kid, note=note)
                approvals = (used.statement_digest,)
        # 8. permit
        return outcomes.allow(enc, now, req, p.attestation, active, evaluation, approvals, shadow)
