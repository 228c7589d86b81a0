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
4. ``lineage``    a parent permit must be one this authority issued, not covered by a
                  revocation, live (its renewal chain's head unexpired); the lineage depth
                  is the parent's plus one, at most 32; the child stays within the parent's
                  ``scope``, Cedar must allow its request for every ancestor principal too
                  (in step 6's batch), its ``exp`` is capped by the parent chain's, and it
                  carries the RFC 8693 ``act`` chain (docs/formats.md, "Delegation"). A renewal
                  (``renews``) must extend a live execution of this runtime and action,
                  with no successor yet (docs/formats.md, "Renewal and revocation").
5. ``revocation`` neither principal (nor any of a delegated request's chain) nor runtime is revoked.
6. ``policy``     Cedar evaluates the request (deny by default, forbid wins); shadow
                  results are logged, not enforced; obligations come from annotations.
7. ``approval``   if an obligation asks for a human, a pending approval is created (or the
                  one already pending for this action and runtime is named again), or a
                  granted one (bound to this action digest and this runtime, unexpired,
                  unused; decided by an approver of the group asked for who is not the
                  principal) is consumed.
8. ``permit``     the permit is minted (JWS, ``cnf`` = the runtime key) and logged with
                  the signed decision statement, in one durable batch.

:meth:`Authority.permissible` asks steps 1, 5 and 6 of pairs without a context: which
(action, resource) a principal could ever be permitted (a listing; nothing is logged).

:class:`Authority` is a thin facade; each part has its module in :mod:`fiat.authorize`:

* ``decider.py``      step 2 (:func:`~fiat.authorize.decider.check_request`) and the decider
                      thread: steps 1, 3–5, one Cedar batch (6), then 7 and 8;
* ``outcomes.py``     deny / pending / allow: the signed decision statement (and the
                      permit) handed to the log, answered once durable;
* ``approvals.py``    step 7: open, decide, expire and use approvals;
* ``revocations.py``  steps 1, 4, 5: revoke, the in-memory revocation set, single use;
* ``policy_state.py`` step 6's active policy: publish, reload, follow;
* ``signing.py``      the keyring and the authority key: reload, enrolment, signing;
* ``trust_state.py``  the signed trust state; ``receipts.py`` execution receipts;
* :mod:`fiat.establish.appraisal` step 3, the appraisal of Evidence.

Its stores are passed in (``fiat.wiring.open_authority`` builds them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from fiat.authorize.approvals import APPROVAL_TIMEOUT, APPROVAL_VALIDITY, Approvals
from fiat.authorize.decider import Decider, check_request
from fiat.authorize.decision import AuthorizationRequest, AuthorizationResult
from fiat.authorize.names import action_uid, entity_uid
from fiat.authorize.outcomes import Outcomes
from fiat.authorize.policy_state import ActivePolicy, PolicyState
from fiat.authorize.receipts import record_receipt
from fiat.authorize.revocations import Revocations, principal_key
from fiat.authorize.signing import AuthorityKeys
from fiat.authorize.trust_state import sign_trust_state
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
from fiat.establish.appraisal import appraise
from fiat.formats.dsse import Envelope
from fiat.keys.keyring import KeyRecord
from fiat.persist.protocols import AuthorityStore
from fiat.prove import evidence as ev

__all__ = [
    "APPROVAL_TIMEOUT",
    "APPROVAL_VALIDITY",
    "ActivePolicy",
    "AlreadyConsumedError",
    "AlreadyDecidedError",
    "ApprovalError",
    "ApproverSignatureError",
    "Authority",
    "AuthorizationError",
    "AuthorizationRequest",
    "AuthorizationResult",
    "MalformedRequestError",
    "UnknownApprovalError",
    "appraise",
    "principal_key",
]


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
        self.recorder = recorder
        self.log = self.recorder.log
        self.store = store
        timeout = float(cfg.authority.approval_timeout_s) if approval_timeout is None else approval_timeout
        self._keys = AuthorityKeys(cfg)
        self._policy = PolicyState(store, recorder, self._keys, clock)
        self._revocations = Revocations(store, recorder, self._keys, clock)
        self._outcomes = Outcomes(cfg, recorder, store, self._keys, timeout)
        self._approvals = Approvals(store, recorder, self._keys, self._revocations, clock, self._outcomes.deny)
        self._decider = Decider(
            recorder=recorder,
            keys=self._keys,
            revocations=self._revocations,
            policy=self._policy,
            approvals=self._approvals,
            outcomes=self._outcomes,
            store=store,
        )
        self.reload_policy()

    @property
    def approval_timeout(self) -> float:
        """Seconds a pending approval waits for an approver before it becomes a denial."""
        return self._outcomes.approval_timeout

    def close(self) -> None:
        self._decider.close()
        self.recorder.close()
        self.store.close()

    # -- keys and policy -------------------------------------------------------------

    def reload_keys(self) -> bool:
        """Pick up key changes made while running (rotation, `fiat keys add`). Returns True on change."""
        return self._keys.reload(self.log)

    def reload_policy(self) -> bool:
        """Load the newest published policy version if it changed. Returns True on change."""
        return self._policy.reload()

    @property
    def policy(self) -> ActivePolicy | None:
        return self._policy.active

    def publish_policy(self, directory: Path) -> tuple[int, str, int]:
        """Validate and publish a bundle: new version, signed and logged policy statement."""
        return self._policy.publish(directory)

    # -- the decision --------------------------------------------------------------------

    def authorize(self, req: AuthorizationRequest) -> AuthorizationResult:
        """Decide; never raises for policy or storage trouble — those are denials.

        The request is checked here, in the caller's thread (a malformed one raises
        :class:`MalformedRequestError`); the decision itself is taken by the decider thread
        (see :class:`~fiat.authorize.decider.Decider`), and the answer comes back once its
        evidence is durable.
        """
        return self.submit(req).result()

    def submit(self, req: AuthorizationRequest) -> Future[AuthorizationResult]:
        """As :meth:`authorize`, without waiting: the future resolves once the evidence is durable
        (an event loop awaits it with ``asyncio.wrap_future``, holding no thread)."""
        now = self.clock()
        return self._decider.submit(req, check_request(req), now)

    def permissible(self, runtime_kid: str, principal: str, pairs: Sequence[tuple[str, str]]) -> tuple[str, list[bool]]:
        """Which (action, resource) pairs some request by ``principal`` could be permitted: the
        active policy's digest and one flag per pair, in order. A listing, never a grant: every
        call is still decided by :meth:`authorize` on its real arguments.

        ``runtime_kid`` (proven by the caller, e.g. with DPoP) must be an enrolled, active,
        unrevoked runtime key, as step 1 asks (else :class:`AuthorizationError`). A revoked
        principal (step 5, its one Cedar spelling) is permitted nothing; otherwise each pair is
        :meth:`~fiat.authorize.policy.PolicyBundle.permissible` under the active policy, the
        newest another process published followed as step 6 follows it. A malformed name
        raises :class:`MalformedRequestError`.
        """
        now = self.clock()
        runtime = self._keys.ring.find(runtime_kid)
        if runtime is None or runtime.role != "runtime" or not runtime.valid_at(now):
            raise AuthorizationError(f"runtime key {runtime_kid} is not enrolled or not active")
        if self.is_revoked("runtime", runtime_kid):
            raise AuthorizationError(f"runtime {runtime_kid} is revoked")
        try:
            key = principal_key(principal)
            names = [(action_uid(a), entity_uid(r, "resource")) for a, r in pairs]
        except MalformedError as exc:
            raise MalformedRequestError(str(exc)) from exc
        self._policy.follow()
        active = self._policy.active
        if active is None:
            raise AuthorizationError(self._policy.error or "no active policy")
        if self.is_revoked("principal", key):
            return active.digest, [False] * len(names)
        return active.digest, active.bundle.permissible(key, names)

    # -- receipts and bundles -----------------------------------------------------------------

    def record_receipt(self, envelope: Envelope) -> int:
        """Log a runtime's execution receipt after checking it is signed by the permit's cnf key."""
        return record_receipt(self.recorder, self._keys, envelope, self.clock())

    def bundle(self, jti: str) -> dict[str, Any]:
        """The evidence bundle of ``jti``; each permit in it carries the revocations that cover it
        (its renewal chain, lineage ancestors, principal, runtime), so the verifier's receipt rule applies them."""
        return self.recorder.bundle(jti, extra=self._revocations.covering).to_json()

    # -- approvals ---------------------------------------------------------------------------

    def approval(self, approval_id: str) -> dict[str, Any]:
        return self._approvals.get(approval_id)

    def approvals(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest approvals (with ``status``, when given), oldest first: what approvers are asked."""
        return self._approvals.newest(status, limit)

    def decide_approval(self, approval_id: str, envelope: Envelope) -> dict[str, Any]:
        """Accept an approver's signed approval/denial (approval/v1 statement in DSSE)."""
        return self._approvals.decide(approval_id, envelope)

    def expire_approvals(self) -> list[str]:
        """Pending approvals past their timeout become denials (logged)."""
        return self._approvals.expire()

    # -- revocation, single use, enrollment ------------------------------------------------

    def revoke(self, kind: str, target: str, reason: str) -> tuple[int, int]:
        return self._revocations.revoke(kind, target, reason)

    def consume(self, jti: str, runtime_kid: str) -> None:
        """Use a single-use permit once; the runtime proving ``cnf`` calls this before starting."""
        self._revocations.consume(jti, runtime_kid)

    def is_revoked(self, kind: str, target: str) -> bool:
        """Revocations are held in memory and refreshed from storage whenever its epoch moves."""
        return self._revocations.is_revoked(kind, target)

    def is_enrolled(self, kid: str) -> bool:
        """Any active key of this authority's keyring (runtime, approver, witness…)."""
        return self._keys.is_enrolled(kid, self.clock())

    def role_of(self, kid: str) -> str | None:
        """The role of an active key of this authority's keyring, or None."""
        return self._keys.role_of(kid, self.clock())

    def enroll(
        self,
        role: str,
        name: str,
        public_key: bytes,
        groups: tuple[str, ...] = (),
        identity: str | None = None,
        url: str | None = None,
    ) -> KeyRecord:
        """Enrol a public key; an approver's with the approver groups it belongs to and who holds it;
        a witness's with its tlog-witness ``url`` (the log submits to it from the next start)."""
        return self._keys.enroll(role, name, public_key, groups, identity, url=url)

    # -- the signed trust state -----------------------------------------------------------

    def trust_state(self, since: int = 0, epoch: int = 0) -> str:
        """The signed trust state document (JWS, typ fiat-trust-state+jwt)."""
        now = self.clock()
        return sign_trust_state(
            self._keys,
            self.store,
            self.log,
            self._policy.active,
            issuer=self.cfg.authority.issuer,
            now=now,
            since=since,
            epoch=epoch,
        )
