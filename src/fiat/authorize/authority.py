"""The authority: decide before anything runs, mint the permit, record every decision.

``Authority.authorize`` walks these steps; any exception on the way is a
**deny** (fail closed), logged as a signed decision while the log is up:

1. ``runtime``    the runtime key (proven by the caller, e.g. with DPoP) is enrolled,
                  active and not revoked.
2. ``request``    the action request (principal, action, resource, context, parent)
                  is well-formed and canonicalizable; its digest is computed.
3. ``evidence``   the runtime's environment Evidence is appraised into an
                  Attestation Result (RATS, RFC 9334): ``verified`` iff its digest
                  recomputes over its claims.
4. ``lineage``    a parent permit must be one this authority issued, unrevoked;
                  the lineage depth is the parent's plus one.
5. ``revocation`` neither principal nor runtime is revoked.
6. ``policy``     Cedar evaluates the request (deny by default, forbid wins); shadow
                  results are logged, not enforced; obligations come from annotations.
7. ``approval``   if an obligation asks for a human, a pending approval is created, or
                  a granted one (bound to this action digest, unexpired, unused) is consumed.
8. ``permit``     the permit is minted (JWS, ``cnf`` = the runtime key) and logged with
                  the signed decision statement, in one durable batch.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.authorize import explain
from fiat.authorize.names import entity_uid
from fiat.authorize.permit import Constraints, PermitRequest, PolicyRef, mint_permit
from fiat.authorize.policy import Evaluation, PolicyBundle, PolicyError, load_bundle, read_bundle_files
from fiat.config import Config
from fiat.errors import (
    AlreadyConsumedError,
    AlreadyDecidedError,
    ApprovalError,
    ApproverSignatureError,
    AuthorizationError,
    MalformedError,
    MalformedRequestError,
    UnknownApprovalError,
)
from fiat.formats import jws
from fiat.formats.action import EncodedRequest, encode_action_request
from fiat.formats.canonical import canonical, compact
from fiat.formats.dsse import Envelope
from fiat.formats.encoding import json_digest, rfc3339
from fiat.formats.statement import APPROVAL, RECEIPT, Statement
from fiat.keys.keyring import KeyRecord, KeyRing, now_second
from fiat.persist.protocols import AuthorityStore
from fiat.persist.records import ApprovalRecord, EvidenceLink, StoredPolicy
from fiat.prove import evidence as ev
from fiat.prove.log import AppendResult
from fiat.verify.trust_state import TRUST_STATE_TYP

log = logging.getLogger("fiat.authority")
_T = TypeVar("_T")

APPROVAL_TIMEOUT = 300.0
APPROVAL_VALIDITY = 600.0  # a granted approval must be used within this long


def principal_key(principal: str) -> str:
    """The one spelling of a principal used for revocations (its Cedar entity UID)."""
    return entity_uid(principal, "principal")


@dataclass(frozen=True)
class AuthorizationRequest:
    principal: str
    action: str
    resource: str
    runtime_kid: str
    context: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    evidence: dict[str, Any] | None = None
    approval_id: str | None = None
    renews: str | None = None  # the permit this one renews (same action, same runtime)


@dataclass(frozen=True)
class AuthorizationResult:
    decision: str  # allow | deny | pending
    reason: str
    action_digest: str | None = None
    permit: str | None = None
    permit_id: str | None = None
    decision_index: int | None = None
    permit_index: int | None = None
    approval_id: str | None = None
    approval_expires: float | None = None
    determining: tuple[str, ...] = ()
    shadow: tuple[dict[str, Any], ...] = ()
    obligations: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()  # why, for the caller (not part of the signed statement)

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "reasons": list(self.reasons or (self.reason,)),
            "actionDigest": self.action_digest,
            "permit": self.permit,
            "permitId": self.permit_id,
            "decisionLogIndex": self.decision_index,
            "permitLogIndex": self.permit_index,
            "approvalId": self.approval_id,
            "approvalExpires": None if self.approval_expires is None else rfc3339(self.approval_expires),
            "determiningPolicies": list(self.determining),
            "shadow": list(self.shadow),
            "obligations": self.obligations,
        }


@dataclass(frozen=True)
class _Deferred:
    """An answer whose evidence is submitted to the log but not yet durable.

    ``fill`` builds the result from the appended entries (their log indexes); ``on_error``
    gives the answer instead when the appends fail (for an allow: a denial, fail closed).
    """

    futures: list[Future[AppendResult]]
    fill: Callable[[list[AppendResult]], AuthorizationResult]
    on_error: Callable[[BaseException], _Answer]


_Answer = AuthorizationResult | _Deferred


@dataclass(frozen=True)
class _Prepared:
    """A request past steps 1–5, waiting for Cedar."""

    req: AuthorizationRequest
    enc: EncodedRequest
    now: float
    attestation: dict[str, Any]
    active: _ActivePolicy
    context: dict[str, Any]

    def cedar_request(self) -> tuple[str, str, str, dict[str, Any]]:
        return (self.req.principal, self.req.action, self.req.resource, self.context)


class _Decider:
    """One thread takes every decision, in batches, while earlier batches are being made durable.

    Callers queue their checked request and wait. The thread decides everything queued,
    back to back, with one Cedar call for the batch; it stages each decision's evidence and
    hands the whole burst to the log's sequencer at once, without waiting, and goes on with
    the next batch while the sequencer makes this one durable and answers each caller.
    Threads of one process share one interpreter lock, so more deciding threads would only
    take turns; one decider keeps the lock hand-offs to a few per batch.
    """

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self._cond = threading.Condition()
        self._queue: deque[tuple[AuthorizationRequest, EncodedRequest, float, Future[AuthorizationResult]]] = deque()
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
            with self.authority.log.staged():  # the batch's evidence goes to the log as one batch
                self._decide_batch(batch)

    def _decide_batch(
        self, batch: list[tuple[AuthorizationRequest, EncodedRequest, float, Future[AuthorizationResult]]]
    ) -> None:
        """Steps 1–5 for each request, one Cedar call per policy version, then steps 6–8 for each."""
        auth = self.authority
        waiting: list[tuple[_Prepared, Future[AuthorizationResult]]] = []
        for req, enc, now, done in batch:
            try:
                prepared = auth._guarded(partial(auth._prepare, req, enc, now), enc, now)
            except BaseException as exc:  # AuthorizationError: the caller sees it
                done.set_exception(exc)
                continue
            if isinstance(prepared, _Prepared):
                waiting.append((prepared, done))
            else:
                self._answer(prepared, done)
        by_policy: dict[int, list[tuple[_Prepared, Future[AuthorizationResult]]]] = {}
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
                    answer = auth._guarded(partial(auth._conclude, p, evaluation), p.enc, p.now)
                except BaseException as exc:
                    done.set_exception(exc)
                    continue
                self._answer(answer, done)

    def _answer(self, answer: _Answer, done: Future[AuthorizationResult]) -> None:
        try:
            self.authority._settle_later(answer, done)
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


@dataclass
class _ActivePolicy:
    version: int
    digest: str
    bundle: PolicyBundle


def appraise(evidence: dict[str, Any] | None) -> dict[str, Any]:
    """Appraise runtime Evidence into an Attestation Result (RATS, RFC 9334 §3)."""
    if not isinstance(evidence, dict):
        return {"verified": False, "digest": json_digest({}), "reason": "no evidence"}
    claims, digest = evidence.get("claims"), evidence.get("digest")
    if not isinstance(claims, dict) or not isinstance(digest, str):
        return {"verified": False, "digest": json_digest({}), "reason": "evidence needs claims and digest"}
    try:
        recomputed = hashlib.sha256(canonical(claims)).hexdigest()
    except MalformedError as exc:
        return {"verified": False, "digest": json_digest({}), "reason": exc.reason}
    if recomputed != digest:
        return {"verified": False, "digest": recomputed, "reason": "the digest does not match the claims"}
    return {"verified": True, "digest": digest, "reason": "digest recomputed over the claims"}


class Authority:
    """The authorization service, in process. Thread-safe.

    Its stores are passed in (``fiat.wiring.open_authority`` builds them from the home's
    ``storage.backend``): ``recorder`` logs and indexes the evidence, ``store`` keeps policy
    versions, approvals, revocations and single use. Closing the authority closes both.
    """

    def __init__(
        self,
        cfg: Config,
        recorder: ev.EvidenceRecorder,
        store: AuthorityStore,
        *,
        clock: Callable[[], float] = time.time,
        approval_timeout: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.approval_timeout = (
            float(cfg.authority.approval_timeout_s) if approval_timeout is None else approval_timeout
        )
        self.recorder = recorder
        self.log = self.recorder.log
        self.store = store
        self._decider = _Decider(self)
        self._lock = threading.Lock()
        self._revoke_lock = threading.Lock()
        self._revoked: frozenset[tuple[str, str]] = frozenset()
        self._revoked_epoch = -1
        self._revoked_checked = 0.0
        self._policy_checked = time.monotonic()
        self._policy: _ActivePolicy | None = None
        self._policy_error: str | None = None
        self._keys_mtime = self._keyring_mtime()
        self._ring = KeyRing(cfg.keys_dir)
        self._authority: tuple[KeyRecord, Ed25519PrivateKey] = self._ring.signing_key("authority")
        self.reload_policy()

    def close(self) -> None:
        self._decider.close()
        self.recorder.close()
        self.store.close()

    def _keyring_mtime(self) -> int:
        try:
            return (self.cfg.keys_dir / "keyring.json").stat().st_mtime_ns
        except OSError:
            return 0

    # -- keys and policy -------------------------------------------------------------

    def reload_keys(self) -> bool:
        """Pick up key changes made while running (rotation, `fiat keys add`). Returns True on change."""
        path = self.cfg.keys_dir / "keyring.json"
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return False
        if mtime == self._keys_mtime:
            return False
        ring = KeyRing(self.cfg.keys_dir)
        authority = ring.signing_key("authority")
        with self._lock:
            self._ring, self._authority, self._keys_mtime = ring, authority, mtime
        signer, retired = ring.log_keys(self.cfg.log.origin, self.cfg.log_key_path)
        if signer.verifier != self.log.verifier:
            self.log.rekey(signer, retired)
            log.info("the log now signs with %s", signer.verifier.encode())
        log.info("keys reloaded")
        return True

    def reload_policy(self) -> bool:
        """Load the newest published policy version if it changed. Returns True on change."""
        latest = self.store.latest_policy()
        if latest is None:
            with self._lock:
                self._policy, self._policy_error = None, "no policy has been published"
            return False
        version, digest, files_json = latest.version, latest.digest, latest.files
        if self._policy is not None and self._policy.version == version:
            return False
        try:
            files = {k: base64.b64decode(v) for k, v in json.loads(files_json).items()}
            bundle = load_bundle(files=files)
        except (PolicyError, ValueError) as exc:
            with self._lock:
                self._policy, self._policy_error = None, f"policy version {version} does not load: {exc}"
            log.error("policy version %d does not load; every request is denied: %s", version, exc)
            return True
        with self._lock:
            self._policy, self._policy_error = _ActivePolicy(version, digest, bundle), None
        log.info("policy version %d (%s) is active", version, digest[:16])
        return True

    def _follow_policy(self) -> None:
        """Pick up a version published through the same store by another process, checked at most once a second."""
        now = time.monotonic()
        if now - self._policy_checked < 1.0:
            return
        self._policy_checked = now
        latest = self.store.latest_policy_version()
        current = self._policy
        if latest is not None and (current is None or current.version != latest):
            self.reload_policy()

    @property
    def policy(self) -> _ActivePolicy | None:
        return self._policy

    def publish_policy(self, directory: Path) -> tuple[int, str, int]:
        """Validate and publish a bundle: new version, signed and logged policy statement."""
        files = read_bundle_files(directory)
        bundle = load_bundle(directory, files)
        errors = bundle.validate()
        if errors:
            raise PolicyError("the bundle does not validate against its schema:\n  " + "\n  ".join(errors))
        latest = self.store.latest_policy()
        if latest is not None and latest.digest == bundle.digest:
            return latest.version, bundle.digest, latest.log_index  # unchanged: no new version
        version = 1 if latest is None else latest.version + 1
        now = self.clock()
        statement = ev.policy_statement(digest=bundle.digest, version=version, files=bundle.manifest(), at=now)
        index = self._log_statement(statement)
        encoded = json.dumps({k: base64.b64encode(v).decode() for k, v in files.items()}, sort_keys=True)
        self.store.add_policy(StoredPolicy(version, bundle.digest, now, index, encoded))
        self.reload_policy()
        return version, bundle.digest, index

    # -- the decision --------------------------------------------------------------------

    def authorize(self, req: AuthorizationRequest) -> AuthorizationResult:
        """Decide; never raises for policy or storage trouble — those are denials.

        The request is checked here, in the caller's thread (a malformed one raises
        :class:`MalformedRequestError`); the decision itself is taken by the decider thread
        (see :class:`_Decider`), and the answer comes back once its evidence is durable.
        """
        return self.submit(req).result()

    def submit(self, req: AuthorizationRequest) -> Future[AuthorizationResult]:
        """As :meth:`authorize`, without waiting: the future resolves once the evidence is durable
        (an event loop awaits it with ``asyncio.wrap_future``, holding no thread)."""
        now = self.clock()
        try:
            enc = encode_action_request(
                req.principal, req.action, req.resource, req.context, req.parent, encode=canonical
            )
            entity_uid(req.principal, "principal")
            entity_uid(req.resource, "resource")
        except MalformedError as exc:
            raise MalformedRequestError(str(exc)) from exc
        return self._decider.submit(req, enc, now)

    def _guarded(self, step: Callable[[], _T], enc: EncodedRequest, now: float) -> _T | _Answer:
        """Run a decision step; any failure but a refusal is a logged denial (fail closed)."""
        try:
            return step()
        except (AuthorizationError, ApprovalError):
            raise
        except Exception as exc:
            log.error("authorization failed closed: %s", exc)
            return self._deny_later(enc, now, f"failed closed: {exc}")

    def _settle(self, answer: _Answer) -> AuthorizationResult:
        """Wait for an answer's log appends and return the final result."""
        done: Future[AuthorizationResult] = Future()
        self._settle_later(answer, done)
        self.log.flush()  # anything this thread staged must reach the sequencer before waiting
        return done.result()

    def _settle_later(self, answer: _Answer, done: Future[AuthorizationResult]) -> None:
        """Resolve ``done`` once an answer's log appends are durable (called back by the sequencer)."""
        if isinstance(answer, AuthorizationResult):
            done.set_result(answer)
            return

        def appended(_: Future[AppendResult]) -> None:
            try:
                results = [f.result() for f in answer.futures]
            except Exception as exc:
                try:
                    self._settle_later(answer.on_error(exc), done)
                except Exception as again:  # never leave a caller waiting
                    done.set_exception(again)
                return
            try:
                done.set_result(answer.fill(results))
            except Exception as exc:
                done.set_exception(exc)

        answer.futures[-1].add_done_callback(appended)  # one batch: the last entry resolves last

    def _prepare(self, req: AuthorizationRequest, enc: EncodedRequest, now: float) -> _Prepared | _Answer:
        """Steps 1–5, and the policy context of step 6."""
        # 1. runtime
        runtime = self._ring.find(req.runtime_kid)
        if runtime is None or runtime.role != "runtime" or not runtime.valid_at(now):
            raise AuthorizationError(f"runtime key {req.runtime_kid} is not enrolled or not active")
        if self.is_revoked("runtime", req.runtime_kid):
            return self._deny_later(enc, now, f"runtime {req.runtime_kid} is revoked")
        # 3. evidence
        attestation = appraise(req.evidence)
        # 4. lineage
        depth = 0
        if req.parent is not None:
            parent = self.recorder.index.permit(req.parent)
            if parent is None:
                return self._deny_later(enc, now, f"parent permit {req.parent} was not issued here")
            if self.is_revoked("permit", req.parent):
                return self._deny_later(enc, now, f"parent permit {req.parent} is revoked")
            depth = parent.depth + 1
        # 5. revocation (principals compared in their one Cedar spelling)
        if self.is_revoked("principal", principal_key(req.principal)):
            return self._deny_later(enc, now, f"principal {req.principal} is revoked")
        # 6. policy (another process sharing this home may have published a newer version)
        self._follow_policy()
        active = self._policy
        if active is None:
            return self._deny_later(enc, now, self._policy_error or "no active policy")
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
        return _Prepared(req, enc, now, attestation, active, context)

    def _conclude(self, p: _Prepared, evaluation: Evaluation | Exception) -> _Answer:
        """Steps 6 (the decision), 7 and 8, given Cedar's evaluation of the prepared request."""
        req, enc, now, active = p.req, p.enc, p.now, p.active
        if isinstance(evaluation, PolicyError | MalformedError):
            return self._deny_later(enc, now, f"policy evaluation failed: {evaluation}", policy=active)
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
            return self._deny_later(
                enc, now, reason, policy=active, evaluation=evaluation, shadow=shadow, reasons=reasons
            )
        # 7. approval (a renewal carries over the approvals of the permit it renews)
        approvals: tuple[str, ...] = ()
        if evaluation.obligations.approval is not None:
            carried = self._renewed_approvals(req, enc.digest, now) if req.renews else None
            if carried:
                approvals = carried
            else:
                granted = self._use_approval(req.approval_id, enc.digest, now) if req.approval_id else None
                if granted is None:
                    return self._pending(enc, now, active, evaluation, shadow)
                approvals = (granted,)
        # 8. permit
        return self._allow(enc, now, req, p.attestation, active, evaluation, approvals, shadow)

    def _signed(self, statement: Statement, *, decision: bool = False) -> Envelope:
        """A statement in DSSE, signed with the active authority key.

        A decision statement holds only strings (times are RFC 3339), integers, booleans,
        null and Fiat's own member names, so its payload skips the canonicalizer's type walk.
        """
        rec, key = self._authority
        return ev.sign_statement(statement, [(rec.kid, key)], built=decision)

    def _log_statement(self, statement: Statement, jti: str | None = None, *, decision: bool = False) -> int:
        """Sign with the authority key and append to the log; returns the log index."""
        return self.recorder.record(statements=[(self._signed(statement, decision=decision), jti)])[0].index

    @staticmethod
    def _decision_statement(
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

    def _policy_json(self, active: _ActivePolicy | None, evaluation: Evaluation | None) -> dict[str, Any]:
        if active is None:
            return {"digest": None, "version": None, "determining": []}
        return PolicyRef(active.digest, active.version, evaluation.determining if evaluation else ()).to_json()

    def _deny(
        self,
        enc: EncodedRequest,
        now: float,
        reason: str,
        *,
        evidence_digest: str | None = None,
    ) -> AuthorizationResult:
        """A logged denial, waited for (outside the decider thread)."""
        return self._settle(self._deny_later(enc, now, reason, evidence_digest=evidence_digest))

    def _deny_later(
        self,
        enc: EncodedRequest,
        now: float,
        reason: str,
        *,
        policy: _ActivePolicy | None = None,
        evaluation: Evaluation | None = None,
        shadow: tuple[dict[str, Any], ...] = (),
        evidence_digest: str | None = None,
        reasons: tuple[str, ...] = (),
    ) -> _Answer:
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
            statement = self._decision_statement(
                enc, now, "deny", reason, self._policy_json(policy, evaluation), shadow, evidence_digest=evidence_digest
            )
            futures = self.recorder.submit(statements=[(self._signed(statement, decision=True), None)])
        except Exception as exc:
            log.error("could not log a denial: %s", exc)
            return result

        def unlogged(exc: BaseException) -> _Answer:
            log.error("could not log a denial: %s", exc)
            return result

        return _Deferred(
            futures, lambda appended: dataclasses.replace(result, decision_index=appended[0].index), unlogged
        )

    def _pending(
        self,
        enc: EncodedRequest,
        now: float,
        active: _ActivePolicy,
        evaluation: Evaluation,
        shadow: tuple[dict[str, Any], ...],
    ) -> _Answer:
        """A pending decision; its statement and the approval it opens commit in one log batch.

        Nothing waits here (the decider goes on with its batch): the caller learns the approval
        id once both are durable. If the batch fails, neither exists, and the answer is a denial.
        """
        approval_id = "apr_" + secrets.token_urlsafe(12)
        expires = now + self.approval_timeout
        group = evaluation.obligations.approval or "default"
        reason = f"approval by {group} required (policy {', '.join(evaluation.determining)})"
        statement = self._decision_statement(
            enc, now, "pending", reason, self._policy_json(active, evaluation), shadow, approval_id=approval_id
        )
        approval = ApprovalRecord(approval_id, enc.digest, enc.canonical, group, now, expires)
        futures = self.recorder.submit(statements=[(self._signed(statement, decision=True), None)], rows=[approval])
        reasons = explain.permitted(active.bundle, evaluation, pending=True)

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

        def unlogged(exc: BaseException) -> _Answer:
            log.error("authorization failed closed: %s", exc)
            return self._deny_later(enc, now, f"failed closed: {exc}")

        return _Deferred(futures, fill, unlogged)

    def _allow(
        self,
        enc: EncodedRequest,
        now: float,
        req: AuthorizationRequest,
        attestation: dict[str, Any],
        active: _ActivePolicy,
        evaluation: Evaluation,
        approvals: tuple[str, ...],
        shadow: tuple[dict[str, Any], ...],
    ) -> _Answer:
        runtime = self._ring.find(req.runtime_kid)
        assert runtime is not None
        ob = evaluation.obligations
        rec, key = self._authority
        request, digest = enc.request, enc.digest
        spec = PermitRequest(
            request,
            runtime.public_key,
            PolicyRef(active.digest, active.version, evaluation.determining),
            attestation["digest"],
            ttl=ob.ttl,
            constraints=Constraints(ob.max_duration, ob.heartbeat_ms, ob.single_use),
            approvals=approvals,
            action_digest=digest,
        )
        token, claims = mint_permit(
            spec,
            key=key,
            kid=rec.kid,
            issuer=self.cfg.authority.issuer,
            audience=self.cfg.authority.audience,
            now=int(now),
        )
        jti = claims["jti"]
        statement = self._decision_statement(
            enc,
            now,
            "allow",
            "permitted by " + ", ".join(evaluation.determining),
            self._policy_json(active, evaluation),
            shadow,
            permit=(jti, hashlib.sha256(token.encode("ascii")).hexdigest()),
            evidence_digest=attestation["digest"],
        )
        envelope = self._signed(statement, decision=True)
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
            "singleUse": ob.single_use,
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

        def unlogged(exc: BaseException) -> _Answer:
            # No durable evidence, no permit: fail closed.
            log.error("authorization failed closed: the permit could not be logged: %s", exc)
            return self._deny_later(enc, now, f"failed closed: the permit could not be logged: {exc}")

        return _Deferred(futures, fill, unlogged)

    def _renewed_approvals(self, req: AuthorizationRequest, digest: str, now: float) -> tuple[str, ...] | None:
        """Approvals of the permit being renewed, if it is this runtime's, for this action, and live."""
        assert req.renews is not None
        old = self.recorder.index.permit(req.renews)
        if old is None or old.runtime != req.runtime_kid or self.is_revoked("permit", req.renews):
            return None
        if json_digest(json.loads(old.request)) != digest or old.exp + 5 < now:
            return None
        token = self.log.read_entries(old.log_index, old.log_index + 1)[0].decode("ascii")
        claims = jws.parse(token).claims
        approvals = claims.get("approvals") or []
        return tuple(a for a in approvals if isinstance(a, str)) or None

    # -- receipts and bundles -----------------------------------------------------------------

    def record_receipt(self, envelope: Envelope) -> int:
        """Log a runtime's execution receipt after checking it is signed by the permit's cnf key."""
        try:
            statement = Statement.from_envelope(envelope)
        except MalformedError as exc:
            raise AuthorizationError(f"the receipt is not an in-toto statement: {exc}") from exc
        if statement.predicate_type != RECEIPT:
            raise AuthorizationError("the statement is not a receipt/v1 statement")
        permit = statement.predicate.get("permit")
        jti = permit.get("jti") if isinstance(permit, dict) else None
        record = self.recorder.index.permit(jti) if isinstance(jti, str) else None
        if record is None or not isinstance(jti, str):
            raise AuthorizationError("the receipt names a permit this authority did not issue")
        runtime = self._ring.find(record.runtime)
        if runtime is None or not envelope.verify_with(runtime.kid, runtime.public_key):
            raise AuthorizationError("the receipt is not signed by the permit's cnf runtime key")
        return self.recorder.record(statements=[(envelope, jti)], kinds=["receipt"])[0].index

    def bundle(self, jti: str) -> dict[str, Any]:
        return self.recorder.bundle(jti).to_json()

    # -- approvals ---------------------------------------------------------------------------

    def _use_approval(self, approval_id: str | None, digest: str, now: float) -> str | None:
        """Consume a granted approval bound to this action; None if there is none to use."""
        if approval_id is None:
            return None
        a = self.store.approval(approval_id)
        if a is None or a.action_digest != digest or a.status != "approved":
            return None
        if a.expires_at + APPROVAL_VALIDITY < now:
            return None
        if not self.store.set_approval(approval_id, "approved", "used", None, None, None):
            return None  # single use: someone else consumed it
        return a.statement_digest

    def approval(self, approval_id: str) -> dict[str, Any]:
        self.expire_approvals()
        a = self.store.approval(approval_id)
        if a is None:
            raise UnknownApprovalError(f"no approval {approval_id!r}")
        return self._approval_json(a)

    def approvals(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest approvals (with ``status``, when given), oldest first: what approvers are asked."""
        self.expire_approvals()
        return [self._approval_json(a) for a in self.store.approvals(status, limit)]

    @staticmethod
    def _approval_json(a: ApprovalRecord) -> dict[str, Any]:
        return {
            "id": a.id,
            "status": a.status,
            "actionDigest": a.action_digest,
            "request": json.loads(a.request),
            "group": a.group,
            "requestedAt": rfc3339(a.requested_at),
            "expiresAt": rfc3339(a.expires_at),
            "approver": a.approver,
        }

    def decide_approval(self, approval_id: str, envelope: Envelope) -> dict[str, Any]:
        """Accept an approver's signed approval/denial (approval/v1 statement in DSSE)."""
        now = self.clock()
        self.expire_approvals()
        a = self.store.approval(approval_id)
        if a is None:
            raise UnknownApprovalError(f"no approval {approval_id!r}")
        if a.status != "pending":
            raise AlreadyDecidedError(f"approval {approval_id} is already {a.status}")
        try:
            statement = Statement.from_envelope(envelope)
        except MalformedError as exc:
            raise ApprovalError(f"the approval is not an in-toto statement: {exc}") from exc
        if statement.predicate_type != APPROVAL:
            raise ApprovalError("the statement is not an approval/v1 statement")
        p = statement.predicate
        if p.get("id") != approval_id or p.get("decision") not in ("approve", "deny"):
            raise ApprovalError("the approval names another request or has no decision")
        if statement.subject("action-request") != a.action_digest:
            raise ApprovalError("the approval is bound to another action")
        signer = None
        for sig in envelope.signatures:
            key = self._ring.find(sig.keyid)
            usable = key is not None and key.role == "approver" and key.valid_at(now)
            if key is not None and usable and envelope.verify_with(key.kid, key.public_key):
                signer = key
                break
        if signer is None:
            raise ApproverSignatureError("the approval is not signed by an enrolled, active approver key")
        if p.get("approver") != signer.name:
            raise ApproverSignatureError(f"the approval names {p.get('approver')!r} but is signed by {signer.name!r}")
        index = self.recorder.record(statements=[(envelope, None)])[0].index
        status = "approved" if p["decision"] == "approve" else "denied"
        digest = hashlib.sha256(envelope.encode()).hexdigest()
        if not self.store.set_approval(approval_id, "pending", status, signer.name, digest, index):
            raise AlreadyDecidedError(f"approval {approval_id} was decided concurrently")
        return {"id": approval_id, "status": status, "approver": signer.name, "logIndex": index}

    def expire_approvals(self) -> list[str]:
        """Pending approvals past their timeout become denials (logged)."""
        now = self.clock()
        expired = []
        for approval_id in self.store.pending_expired(now):
            if not self.store.set_approval(approval_id, "pending", "expired", None, None, None):
                continue
            a = self.store.approval(approval_id)
            if a is None:
                continue
            r = json.loads(a.request)
            enc = encode_action_request(r["principal"], r["action"], r["resource"], r["context"], r["parent"])
            self._deny(enc, now, f"approval {approval_id} timed out; denied")
            expired.append(approval_id)
        return expired

    # -- revocation, single use, enrollment ------------------------------------------------

    def revoke(self, kind: str, target: str, reason: str) -> tuple[int, int]:
        if kind not in ("permit", "principal", "runtime"):
            raise MalformedRequestError("revoke a permit, a principal or a runtime")
        if not target or not reason:
            raise MalformedRequestError("a revocation needs a target and a reason")
        if kind == "principal":
            try:
                target = principal_key(target)
            except MalformedError as exc:
                raise MalformedRequestError(str(exc)) from exc
        with self._revoke_lock:  # the signed epoch is the stored epoch
            now = self.clock()
            epoch = self.store.revocation_epoch() + 1
            statement = ev.revocation_statement(kind=kind, target=target, reason=reason, epoch=epoch, at=now)
            index = self._log_statement(statement, target if kind == "permit" else None)
            record = self.recorder.index.permit(target) if kind == "permit" else None
            # A revoked permit stops mattering once it would have expired anyway (plus clock slack).
            expires = None if record is None else record.exp + 60
            stored = self.store.add_revocation(kind, target, reason, now, index, expires)
        if stored != epoch:
            log.error("revocation epoch %d was stored as %d (another writer?)", epoch, stored)
        self._revoked_checked = 0.0  # effective immediately for this authority's next decision
        return stored, index

    def consume(self, jti: str, runtime_kid: str) -> None:
        """Use a single-use permit once; the runtime proving ``cnf`` calls this before starting."""
        record = self.recorder.index.permit(jti)
        if record is None:
            raise AuthorizationError(f"no permit {jti!r} was issued here")
        if record.runtime != runtime_kid:
            raise AuthorizationError("only the runtime the permit is bound to (cnf) can use it")
        if self.is_revoked("permit", jti):
            raise AuthorizationError(f"permit {jti} is revoked")
        if self.is_revoked("principal", principal_key(record.principal)):
            raise AuthorizationError(f"principal {record.principal} is revoked")
        if self.is_revoked("runtime", record.runtime):
            raise AuthorizationError(f"runtime {record.runtime} is revoked")
        if record.exp < self.clock():
            raise AuthorizationError(f"permit {jti} has expired")
        if not self.store.consume(jti, self.clock()):
            raise AlreadyConsumedError(f"permit {jti} was already used (single use)")

    def is_revoked(self, kind: str, target: str) -> bool:
        """Revocations are held in memory and refreshed from storage whenever its epoch moves."""
        return (kind, target) in self._revoked_now()

    def _revoked_now(self) -> frozenset[tuple[str, str]]:
        epoch = self.store.revocation_epoch() if self._revocations_stale() else self._revoked_epoch
        if epoch != self._revoked_epoch:
            rows = self.store.revocations_since(0)
            with self._lock:
                self._revoked = frozenset((r.kind, r.target) for r in rows)
                self._revoked_epoch = epoch
        return self._revoked

    def _revocations_stale(self) -> bool:
        """Re-read the epoch at most every 50 ms (another process may revoke through the same store)."""
        now = time.monotonic()
        if now - self._revoked_checked < 0.05:
            return False
        self._revoked_checked = now
        return True

    def is_enrolled(self, kid: str) -> bool:
        """Any active key of this authority's keyring (runtime, approver, witness…)."""
        key = self._ring.find(kid)
        return key is not None and key.valid_at(self.clock())

    def enroll(self, role: str, name: str, public_key: bytes) -> KeyRecord:
        if role not in ("runtime", "approver", "witness"):
            raise MalformedRequestError("enroll a runtime, an approver or a witness")
        if len(public_key) != 32:
            raise MalformedRequestError("an Ed25519 public key is 32 bytes")
        with self._lock:
            ring = KeyRing(self.cfg.keys_dir)
            rec = ring.add_public(role, name, public_key, now_second())
            ring.save()
            self._ring = ring
            self._keys_mtime = self._keyring_mtime()
        return rec

    # -- the signed trust state -----------------------------------------------------------

    def trust_state(self, since: int = 0, epoch: int = 0) -> str:
        """The signed trust state document (JWS, typ fiat-trust-state+jwt)."""
        now = self.clock()
        rec, key = self._authority
        active = self._policy
        revocations = self.store.revocations_since(since, live_at=now)
        cp = self.log.checkpoint()
        claims = {
            "iss": self.cfg.authority.issuer,
            "iat": int(now),
            "time": round(now, 3),
            "epoch": epoch,
            "checkpoint": cp.note_bytes.decode("utf-8"),
            "policy": None if active is None else {"version": active.version, "digest": {"sha256": active.digest}},
            "revocationEpoch": self.store.revocation_epoch(),
            "since": since,
            "revocations": [
                {"epoch": r.epoch, "kind": r.kind, "target": r.target, "reason": r.reason, "time": rfc3339(r.at)}
                for r in revocations
            ],
        }
        return jws.sign_compact(compact(claims), key, kid=rec.kid, typ=TRUST_STATE_TYP)
