"""The three outcomes of a decision, each a signed decision statement handed to the log.

* :meth:`Outcomes.deny_later`: a denial, whichever step refused (fail closed: if the log
  is down, still a denial);
* :meth:`Outcomes.pending`: step 7 (``approval``) asks for a human: the pending statement
  and the approval row it opens commit in one log batch; the same action asked again by the
  same runtime while that approval is pending and unexpired names it again, opening none;
* :meth:`Outcomes.allow`: step 8 (``permit``): the permit is minted (JWS, ``cnf`` = the
  runtime key) and logged with the signed decision statement, in one durable batch.

Nothing here waits for the log: each outcome is a :data:`Deferred` whose caller is answered
by the log's sequencer once the evidence is durable (:meth:`Outcomes.settle_later`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from fiat.authorize import explain
from fiat.authorize.decision import AuthorizationRequest, AuthorizationResult, Lineage
from fiat.authorize.permit import Constraints, PermitRequest, PolicyRef, mint_permit
from fiat.authorize.policy import Evaluation
from fiat.authorize.policy_state import ActivePolicy
from fiat.authorize.signing import AuthorityKeys
from fiat.config import Config
from fiat.formats import jws
from fiat.formats.action import EncodedRequest, check_scope
from fiat.formats.statement import Statement
from fiat.persist.protocols import AuthorityStore
from fiat.persist.records import ApprovalRecord, EvidenceLink
from fiat.prove import evidence as ev
from fiat.prove.log import AppendResult

log = logging.getLogger("fiat.authority")


@dataclass(frozen=True)
class Deferred:
    """An answer whose evidence is submitted to the log but not yet durable.

    ``fill`` builds the result from the appended entries (their log indexes); ``on_error``
    gives the answer instead when the appends fail (for an allow: a denial, fail closed).
    """

    futures: list[Future[AppendResult]]
    fill: Callable[[list[AppendResult]], AuthorizationResult]
    on_error: Callable[[BaseException], Answer]


Answer = AuthorizationResult | Deferred


def decision_statement(
    enc: EncodedRequest,
    now: float,
    decision: str,
    reason: str,
    policy: dict[str, Any],
    shadow: tuple[dict[str, Any], ...],
    **extra: Any,
) -> Statement:
    """The decision statement of one request (its digests computed once, in ``enc``)."""
    return ev.decision_statement(
        decision=decision,
        reason=reason,
        request=enc.request,
        request_digest=enc.digest,
        policy=policy,
        at=now,
        context_digest=enc.context_digest,
        shadow=shadow,
        **extra,
    )


def policy_json(active: ActivePolicy | None, evaluation: Evaluation | None) -> dict[str, Any]:
    if active is None:
        return {"digest": None, "version": None, "determining": []}
    return PolicyRef(active.digest, active.version, evaluation.determining if evaluation else ()).to_json()


class Outcomes:
    """Builds each outcome's signed evidence and submits it to the log, without waiting."""

    def __init__(
        self,
        cfg: Config,
        recorder: ev.EvidenceRecorder,
        store: AuthorityStore,
        keys: AuthorityKeys,
        approval_timeout: float,
    ) -> None:
        self.cfg, self.recorder, self.store, self.keys = cfg, recorder, store, keys
        self.log = recorder.log
        self.approval_timeout = approval_timeout
        # Approvals opened by this process whose batch is not yet durable, by (action digest,
        # runtime): a repeat in the same burst names the same one. Each leaves once its batch
        # resolves, by when the store answers for it (:meth:`_open_approval`).
        self._opening: dict[tuple[str, str], ApprovalRecord] = {}
        self._opening_lock = threading.Lock()

    def settle(self, answer: Answer) -> AuthorizationResult:
        """Wait for an answer's log appends and return the final result."""
        done: Future[AuthorizationResult] = Future()
        self.settle_later(answer, done)
        self.log.flush()  # anything this thread staged must reach the sequencer before waiting
        return done.result()

    def settle_later(self, answer: Answer, done: Future[AuthorizationResult]) -> None:
        """Resolve ``done`` once an answer's log appends are durable (called back by the sequencer)."""
        if isinstance(answer, AuthorizationResult):
            done.set_result(answer)
            return

        def appended(_: Future[AppendResult]) -> None:
            try:
                results = [f.result() for f in answer.futures]
            except Exception as exc:
                try:
                    self.settle_later(answer.on_error(exc), done)
                except Exception as again:  # never leave a caller waiting
                    done.set_exception(again)
                return
            try:
                done.set_result(answer.fill(results))
            except Exception as exc:
                done.set_exception(exc)

        answer.futures[-1].add_done_callback(appended)  # one batch: the last entry resolves last

    def deny(
        self,
        enc: EncodedRequest,
        now: float,
        reason: str,
        *,
        evidence_digest: str | None = None,
    ) -> AuthorizationResult:
        """A logged denial, waited for (outside the decider thread)."""
        return self.settle(self.deny_later(enc, now, reason, evidence_digest=evidence_digest))

    def deny_later(
        self,
        enc: EncodedRequest,
        now: float,
        reason: str,
        *,
        policy: ActivePolicy | None = None,
        evaluation: Evaluation | None = None,
        shadow: tuple[dict[str, Any], ...] = (),
        evidence_digest: str | None = None,
        reasons: tuple[str, ...] = (),
    ) -> Answer:
        """A denial; its signed statement is submitted to the log. If the log is down: still deny."""
        result = AuthorizationResult(
            "deny",
            reason,
            action_digest=enc.digest,
            determining=evaluation.determining if evaluation else (),
            shadow=shadow,
            reasons=reasons,
        )
        try:
            statement = decision_statement(
                enc, now, "deny", reason, policy_json(policy, evaluation), shadow, evidence_digest=evidence_digest
            )
            futures = self.recorder.submit(statements=[(self.keys.sign(statement, decision=True), None)])
        except Exception as exc:
            log.error("could not log a denial: %s", exc)
            return result

        def unlogged(exc: BaseException) -> Answer:
            log.error("could not log a denial: %s", exc)
            return result

        return Deferred(
            futures, lambda appended: dataclasses.replace(result, decision_index=appended[0].index), unlogged
        )

    def _open_approval(self, digest: str, runtime: str, group: str, now: float) -> ApprovalRecord | None:
        """The approval already open for this action, runtime and group, pending and unexpired, if any."""
        with self._opening_lock:
            held = self._opening.get((digest, runtime))
        if held is None or held.expires_at <= now or held.group != group:
            # Not held (any more): its batch resolved, so the store has it if it committed.
            held = self.store.pending_approval(digest, runtime, now)
        return held if held is not None and held.group == group else None

    def _hold(self, approval: ApprovalRecord, futures: list[Future[AppendResult]]) -> None:
        """Name ``approval`` to repeats until its batch resolves (from then on the store does)."""
        key = (approval.action_digest, approval.runtime or "")
        with self._opening_lock:
            self._opening[key] = approval

        def resolved(_: Future[AppendResult]) -> None:
            with self._opening_lock:
                if self._opening.get(key) is approval:
                    del self._opening[key]

        futures[-1].add_done_callback(resolved)

    def pending(
        self,
        enc: EncodedRequest,
        now: float,
        active: ActivePolicy,
        evaluation: Evaluation,
        shadow: tuple[dict[str, Any], ...],
        *,
        runtime: str,
        note: str | None = None,
    ) -> Answer:
        """A pending decision; its statement and the approval it names commit in one log batch.

        While an approval for this action, this runtime and this group is pending and unexpired,
        the decision names it instead of opening another (a retry, a burst, a failed redemption:
        one approval for an approver to decide); its row is staged again (inserted only if absent),
        so a logged pending decision never names an approval the store lacks, even when the batch
        that opened it failed. ``note`` says why the approval the request named was not used.
        Nothing waits here (the decider goes on with its batch): the caller learns the approval
        id once both are durable. If the batch fails, neither exists, and the answer is a denial.
        """
        group = evaluation.obligations.approval or "default"
        approval = self._open_approval(enc.digest, runtime, group, now)
        opens = approval is None
        if approval is None:
            approval_id = "apr_" + secrets.token_urlsafe(12)
            approval = ApprovalRecord(
                approval_id, enc.digest, enc.canonical, group, now, now + self.approval_timeout, runtime=runtime
            )
        reason = f"approval by {group} required (policy {', '.join(evaluation.determining)})"
        if note:
            reason += f"; {note}"
        statement = decision_statement(
            enc,
            now,
            "pending",
            reason,
            policy_json(active, evaluation),
            shadow,
            approval_id=approval.id,
            approval_group=group,
        )
        futures = self.recorder.submit(
            statements=[(self.keys.sign(statement, decision=True), None)],
            rows=[
                dataclasses.replace(approval, status="pending", approver=None, statement_digest=None, log_index=None)
            ],
        )
        if opens:
            self._hold(approval, futures)
        reasons = explain.permitted(active.bundle, evaluation, pending=True)
        approval_id, expires = approval.id, approval.expires_at

        def fill(appended: list[AppendResult]) -> AuthorizationResult:
            return AuthorizationResult(
                "pending",
                reason,
                action_digest=enc.digest,
                decision_index=appended[0].index,
                approval_id=approval_id,
                approval_expires=expires,
                determining=evaluation.determining,
                shadow=shadow,
                reasons=reasons,
            )

        def unlogged(exc: BaseException) -> Answer:
            log.error("authorization failed closed: %s", exc)
            return self.deny_later(enc, now, f"failed closed: {exc}")

        return Deferred(futures, fill, unlogged)

    def allow(
        self,
        enc: EncodedRequest,
        now: float,
        req: AuthorizationRequest,
        attestation: dict[str, Any],
        active: ActivePolicy,
        evaluation: Evaluation,
        approvals: tuple[str, ...],
        shadow: tuple[dict[str, Any], ...],
        *,
        jti: str | None = None,
        lineage: Lineage | None = None,
        delegation: dict[str, Any] | None = None,
    ) -> Answer:
        """Step 8. A renewal (``req.renews``) mints the successor of one execution: claim ``renews``,
        never single use (nothing new to consume); its approvals name the chain's, for the record."""
        runtime = self.keys.ring.find(req.runtime_kid)
        assert runtime is not None
        ob = evaluation.obligations
        rec, key = self.keys.authority
        request, digest = enc.request, enc.digest
        spec = PermitRequest(
            request,
            runtime.public_key,
            PolicyRef(active.digest, active.version, evaluation.determining),
            attestation["digest"],
            ttl=ob.ttl,
            constraints=Constraints(ob.max_duration, ob.heartbeat_ms, ob.single_use and req.renews is None),
            approvals=approvals,
            action_digest=digest,
            renews=req.renews,
            # Checked in step 2 (duplicates dropped); with none asked, a child inherits its parent's scope.
            scope=(
                check_scope(req.scope)
                if req.scope is not None
                else (list(lineage.scope) if lineage is not None and lineage.scope is not None else None)
            ),
            lineage=lineage.principals if lineage is not None else (),
            exp_cap=lineage.exp_cap if lineage is not None else None,
            delegation=delegation,
        )
        token, claims = mint_permit(
            spec,
            key=key,
            kid=rec.kid,
            issuer=self.cfg.authority.issuer,
            audience=self.cfg.authority.audience,
            now=int(now),
            jti=jti,
        )
        jti = claims["jti"]
        statement = decision_statement(
            enc,
            now,
            "allow",
            "permitted by " + ", ".join(evaluation.determining),
            policy_json(active, evaluation),
            shadow,
            permit=(jti, hashlib.sha256(token.encode("ascii")).hexdigest()),
            evidence_digest=attestation["digest"],
            approval_group=ob.approval if approvals else None,
        )
        envelope = self.keys.sign(statement, decision=True)
        # The approvals this permit consumed join its evidence in the same transaction.
        links = [
            EvidenceLink(jti, "approval", idx)
            for approval_digest in approvals
            if (idx := self.store.approval_log_index(approval_digest)) is not None
        ]
        futures = self.recorder.submit(
            permit=(token, request),
            statements=[(envelope, jti)],
            claims=claims,
            kinds=["decision"],
            request_bytes=enc.canonical,
            runtime=jws.jwk_thumbprint(runtime.public_key),
            links=links,
        )
        obligations = {
            "ttl": ob.ttl,
            "maxDuration": ob.max_duration,
            "heartbeatIntervalMs": ob.heartbeat_ms,
            "singleUse": ob.single_use and req.renews is None,
            "approval": ob.approval,
        }
        reason = statement.predicate["reason"]
        reasons = explain.permitted(active.bundle, evaluation)

        def fill(appended: list[AppendResult]) -> AuthorizationResult:
            return AuthorizationResult(
                "allow",
                reason,
                action_digest=digest,
                permit=token,
                permit_id=jti,
                decision_index=appended[1].index,
                permit_index=appended[0].index,
                determining=evaluation.determining,
                shadow=shadow,
                obligations=obligations,
                reasons=reasons,
            )

        def unlogged(exc: BaseException) -> Answer:
            # No durable evidence, no permit: fail closed.
            log.error("authorization failed closed: the permit could not be logged: %s", exc)
            return self.deny_later(enc, now, f"failed closed: the permit could not be logged: {exc}")

        return Deferred(futures, fill, unlogged)
