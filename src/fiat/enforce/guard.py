"""The runtime guard: establish trust before an action starts, keep proving it while it runs.

A :class:`Session` governs one execution.

**Establish** (``establish()``), before anything starts — any failure means the
action never runs:

1. measure the environment (Evidence) and ask the authority for a decision, proving the
   runtime key with DPoP; wait for a human approval when policy asks for one;
2. verify the permit locally with the verifier's own permit rules (:mod:`fiat.verify.permit`),
   one named step each: ``permit-signature`` (an authority key of the trust root),
   ``permit-key-validity`` (that key was valid at ``iat`` and is now), ``permit-claims`` (issuer,
   audience, times, cnf), ``runtime-key`` (the cnf key is a runtime key of the trust root),
   then ``permit-window`` (nbf ≤ now < exp), ``permit-cnf`` (bound to this runtime's key),
   ``permit-action`` (its action digest is what is about to run), ``permit-environment``
   (its environment digest is a fresh measurement);
3. consume the permit if it is single use.

**Verify** (``check()``), on every heartbeat and whenever a trust state arrives, without
blocking on the network — each failure is a halt naming its step:

* ``trust-signature``   the latest trust state verified (a bad signature is fatal);
* ``trust-continuity``  no revocation was skipped: a delta state from an epoch this guard has
                        not reached, that no complete state replaced (:mod:`fiat.enforce.trust`);
* ``trust-fresh``       it is not older than the staleness bound;
* ``log-continuity``    every checkpoint seen extends the previous one (no split view; one
                        found in a trust state or by gossip with a witness names the proof
                        file the monitor wrote: :mod:`fiat.enforce.trust`);
* ``witness-quorum``    (with ``runtime.require_witnessed`` only) the proven checkpoint is
                        cosigned by at least the trust root's ``witnesses.quorum`` witnesses
                        (C2SP tlog-cosignature, each key valid at its cosignature's timestamp)
                        whose timestamps are within ``runtime.witness_freshness_ms`` of the
                        session's steady clock (and not ahead of it by more than the clock
                        skew): a log that shows its history to nobody else is not trusted.
                        A trust root with no quorum cannot satisfy it: the guard refuses to
                        start;
* ``revocation``        no permit of the renewal chain (nor the lineage parent), the principal
                        (nor any principal of a delegated permit's chain: ``sub``, each
                        ``act.sub``) nor the runtime is revoked; an entry for a permit a
                        revocation covers (an ancestor's, a predecessor's) names it:
                        ``(covered by the revocation of permit …)``;
* ``permit-expiry``     the permit is unexpired (it is renewed before expiry; a refused
                        renewal halts);
* ``policy-current``    the trust state's policy digest is the permit's (a change forces
                        re-authorization; a refusal halts);
* ``environment``       a fresh measurement still has the permitted digest.

**Prove** (``sign_receipt()``): the runtime signs an execution receipt (cnf key) with a hash
chain over every verification event. ``fiat run`` and ``fiat.governed`` spool it durably
before uploading it (:mod:`fiat.enforce.spool`), so an unreachable authority delays the
receipt but never loses it; ``receipt()`` signs and uploads in one step, unspooled.

**Time** (issue 10): a session reads the wall clock (``clock``) once, when it is made,
and from then on keeps time with a :class:`~fiat.enforce.clock.SteadyClock` — that wall
time advanced by the monotonic clock (``mono``) only. Every check against a signed wall
time uses it: the permit window at establishment and at each renewal (the verifier's rule,
nbf − skew ≤ now < exp), ``permit-expiry`` (now ≥ exp), the renewal timing,
``max-duration`` (now − ``execution_start``, both steady), ``policy-current``'s
re-authorization bound; and so do the times the session writes (verification events,
``execution_start`` and the receipt's ``end`` through :meth:`Session.now`), which keeps
the receipt consistent with the permits the guard accepted. ``trust-fresh`` and
``log-continuity`` run on the monotonic clock alone: a trust state's age is the age it had
when it arrived (by the monitor's own steady clock against its signed time, see
:mod:`fiat.enforce.trust`) plus the monotonic time since. So a wall-clock step in either
direction after the anchor neither extends nor ends an execution. Each check first compares
``wall − monotonic`` with the previous check's; a move beyond
:data:`~fiat.enforce.clock.CLOCK_STEP_THRESHOLD` is recorded as a ``clock-step`` event
(``stepSeconds``, positive forward) in the verification chain and logged as a warning on
``fiat.guard``; it does not halt by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.api.client import AuthorityClient, ClientError
from fiat.authorize.names import entity_uid
from fiat.enforce.clock import SteadyClock
from fiat.enforce.trust import TrustMonitor, TrustSnapshot
from fiat.errors import FiatError, MalformedError, VerificationError
from fiat.establish.measure import Measurer
from fiat.formats.action import encode_action_request
from fiat.formats.dsse import Envelope
from fiat.formats.jcs import canonicalize
from fiat.prove import evidence as ev
from fiat.verify import permit as permit_rules
from fiat.verify.permit import chain_principals
from fiat.verify.trust_root import TrustRoot

log = logging.getLogger("fiat.guard")


class Denied(FiatError):
    """The authority did not allow the action (denied, or approval not granted in time)."""

    def __init__(self, reason: str, decision: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decision = decision or {}


class NotEstablished(FiatError):
    """Trust could not be established before start: the permit failed local verification."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


class Halt(FiatError):
    """Trust can no longer be proven: the action must stop."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


#: The steps of every verification round, in order (``max-duration`` joins them after
#: ``revocation`` when the permit has that constraint: :meth:`Session.checks`).
CHECKS = (
    "trust-signature",
    "trust-continuity",
    "trust-fresh",
    "log-continuity",
    "revocation",
    "permit-expiry",
    "policy-current",
    "environment",
)

#: The environment variable holding the live permit id in a governed process (``fiat run``,
#: ``fiat.governed(isolate=True)``): the ``parent`` a sub-agent names for its own execution.
PERMIT_ENV = "FIAT_PERMIT_ID"


@dataclass(frozen=True)
class GuardSettings:
    heartbeat: float = 0.25
    staleness: float = 3.0
    grace: float = 2.0
    approval_wait: float = 0.0  # how long establish() waits for a human approval
    clock_skew: float = 2.0
    #: ``runtime.require_witnessed``: the ``witness-quorum`` step runs every round.
    require_witnessed: bool = False
    #: ``runtime.witness_freshness_ms`` (seconds): how old the quorum's cosignatures may be.
    witness_freshness: float = 10.0
    #: ``runtime.gossip_interval_ms`` (seconds; 0 none): how often the trust monitor asks the witnesses.
    gossip_interval: float = 5.0


@dataclass
class Runtime:
    kid: str
    key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes_raw()


def verify_permit_locally(
    token: str, root: TrustRoot, runtime_public: bytes, action_digest: str, env_digest: str, now: float, skew: float
) -> dict[str, Any]:
    """The permit rules of :mod:`fiat.verify.permit` (the verifier's own), then the live ones.

    Raises :class:`NotEstablished` naming the failed step.
    """
    try:
        checked = permit_rules.check_for_execution(
            token,
            root,
            runtime_public=runtime_public,
            action_digest=action_digest,
            environment_digest=env_digest,
            now=now,
            skew=skew,
        )
    except VerificationError as exc:
        raise NotEstablished(exc.step, exc.reason) from exc
    return checked.claims


@dataclass
class Session:
    """One governed execution: establish, check, renew, halt, receipt."""

    client: AuthorityClient
    root: TrustRoot
    runtime: Runtime
    monitor: TrustMonitor
    measurer: Measurer
    principal: str
    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    settings: GuardSettings = field(default_factory=GuardSettings)
    clock: Callable[[], float] = time.time  # the wall clock, read once (see "Time" above)
    mono: Callable[[], float] = time.monotonic
    approval_id: str | None = None
    on_status: Callable[[str], None] | None = None
    #: What this execution's sub-agents may be permitted (docs/formats.md, "Delegation").
    scope: list[dict[str, str]] | None = None

    def __post_init__(self) -> None:
        enc = encode_action_request(self.principal, self.action, self.resource, self.context, self.parent)
        self.request, self.action_digest = enc.request, enc.digest
        self.token: str = ""
        self.claims: dict[str, Any] = {}
        self.decision: dict[str, Any] = {}
        self.evidence_start: dict[str, Any] = {}
        self.verifications = 0
        self.chain = hashlib.sha256(b"fiat-verification-chain/v1").hexdigest()
        #: How many events of each kind joined the chain (``verified``, ``clock-step``, …).
        self.event_counts: Counter[str] = Counter()
        self.steady = SteadyClock(self.clock, self.mono)
        self.halted: Halt | None = None
        self.principal_key = entity_uid(self.principal, "principal")
        self._lock = threading.Lock()
        self._renewal: threading.Thread | None = None
        self._renewal_error: str | None = None
        self._reauth_since: float | None = None
        self.permit_since: float = 0.0  # when the current permit began governing (steady time)
        self.receipt_index: int | None = None
        # When the action itself started (fixed across renewals); set from now().
        self.execution_start: float = 0.0
        self.renewed_from: list[str] = []
        #: Which containment held the action (:mod:`fiat.enforce.containment`), for the receipt.
        self.containment: str | None = None

    def now(self) -> float:
        """The session's steady wall time: what every check and every recorded time uses."""
        return self.steady.now()

    # -- establish ------------------------------------------------------------------------
    def _authorize(self, evidence: dict[str, Any], renews: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "context": self.context,
            "parent": self.parent,
            "evidence": evidence,
        }
        if self.approval_id:
            body["approvalId"] = self.approval_id
        if renews:
            body["renews"] = renews
        if self.scope is not None:
            body["scope"] = self.scope
        return self.client.authorize(self.runtime.key, self.runtime.kid, body)

    def establish(self) -> dict[str, Any]:
        self._require_quorum()
        evidence = self.measurer.measure()
        self.evidence_start = evidence
        decision = self._authorize(evidence)
        if decision["decision"] == "pending":
            decision = self._wait_for_approval(decision, evidence)
        self.decision = decision
        if decision["decision"] != "allow":
            # The authority's explanation (``reasons``) says why in terms the caller can act on.
            reasons = [r for r in decision.get("reasons") or [] if isinstance(r, str)]
            raise Denied("; ".join(reasons) or decision.get("reason", "denied"), decision)
        fresh = self.measurer.measure()
        self.claims = verify_permit_locally(
            decision["permit"],
            self.root,
            self.runtime.public_key,
            self.action_digest,
            fresh["digest"],
            self.now(),
            self.settings.clock_skew,
        )
        self.token = decision["permit"]
        if self.claims.get("constraints", {}).get("singleUse"):
            try:
                self.client.consume(self.runtime.key, self.claims["jti"])
            except ClientError as exc:
                raise NotEstablished("permit-single-use", str(exc)) from exc
        self.permit_since = self.now()
        self.gate()
        self._event("established", {"permit": self.claims["jti"]})
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "established %s",
                self.permit_id,
                extra={"guard_event": "established", "permit": self.permit_id, "exp": self.claims["exp"],
                       "heartbeat_ms": round(self.heartbeat * 1000)},
            )  # fmt: skip
        return decision

    def _wait_for_approval(self, decision: dict[str, Any], evidence: dict[str, Any]) -> dict[str, Any]:
        approval_id = decision.get("approvalId")
        deadline = self.now() + self.settings.approval_wait
        if approval_id and self.on_status is not None:
            self.on_status(
                f"approval {approval_id} pending ({decision.get('reason', '')}); "
                f"waiting up to {self.settings.approval_wait:.0f} s for `fiat approve {approval_id}`"
            )
        while approval_id and self.now() < deadline:
            status = self.client.approval(self.runtime.key, approval_id)["status"]
            if status == "approved":
                self.approval_id = approval_id
                return self._authorize(evidence)
            if status in ("denied", "expired", "used"):
                reason = f"approval {approval_id} was {status}"
                return {**decision, "decision": "deny", "reason": reason, "reasons": [reason]}
            time.sleep(0.2)
        return decision

    @property
    def permit_id(self) -> str:
        return str(self.claims.get("jti", ""))

    def lineage_ids(self) -> list[str]:
        """Every permit id whose revocation halts this execution: each permit of its renewal chain
        (``renewed_from``, then the current one) and its lineage parent. The trust state also lists
        each permit a revocation covers (docs/formats.md, "Renewal and revocation"), so ancestors
        further up reach the guard as its own ids; checking the chain here holds even for a
        successor the authority minted while the revocation was being recorded."""
        with self._lock:
            ids = [*self.renewed_from, self.permit_id]
        if self.parent is not None:
            ids.append(self.parent)
        return ids

    def principal_keys(self) -> list[str]:
        """Every principal whose revocation halts this execution, in its one spelling: its own and,
        on a delegated permit, each of its chain (``sub`` and every ``act.sub``, RFC 8693 §4.1)."""
        keys = [self.principal_key]
        for who in chain_principals(self.claims) if self.claims else ():
            with contextlib.suppress(MalformedError):
                key = entity_uid(who, "principal")
                if key not in keys:
                    keys.append(key)
        return keys

    @property
    def permit_digest(self) -> str:
        return hashlib.sha256(self.token.encode("ascii")).hexdigest()

    @property
    def heartbeat(self) -> float:
        ms = self.claims.get("constraints", {}).get("heartbeatIntervalMs")
        return ms / 1000 if isinstance(ms, int) and ms > 0 else self.settings.heartbeat

    # -- verify ---------------------------------------------------------------------------------
    def _event(self, kind: str, data: dict[str, Any]) -> None:
        self.verifications += 1
        self.event_counts[kind] += 1
        event = {"n": self.verifications, "time": round(self.now(), 3), "kind": kind, **data}
        self.chain = hashlib.sha256(bytes.fromhex(self.chain) + canonicalize(event)).hexdigest()

    def check(self) -> None:
        """One verification round; raises :class:`Halt` naming the failed step.

        At DEBUG level on ``fiat.guard`` each round is one structured record (``guard_event``
        ``verified`` with the ``checks`` that held, or ``halt`` with its ``step`` and ``reason``),
        which is what the demo page watches (:mod:`fiat.demo_runs`); below DEBUG it costs one
        level test.
        """
        if self.halted is not None:
            raise self.halted
        self._note_clock_step()
        try:
            self._check()
        except Halt as halt:
            self.halted = halt
            self._event("halt", {"step": halt.step, "reason": halt.reason})
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "halt at %s: %s",
                    halt.step,
                    halt.reason,
                    extra={"guard_event": "halt", "permit": self.permit_id, "n": self.verifications, "step": halt.step,
                           "reason": halt.reason},
                )  # fmt: skip
            raise
        self._event("verified", {"permit": self.permit_id})
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "verified",
                extra={"guard_event": "verified", "permit": self.permit_id, "n": self.verifications,
                       "checks": ",".join(self.checks())},
            )  # fmt: skip

    def checks(self) -> tuple[str, ...]:
        """The steps one :meth:`check` round runs, in order (the names a halt records)."""
        steps = (*CHECKS[:4], "witness-quorum", *CHECKS[4:]) if self.settings.require_witnessed else CHECKS
        if isinstance(self.claims.get("constraints", {}).get("maxDuration"), int):
            at = steps.index("revocation") + 1
            return (*steps[:at], "max-duration", *steps[at:])
        return steps

    def _note_clock_step(self) -> None:
        """A wall-clock step since the previous check joins the chain (it changes no check)."""
        step = self.steady.step()
        if step is not None:
            log.warning(
                "the wall clock stepped %+.1f s during permit %s; the guard keeps time on the monotonic clock",
                step,
                self.permit_id,
            )
            self._event("clock-step", {"stepSeconds": round(step, 3)})

    def stop(self, halt: Halt) -> None:
        """Halt for a reason found outside a check (e.g. a signal to the guard); it joins the chain."""
        if self.halted is None:
            self.halted = halt
            self._event("halt", {"step": halt.step, "reason": halt.reason})

    def _trust_checks(self) -> TrustSnapshot:
        """The trust-state steps, shared by the start gate and every heartbeat; returns the snapshot.

        Both bounds run on the monotonic clock (``received`` and ``unproven_since`` are
        monotonic readings of the monitor, the same clock as ``mono``)."""
        snap = self.monitor.snapshot()
        mono = self.mono()
        if snap.crypto_failure:
            raise Halt("trust-signature", f"cryptographic verification failed: {snap.crypto_failure}")
        if snap.continuity_failure:  # a gap in the revocations: one may be hidden (fiat.enforce.trust)
            raise Halt("trust-continuity", f"revocations may be missing: {snap.continuity_failure}")
        # Age by the older of the signed time and the local receipt time (``age_at_receipt`` is
        # never negative): a state dated in the future (a fast authority clock, a forgery) cannot
        # stretch freshness; then the monotonic time since it arrived.
        # An authority that said it is shutting down (unsigned: it only explains a halt).
        leaving = f"; {snap.going_away}" if snap.going_away else ""
        if snap.state_time is None or snap.received is None:
            raise Halt("trust-fresh", f"trust is unverifiable: no trust state yet{leaving}")
        age = (mono - snap.received) + snap.age_at_receipt
        if age > self.settings.staleness:
            raise Halt(
                "trust-fresh",
                f"trust is unverifiable: the last trust state is {age:.1f} s old "
                f"(bound {self.settings.staleness:.1f} s){leaving}",
            )
        if snap.split_view:
            proof = ""
            if snap.split_view_file is not None:
                proof = (
                    f"; the split-view proof is {snap.split_view_file} "
                    f"(`fiat verify {snap.split_view_file} --trust-root trust-root.json` checks it offline)"
                )
            raise Halt("log-continuity", f"governance continuity failed: {snap.split_view}{proof}")
        if snap.unproven_since is not None and mono - snap.unproven_since > self.settings.staleness:
            raise Halt(
                "log-continuity",
                f"the log's newest checkpoint has not been proven consistent for {mono - snap.unproven_since:.1f} s",
            )
        if self.settings.require_witnessed:
            self._witness_quorum(snap)
        for kind, target in (
            *(("permit", jti) for jti in self.lineage_ids()),
            *(("principal", key) for key in self.principal_keys()),
            ("runtime", self.runtime.kid),
        ):
            r = snap.revocations.get((kind, target))
            if r is not None:
                # A covered permit names the revocation that covers it (an ancestor's, a predecessor's).
                by = f" (covered by the revocation of permit {r.covered_by})" if r.covered_by else ""
                raise Halt("revocation", f"the {kind} {target} was revoked{by}: {r.reason}")
        return snap

    def _require_quorum(self) -> None:
        """``runtime.require_witnessed`` with a trust root that sets no quorum can never hold: refuse."""
        if self.settings.require_witnessed and self.root.witness_quorum < 1:
            witnesses = len(self.root.by_role("witness"))
            raise NotEstablished(
                "witness-quorum",
                f"runtime.require_witnessed is on, but the trust root sets no witness quorum (witnesses.quorum is 0; "
                f"it lists {witnesses} witness key(s)): no checkpoint could ever be accepted. Set log.witness_quorum "
                "on the authority and use its trust root (`fiat trust-root export`), or turn runtime.require_witnessed "
                "off",
            )

    def _witness_quorum(self, snap: TrustSnapshot) -> None:
        """``witness-quorum``: enough fresh, valid cosignatures on the proven checkpoint (see above)."""
        self._require_quorum_halt()
        quorum = self.root.witness_quorum
        names = sorted({k.name for k in self.root.by_role("witness")})
        cp, seen = snap.checkpoint, snap.witnessed
        if cp is None or seen is None:
            raise Halt("witness-quorum", "no checkpoint of the log yet, so nothing witnessed")
        now, bound = self.now(), self.settings.witness_freshness
        fresh, missing = [], []
        for name in names:
            ts = seen.cosigned.get(name)
            if ts is None:
                missing.append(f"{name} ({seen.refused.get(name, 'no valid cosignature')})")
            elif now - ts > bound:
                missing.append(f"{name} (newest cosignature {now - ts:.1f} s old)")
            elif ts - now > self.settings.clock_skew:
                missing.append(f"{name} (cosignature dated {ts - now:.1f} s in the future)")
            else:
                fresh.append(name)
        if len(fresh) >= quorum:
            return
        unknown = (
            f"; {seen.unknown} signature line(s) by keys the trust root does not list were ignored"
            if seen.unknown
            else ""
        )
        raise Halt(
            "witness-quorum",
            f"the log's checkpoint {cp.size} is cosigned by {len(fresh)} of the {quorum} witnesses the trust root "
            f"requires within {bound:.1f} s ({', '.join(fresh) or 'none'}); missing: {'; '.join(missing) or 'none'}"
            f"{unknown}",
        )

    def _require_quorum_halt(self) -> None:
        try:
            self._require_quorum()
        except NotEstablished as exc:
            raise Halt(exc.step, exc.reason) from None

    def gate(self) -> None:
        """The last check before the action starts: trust must hold now, or it never starts."""
        try:
            self._trust_checks()
        except Halt as halt:
            raise NotEstablished(halt.step, halt.reason) from None

    def _check(self) -> None:
        now = self.now()
        snap = self._trust_checks()
        max_duration = self.claims.get("constraints", {}).get("maxDuration")
        if isinstance(max_duration, int) and self.execution_start and now - self.execution_start > max_duration:
            raise Halt("max-duration", f"the action ran past its maximum duration of {max_duration} s")
        if self._renewal_error:
            raise Halt("permit-expiry", f"renewal refused: {self._renewal_error}")
        exp = float(self.claims["exp"])
        if now >= exp:
            raise Halt("permit-expiry", "the permit expired and was not renewed")
        policy = self.claims.get("policy", {}).get("digest", {}).get("sha256")
        if snap.policy_digest is not None and snap.policy_digest != policy:
            self._reauth_since = self._reauth_since or now
            if now - self._reauth_since > self.settings.staleness:
                raise Halt("policy-current", "the policy changed and re-authorization did not complete in time")
            self._renew_async()
        else:
            self._reauth_since = None
            ttl = exp - float(self.claims["iat"])
            if exp - now < max(1.0, ttl / 3):
                self._renew_async()
        current = self.measurer.measure()["digest"]
        if current != self.claims["environment"]["digest"]["sha256"]:
            raise Halt("environment", "runtime integrity degraded: the measured environment changed")

    def _renew_async(self) -> None:
        with self._lock:
            if self._renewal is not None and self._renewal.is_alive():
                return
            self._renewal = threading.Thread(target=self._renew, name="fiat-renewal", daemon=True)
            self._renewal.start()

    def _renew(self) -> None:
        try:
            evidence = self.measurer.measure()
            decision = self._authorize(evidence, renews=self.permit_id)
            if decision["decision"] != "allow":
                self._renewal_error = decision.get("reason", "denied")
                return
            claims = verify_permit_locally(
                decision["permit"],
                self.root,
                self.runtime.public_key,
                self.action_digest,
                evidence["digest"],
                self.now(),
                self.settings.clock_skew,
            )
            with self._lock:
                self.renewed_from.append(self.permit_id)
                self.token, self.claims = decision["permit"], claims
                self.permit_since = max(self.now(), float(claims["nbf"]))
            self._reauth_since = None
            self._event("renewed", {"permit": claims["jti"]})
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "renewed: %s succeeds %s",
                    claims["jti"],
                    self.renewed_from[-1],
                    extra={"guard_event": "renewed", "permit": claims["jti"], "renews": self.renewed_from[-1],
                           "exp": claims["exp"]},
                )  # fmt: skip
        except NotEstablished as exc:
            self._renewal_error = str(exc)
        except ClientError as exc:
            if exc.status in (403, 409):  # refused (revoked chain, already renewed, ...): retrying cannot help
                self._renewal_error = str(exc)
                return
            log.warning("renewal failed, will retry: %s", exc)  # trust-fresh bounds how long this may last

    # -- prove ------------------------------------------------------------------------------------
    def sign_receipt(
        self,
        start: float,
        end: float,
        outcome: str,
        exit_code: int | None,
        outputs: list[tuple[str, str]] | None = None,
        *,
        arguments_digest: str | None = None,
        result_digest: str | None = None,
    ) -> Envelope:
        """Sign the execution receipt with the runtime (cnf) key (nothing is sent). A tool call
        (:mod:`fiat.mcp`) records the digests of its arguments and of its result."""
        end_measurement = self.measurer.measure()
        statement = ev.receipt_statement(
            permit_id=self.permit_id,
            permit_digest=self.permit_digest,
            start=max(start, self.permit_since),
            execution_start=start,
            renewed_from=self.renewed_from,
            end=end,
            outcome=outcome,
            exit_code=exit_code,
            halt_reason=None if self.halted is None else f"{self.halted.step}: {self.halted.reason}",
            verifications=self.verifications,
            verification_chain=self.chain,
            measurement_start={"digest": {"sha256": self.claims["environment"]["digest"]["sha256"]}},
            measurement_end={"digest": {"sha256": end_measurement["digest"]}},
            outputs=outputs or [],
            containment=self.containment,
            heartbeat_ms=round(self.heartbeat * 1000),
            arguments_digest=arguments_digest,
            result_digest=result_digest,
        )
        return ev.sign_statement(statement, [(self.runtime.kid, self.runtime.key)])

    def receipt(
        self,
        start: float,
        end: float,
        outcome: str,
        exit_code: int | None,
        outputs: list[tuple[str, str]] | None = None,
    ) -> int:
        """Sign the execution receipt and log it directly (no spool); returns its log index."""
        envelope = self.sign_receipt(start, end, outcome, exit_code, outputs)
        return int(self.client.receipt(envelope.to_json())["logIndex"])

    def bundle(self, jti: str | None = None) -> dict[str, Any]:
        """The evidence bundle of ``jti`` (default: the current permit) from the authority."""
        return self.client.bundle(self.runtime.key, jti or self.permit_id)
