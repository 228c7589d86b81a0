"""The offline verifier of an execution's evidence bundle.

A relying party (an auditor, a regulator, a customer) verifies a bundle with
nothing but the bundle and a trust root: no network, no operator. The
verifier is a walk through these steps, in order; each is one method, each
failure names its step, and the steps after a failure are reported skipped.

1. ``permit-signature``     the permit is a compact JWS (``typ`` fiat-permit+jwt, ``alg``
                            EdDSA or Ed25519) signed by an authority key of the trust root
                            (RFC 7515 §5.2, RFC 8037 §3.1, RFC 9864).
2. ``permit-key-validity``  that key was valid at the permit's ``iat`` (the receipt step also
                            checks it at the receipt's ``start``, less the clock skew: when the
                            guard used the permit; :mod:`fiat.verify.permit`, rule 2).
3. ``permit-claims``        ``iss``/``aud`` match the trust root; ``iat nbf exp jti sub cnf``
                            present and coherent (RFC 7519 §4.1, RFC 7800 §3.2); Fiat claims well-formed
                            (``scope``, ``act`` RFC 8693 §4.1, ``delegation`` when present).
4. ``action-binding``       SHA-256 over the RFC 8785 form of the bundle's action request
                            equals the permit's action digest; principal (the permit's: ``act.sub``
                            on a delegated permit, else ``sub``), action, resource, parent agree.
5. ``runtime-key``          the ``cnf`` key is a runtime key of the trust root, valid at ``iat``.
6. ``statement-signatures`` every DSSE envelope is signed by a key of the role its predicate
                            type requires, valid at the statement's time (the receipt: by ``cnf``).
7. ``statement-digests``    every statement's subject digests are recomputed and match.
8. ``decision``             an ``allow`` decision for this permit (jti and digest) is present.
9. ``approvals``            each approval the permit names is present, signed, and approves this action,
                            by an approver of the group the decision names who is not the principal
                            (:mod:`fiat.verify.approvers`).
10. ``receipt``             the receipt is for this permit and started inside its validity window
                            (its detail says which containment held the action, or "not recorded"),
                            and claims nothing the rest of the bundle contradicts (docs/formats.md,
                            "What a receipt may claim"): no revocation in the bundle precedes the
                            execution, nor a completed or failed one's end by more than the halt
                            bound; such a run ends within the permit chain's validity; and its
                            verification count fits its duration and heartbeat.
11. ``environment-binding`` the receipt's start measurement equals the permit's environment digest.
12. ``log-inclusion``       the permit and every statement are in the log: each tlog-proof's
                            checkpoint is signed by the trust root's log key for its origin, and
                            its inclusion path binds the exact signed bytes (C2SP tlog-proof).
13. ``checkpoint-consistency`` all checkpoints in the bundle lie on one append-only history
                            (RFC 9162 §2.1.4); two roots for one size is a split view.
14. ``witness-quorum``      the assurance level reached (:class:`Assurance`): on each checkpoint, the
                            witnesses of the trust root whose cosignature verifies (C2SP
                            tlog-cosignature, Ed25519), by a key of theirs valid at its timestamp, a
                            timestamp no later than now plus the clock skew (tlog-cosignature: "verifiers
                            MAY reject cosignatures with timestamps in the future"), each witness counted
                            once; the least over the bundle's checkpoints is "witnessed by k of n", none
                            "signed by the log". When the trust root sets a quorum, every checkpoint
                            needs that many.
15. ``lineage``             at most ``maxLineageDepth`` (trust root) ancestors; each verifies, once
                            (all steps but this one: the chain is this step's walk), and the parent
                            links form an unbroken chain without a loop; every link attenuates its
                            parent (:meth:`_Run._links`, docs/formats.md, "Delegation"): the child
                            was issued while the parent was valid — the permit of the parent's
                            renewal chain it names (``delegation.parentHead``), reached from the
                            parent through the renewals the ancestor carries, each held to the
                            renewal rules (signed, logged, same action digest and ``cnf``) — and
                            not revoked, expires no later than that head, stays within the
                            parent's ``scope``, and its ``act`` chain (RFC 8693 §4.1) is its
                            principal, then its parent's chain: ``sub`` the root's principal.
                            Linear in the bundle's size.

No I/O: the caller parses files; this module only decides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fiat.errors import MalformedError, VerificationError
from fiat.formats import jws
from fiat.formats.action import entity_uid, scope_pairs
from fiat.formats.encoding import json_digest, parse_time
from fiat.formats.statement import (
    APPROVAL,
    DECISION,
    PREDICATE_TYPES,
    RECEIPT,
    REVOCATION,
    SIGNER_ROLE,
)
from fiat.tlog import cosignature, merkle, note
from fiat.tlog.checkpoint import SignedCheckpoint, open_with_any
from fiat.tlog.proof_file import TlogProof, check_inclusion
from fiat.verify import permit as permit_rules
from fiat.verify import split_view
from fiat.verify.approvers import check_approvers
from fiat.verify.bundle import Bundle, BundleStatement
from fiat.verify.permit import act_chain, chain_principals, digest_of, permit_principal
from fiat.verify.trust_root import TrustedKey, TrustRoot

STEPS = (
    "permit-signature",
    "permit-key-validity",
    "permit-claims",
    "action-binding",
    "runtime-key",
    "statement-signatures",
    "statement-digests",
    "decision",
    "approvals",
    "receipt",
    "environment-binding",
    "log-inclusion",
    "checkpoint-consistency",
    "witness-quorum",
    "lineage",
)
#: An ancestor is verified by every step but ``lineage``: its link to its own parent is part
#: of the descendant's walk, so each ancestor is verified exactly once (linear in the depth).
ANCESTOR_STEPS = STEPS[:-1]

OUTCOMES = ("completed", "failed", "halted")
#: The longest heartbeat a guard accepts (``runtime.heartbeat_ms``, ``@heartbeat_ms``: 10..60000 ms):
#: assumed for a receipt that records none and a permit that asks for none.
MAX_GUARD_HEARTBEAT_MS = 60_000
#: A check measures the environment and may wait for the GIL, so however short the heartbeat,
#: the verifier counts on no more than one check per second.
MIN_CHECK_INTERVAL = 1.0
#: The verification-count rule allows each check to take this many heartbeats (a loaded machine,
#: a slow measurement) ...
HEARTBEAT_SLACK = 4
#: ... and this many checks fewer (the partial first and last intervals; times are whole seconds).
HEARTBEAT_MARGIN = 2


@dataclass(frozen=True)
class VerificationPolicy:
    """What the relying party requires beyond the trust root."""

    require_receipt: bool = True
    #: Tolerated disagreement (seconds) between clocks of authority and runtime.
    clock_skew: float = 5.0
    #: The staleness bound (seconds) the verifier assumes of the guard: the default
    #: ``runtime.staleness_ms``. A guard holds only trust states younger than this, and every state
    #: signed after a revocation lists it, so a guard still running ``staleness + clock_skew`` after
    #: a revocation did not honour it (docs/formats.md, "What a receipt may claim").
    staleness: float = 3.0
    #: The verifier's time (POSIX seconds) for rejecting cosignatures dated in the future; None: the clock.
    now: float | None = None

    @property
    def halt_bound(self) -> float:
        """How long after a revocation (authority clock) a guard may still run: ``staleness + clock_skew``."""
        return self.staleness + self.clock_skew


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str  # "pass", "fail" or "skip"
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"step": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Assurance:
    """What stands behind the bundle's checkpoints beyond the log's own signature (docs/formats.md,
    "Witnesses and assurance"): ``witnessed`` is the least, over the bundle's checkpoints (its
    ancestors' included), number of the trust root's witnesses that validly cosigned it; a witness is
    its name (a rotated witness keeps its name), so ``witnesses`` counts the distinct names."""

    witnessed: int
    witnesses: int
    quorum: int

    @property
    def level(self) -> str:
        return "witnessed" if self.witnessed > 0 else "log"

    @property
    def text(self) -> str:
        if self.witnessed == 0:
            return "signed by the log"
        return f"witnessed by {self.witnessed} of {self.witnesses}"

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "witnessed": self.witnessed,
            "witnesses": self.witnesses,
            "quorum": self.quorum,
            "text": self.text,
        }


@dataclass
class VerificationResult:
    steps: list[StepResult] = field(default_factory=list)
    permit_id: str | None = None
    #: The containment the receipt records (``namespace``, ``process``, ``none``); None: not recorded.
    containment: str | None = None
    #: What the receipt says became of the execution (``completed``, ``failed``, ``halted``); None: no receipt.
    outcome: str | None = None
    exit_code: int | None = None
    #: For a halted execution: ``<step>: <reason>``, as the guard recorded it.
    halt_reason: str | None = None
    #: The assurance level reached (step ``witness-quorum``); None when that step did not run.
    assurance: Assurance | None = None

    @property
    def verified(self) -> bool:
        return bool(self.steps) and all(s.status == "pass" for s in self.steps)

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == "fail"), None)

    def to_json(self) -> dict[str, Any]:
        failed = self.failed
        return {
            "verified": self.verified,
            "permit": self.permit_id,
            "failedStep": failed.name if failed else None,
            "containment": self.containment,
            "outcome": self.outcome,
            "exitCode": self.exit_code,
            "haltReason": self.halt_reason,
            "assurance": None if self.assurance is None else self.assurance.to_json(),
            "steps": [s.to_json() for s in self.steps],
        }


def _time(pred: dict[str, Any], name: str, step: str) -> float:
    try:
        return parse_time(pred.get(name), f"{name} time")
    except MalformedError as exc:
        raise VerificationError(step, exc.reason) from exc


class _Run:
    """The facts established so far for one bundle."""

    def __init__(self, bundle: Bundle, root: TrustRoot, policy: VerificationPolicy) -> None:
        self.bundle = bundle
        self.root = root
        self.policy = policy
        self.claims = bundle.permit.claims
        self.authority: TrustedKey | None = None
        self.cnf_key: bytes = b""
        self.containment: str | None = None  # what the receipt says held the action
        self.outcome: tuple[str, int | None, str | None] | None = None  # outcome, exit code, halt reason
        self.cnf_kid: str = ""
        self.action_digest: str = ""
        self.checkpoints: dict[int, set[bytes]] = {}
        self.checkpoint_notes: list[bytes] = []
        self.assurance: Assurance | None = None

    # 1-3: the shared permit rules (fiat.verify.permit)
    def permit_signature(self) -> str:
        self.authority = permit_rules.check_signature(self.bundle.permit, self.root)
        return f"signed by authority key {self.authority.kid} ({self.bundle.permit.header.get('alg')})"

    def permit_key_validity(self) -> str:
        assert self.authority is not None
        permit_rules.check_key_validity(self.authority, self.claims)
        return f"key valid {self.authority.period()}"

    def permit_claims(self) -> str:
        self.cnf_key, self.action_digest, _ = permit_rules.check_claims(self.claims, self.root)
        self.cnf_kid = jws.jwk_thumbprint(self.cnf_key)
        c = self.claims
        on_behalf = f" on behalf of {c['sub']}" if "act" in c else ""
        return f"jti {c['jti']}, principal {permit_principal(c)}{on_behalf}, valid {c['nbf']}..{c['exp']}"

    # 4
    def action_binding(self) -> str:
        req = self.bundle.action_request
        step = "action-binding"
        try:
            digest = json_digest(req)
        except MalformedError as exc:
            raise VerificationError(step, f"the action request cannot be canonicalized: {exc.reason}") from exc
        if digest != self.action_digest:
            raise VerificationError(step, "the permit's action digest is not the digest of this action request")
        c = self.claims
        for claim, value, field_ in (
            ("principal (act.sub, else sub)", permit_principal(c), "principal"),
            ("action.name", c["action"].get("name"), "action"),
            ("action.resource", c["action"].get("resource"), "resource"),
            ("parent", c.get("parent"), "parent"),
        ):
            if value != req.get(field_):
                raise VerificationError(step, f"permit {claim} {value!r} differs from the request's {field_}")
        return f"action digest {digest[:16]}… matches"

    # 5
    def runtime_key(self) -> str:
        key = permit_rules.check_runtime_key(self.cnf_key, self.claims, self.root)
        return f"runtime {key.name} ({key.kid})"

    def _statement_time(self, s: BundleStatement) -> float:
        return _time(
            s.statement.predicate, "end" if s.statement.predicate_type == RECEIPT else "time", "statement-signatures"
        )

    # 6
    def statement_signatures(self) -> str:
        step = "statement-signatures"
        for i, s in enumerate(self.bundle.statements):
            ptype = s.statement.predicate_type
            if ptype not in PREDICATE_TYPES:
                raise VerificationError(step, f"statement {i} has an unknown predicate type {ptype!r}")
            t = self._statement_time(s)
            if ptype == RECEIPT:
                by_cnf = [sig for sig in s.envelope.signatures if sig.keyid == self.cnf_kid]
                if not any(s.envelope.verify_signature(sig, self.cnf_key) for sig in by_cnf):
                    raise VerificationError(step, f"the receipt (statement {i}) is not signed by the permit's cnf key")
                continue
            role = SIGNER_ROLE[ptype]
            ok = False
            for sig in s.envelope.signatures:
                key = self.root.find(sig.keyid, role)
                if key is None:
                    continue
                if not s.envelope.verify_signature(sig, key.public_key):
                    continue  # DSSE: only valid signatures by trusted keys count; others are ignored
                if not key.valid_at(t):
                    raise VerificationError(
                        step,
                        f"statement {i}: {role} key {key.kid} was not valid at {s.statement.predicate.get('time')}",
                    )
                ok = True
            if not ok:
                raise VerificationError(step, f"statement {i} ({ptype}) carries no signature by a trusted {role} key")
        return f"{len(self.bundle.statements)} statements"

    # 7
    def statement_digests(self) -> str:
        step = "statement-digests"
        permit_digest = self.bundle.permit.digest
        for i, s in enumerate(self.bundle.statements):
            ptype = s.statement.predicate_type
            if ptype in (DECISION, APPROVAL) and s.statement.subject("action-request") != self.action_digest:
                raise VerificationError(step, f"statement {i}: its action-request subject is not this action")
            if ptype == RECEIPT and s.statement.subject("permit") != permit_digest:
                raise VerificationError(step, f"statement {i}: the receipt's permit subject is not this permit")
        return "subjects match"

    def _of(self, ptype: str) -> list[BundleStatement]:
        return [s for s in self.bundle.statements if s.statement.predicate_type == ptype]

    # 8
    def decision(self) -> str:
        jti, digest = self.claims["jti"], self.bundle.permit.digest
        for s in self._of(DECISION):
            p = s.statement.predicate
            permit = p.get("permit")
            if not isinstance(permit, dict):
                continue
            if p.get("decision") == "allow" and permit.get("jti") == jti and permit.get("digest") == {"sha256": digest}:
                return f"allowed at {p.get('time')}: {p.get('reason', '')}".strip()
        raise VerificationError("decision", "no signed allow decision for this permit is in the bundle")

    # 9
    def approvals(self) -> str:
        wanted = list(self.claims.get("approvals", []))
        if not wanted:
            return "none required"
        have = {hashlib.sha256(s.entry).hexdigest(): s for s in self._of(APPROVAL)}
        for d in wanted:
            s = have.get(d)
            if s is None:
                raise VerificationError("approvals", f"approval {d[:16]}… named by the permit is not in the bundle")
            if s.statement.predicate.get("decision") != "approve":
                raise VerificationError("approvals", f"approval {d[:16]}… does not approve")
        check_approvers(self.bundle, self.root, [have[d] for d in wanted])  # group and principal rules
        return f"{len(wanted)} approval(s)"

    # 10
    def receipt(self) -> str:
        step = "receipt"
        receipts = self._of(RECEIPT)
        if not receipts:
            if self.policy.require_receipt:
                raise VerificationError(step, "no execution receipt is in the bundle")
            return "not required"
        if len(receipts) > 1:
            raise VerificationError(step, "more than one receipt for one permit")
        p = receipts[0].statement.predicate
        permit = p.get("permit")
        if (
            not isinstance(permit, dict)
            or permit.get("jti") != self.claims["jti"]
            or permit.get("digest") != {"sha256": self.bundle.permit.digest}
        ):
            raise VerificationError(step, "the receipt names another permit")
        start, end = _time(p, "start", step), _time(p, "end", step)
        skew = self.policy.clock_skew
        if not self.claims["nbf"] - skew <= start <= self.claims["exp"] + skew:
            raise VerificationError(step, "the execution started outside the permit's validity window")
        if end < start:
            raise VerificationError(step, "the receipt ends before it starts")
        assert self.authority is not None
        # permit-key-validity at use: the guard began acting on the permit at ``start``.
        permit_rules.check_key_validity(self.authority, self.claims, used_at=start - skew)
        max_duration = self.claims.get("constraints", {}).get("maxDuration")
        began = _time(p, "executionStart", step) if "executionStart" in p else start
        if isinstance(max_duration, int) and end - began > max_duration + skew:
            raise VerificationError(step, f"the execution ran {end - began:.0f} s, beyond maxDuration {max_duration} s")
        containment = p.get("containment")
        if containment is not None and not isinstance(containment, str):
            raise VerificationError(step, "the receipt's containment is not a string")
        outcome, exit_code, halt_reason = self._outcome(p)
        self._tool_call_digests(p)
        self._not_revoked(p, began, end, outcome)
        if outcome != "halted":
            self._within_validity(p, end, outcome)
            self._verification_count(p, end - began)
        self.containment = containment
        self.outcome = (outcome, exit_code, halt_reason)
        said = f"halted at {halt_reason}" if outcome == "halted" else f"{outcome} (exit {exit_code})"
        return f"{said}; containment: {containment or 'not recorded'}"

    def _tool_call_digests(self, p: dict[str, Any]) -> None:
        """Rule ``receipt: tool-call digests`` (docs/formats.md, "What a receipt may claim"): a receipt
        of a governed tool call (docs/mcp.md) names the digest of the arguments it forwarded, which
        must be the digest of the permitted request's context (the arguments object, RFC 8785);
        its ``resultDigest``, when present, is a SHA-256 digest."""
        step = "receipt"
        if "argumentsDigest" in p:
            got = digest_of(p["argumentsDigest"], "receipt argumentsDigest", step)
            try:
                want = json_digest(self.bundle.action_request.get("context"))
            except MalformedError as exc:
                raise VerificationError(step, f"the request's context cannot be canonicalized: {exc.reason}") from exc
            if got != want:
                raise VerificationError(
                    step, "the receipt's argumentsDigest is not the digest of the permitted request's arguments"
                )
        if "resultDigest" in p:
            digest_of(p["resultDigest"], "receipt resultDigest", step)

    @staticmethod
    def _outcome(p: dict[str, Any]) -> tuple[str, int | None, str | None]:
        """Rule ``receipt: outcome`` (docs/formats.md, "What a receipt may claim"): the outcome is one
        of three; a completed execution exited 0; a halted one names its halt (``<step>: <reason>``)."""
        step = "receipt"
        outcome, exit_code, halt_reason = p.get("outcome"), p.get("exitCode"), p.get("haltReason")
        if outcome not in OUTCOMES:
            raise VerificationError(step, f"the receipt's outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
            raise VerificationError(step, "the receipt's exitCode is not an integer or null")
        if halt_reason is not None and not isinstance(halt_reason, str):
            raise VerificationError(step, "the receipt's haltReason is not a string or null")
        if outcome == "completed" and exit_code != 0:
            raise VerificationError(step, f"the receipt says completed with exit code {exit_code!r}, not 0")
        if outcome == "halted" and not halt_reason:
            raise VerificationError(step, "the receipt says halted but names no halt (haltReason)")
        return str(outcome), exit_code, halt_reason

    def _not_revoked(self, p: dict[str, Any], began: float, end: float, outcome: str) -> None:
        """Rules ``receipt: revoked before the start`` and ``receipt: ran on after a revocation``.

        A revocation in the bundle (authority-signed: step 6) of this permit, of a permit it renewed
        (``renewedFrom``, the ``renews`` claim), of a lineage ancestor, of any other permit (the
        authority carries only covering ones: a renewal chain longer than ``renewedFrom`` admits
        included), of its principal (in its Cedar spelling) or of its runtime (the cnf key's kid),
        dated more than the halt bound before
        the execution started, means a revoked permit ran; dated more than the halt bound before a
        completed or failed execution's end, it means the guard did not halt (its final check would
        have held a trust state listing it).
        """
        step = "receipt"
        renewed = p.get("renewedFrom", [])
        if not isinstance(renewed, list) or not all(isinstance(r, str) for r in renewed):
            raise VerificationError(step, "the receipt's renewedFrom is not a list of permit ids")
        jti = self.claims["jti"]
        # A permit revocation covers the whole renewal chain and every lineage descendant
        # (docs/formats.md, "Renewal and revocation"): the permits this one renewed and its
        # ancestors (and what they renewed, as far as the bundle says) are as live as itself.
        targets: dict[tuple[str, str], str] = {("permit", r): f"the permit it renewed, {r}," for r in renewed}
        renews = self.claims.get("renews")
        if isinstance(renews, str):
            targets.setdefault(("permit", renews), f"the permit it renewed, {renews},")
        for anc in self.bundle.ancestors:
            for a in (anc.permit.claims.get("jti"), anc.permit.claims.get("renews")):
                if isinstance(a, str):
                    targets.setdefault(("permit", a), f"its lineage ancestor {a}")
        targets[("permit", jti)] = f"the permit {jti}"
        targets[("runtime", self.cnf_kid)] = f"its runtime {self.cnf_kid}"
        # Every principal of the delegation chain (sub and each act.sub): revoking one halts all
        # who act for it. A name that is no entity name cannot be named by a revocation either.
        for who in reversed(chain_principals(self.claims)):
            with contextlib.suppress(MalformedError):
                label = "its principal" if who == permit_principal(self.claims) else "its delegation chain's principal"
                targets[("principal", entity_uid(who, "principal"))] = f"{label} {who}"
        bound = self.policy.halt_bound
        for s in self._of(REVOCATION):
            r = s.statement.predicate
            kind, target = r.get("kind"), r.get("target")
            what = targets.get((kind, target)) if isinstance(kind, str) and isinstance(target, str) else None
            if what is None and kind == "permit" and isinstance(target, str):
                # The authority puts into a permit's bundle only the permit revocations that cover it
                # (its renewal chain and lineage, however long): the receipt's own ``renewedFrom``,
                # signed by the runtime, cannot narrow which of them apply. Any permit revocation the
                # bundle carries therefore counts; one that covers nothing only makes a bundle fail.
                what = f"the permit {target} (carried in the bundle as covering this execution)"
            if what is None:
                continue
            at = _time(r, "time", step)
            if at + bound < began:
                raise VerificationError(
                    step,
                    f"{what} was revoked at {r.get('time')}, before the execution started at "
                    f"{p.get('executionStart', p.get('start'))}: a revoked permit never runs",
                )
            if outcome != "halted" and at + bound < end:
                raise VerificationError(
                    step,
                    f"{what} was revoked at {r.get('time')}, yet the execution {outcome} at {p.get('end')} "
                    f"without halting (a guard halts within {bound:.0f} s of a revocation: staleness "
                    f"{self.policy.staleness:.0f} s + clock skew {self.policy.clock_skew:.0f} s)",
                )

    def _within_validity(self, p: dict[str, Any], end: float, outcome: str) -> None:
        """Rule ``receipt: ended after the permit expired``: a guard's every check, the final one at the
        end included, halts at ``exp``; the bundle's permit is the chain's last, so its ``exp`` is the latest."""
        exp, skew = self.claims["exp"], self.policy.clock_skew
        if end > exp + skew:
            raise VerificationError(
                "receipt",
                f"the execution {outcome} at {p.get('end')}, {end - exp:.0f} s after the permit chain expired "
                f"(exp {exp}; clock skew {skew:.0f} s): a guard halts an action when its permit expires",
            )

    def _verification_count(self, p: dict[str, Any], duration: float) -> None:
        """Rule ``receipt: too few verifications``: a guard checks on every heartbeat ``H`` (the
        permit's ``heartbeatIntervalMs``, else the receipt's ``heartbeatMs``, else the longest a guard
        accepts), so over ``D`` seconds it records at least
        ``floor(D / (max(H, MIN_CHECK_INTERVAL) * HEARTBEAT_SLACK)) - HEARTBEAT_MARGIN`` verifications."""
        step = "receipt"
        v = p.get("verifications")
        count = v.get("count") if isinstance(v, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise VerificationError(step, "the receipt's verifications.count is not a non-negative integer")
        permit_hb = self.claims.get("constraints", {}).get("heartbeatIntervalMs")
        receipt_hb = p.get("heartbeatMs")
        if receipt_hb is not None and (
            not isinstance(receipt_hb, int) or isinstance(receipt_hb, bool) or not 10 <= receipt_hb <= 60_000
        ):
            raise VerificationError(step, "the receipt's heartbeatMs is not an integer from 10 to 60000")
        if isinstance(permit_hb, int) and not isinstance(permit_hb, bool) and permit_hb > 0:
            heartbeat_ms, source = permit_hb, "the permit's heartbeatIntervalMs"
        elif receipt_hb is not None:
            heartbeat_ms, source = receipt_hb, "the receipt's heartbeatMs"
        else:
            heartbeat_ms, source = MAX_GUARD_HEARTBEAT_MS, "none recorded: the longest a guard accepts"
        interval = max(heartbeat_ms / 1000, MIN_CHECK_INTERVAL) * HEARTBEAT_SLACK
        required = math.floor(duration / interval) - HEARTBEAT_MARGIN
        if count < required:
            raise VerificationError(
                step,
                f"the receipt counts {count} verifications over {duration:.0f} s; a guard with a "
                f"{heartbeat_ms} ms heartbeat ({source}) records at least {required} "
                f"(one per {interval:.0f} s, less {HEARTBEAT_MARGIN})",
            )

    # 11
    def environment_binding(self) -> str:
        receipts = self._of(RECEIPT)
        if not receipts:
            return "no receipt to bind"
        expected = self.claims["environment"]["digest"]["sha256"]
        measurements = receipts[0].statement.predicate.get("measurements")
        start = measurements.get("start") if isinstance(measurements, dict) else None
        if not isinstance(start, dict):
            raise VerificationError("environment-binding", "the receipt has no start measurement")
        got = digest_of(start.get("digest"), "receipt measurements.start.digest", "environment-binding")
        if got != expected:
            raise VerificationError("environment-binding", "the measured environment differs from the permitted one")
        return f"environment {expected[:16]}…"

    # 12
    def log_inclusion(self) -> str:
        verifiers = self.root.log_verifiers()
        if not verifiers:
            raise VerificationError("log-inclusion", "the trust root has no log key")
        entries: list[tuple[str, bytes, TlogProof]] = [
            ("permit", self.bundle.permit.token.encode("ascii"), self.bundle.permit_proof)
        ]
        entries += [(f"statement {i}", s.entry, s.tlog_proof) for i, s in enumerate(self.bundle.statements)]
        # An ancestor's renewals (its chain up to the head its child names): logged like its permit.
        entries += [
            (f"renewal {i} ({r.permit.claims.get('jti')})", r.permit.token.encode("ascii"), r.tlog_proof)
            for i, r in enumerate(self.bundle.renewals)
        ]
        opened: dict[bytes, SignedCheckpoint] = {}  # each distinct checkpoint is verified once
        for label, entry, proof in entries:
            cp = opened.get(proof.checkpoint)
            if cp is None:
                cp = self._open_checkpoint(proof.checkpoint, self.root, label)
                opened[proof.checkpoint] = cp
                self.checkpoints.setdefault(cp.size, set()).add(cp.root)
                self.checkpoint_notes.append(proof.checkpoint)
            try:
                check_inclusion(proof, merkle.leaf_hash(entry), cp)
            except VerificationError as exc:
                raise VerificationError("log-inclusion", f"{label}: {exc}") from exc
        return f"{len(entries)} entries in {self.root.log_origin}"

    @staticmethod
    def _open_checkpoint(data: bytes, root: TrustRoot, label: str) -> SignedCheckpoint:
        keys = root.by_role("log")
        verifiers = [note.Verifier.from_public_key(root.log_origin, k.public_key) for k in keys]
        try:
            return open_with_any(data, verifiers, [k.max_tree_size for k in keys])
        except (VerificationError, MalformedError) as exc:
            raise VerificationError("log-inclusion", f"{label}: checkpoint: {exc}") from exc

    # 13
    def checkpoint_consistency(self) -> str:
        step = "checkpoint-consistency"
        for size, roots in self.checkpoints.items():
            if len(roots) > 1:
                raise VerificationError(step, f"split view: two different roots for tree size {size}")
        sizes = sorted(self.checkpoints)
        proofs = {(c.old_size, c.new_size): c.proof for c in self.bundle.consistency}
        for old, new in itertools.pairwise(sizes):
            proof = proofs.get((old, new))
            if proof is None:
                raise VerificationError(step, f"no consistency proof from size {old} to {new} in the bundle")
            try:
                merkle.verify_consistency(
                    old, new, next(iter(self.checkpoints[old])), next(iter(self.checkpoints[new])), proof
                )
            except VerificationError as exc:
                raise VerificationError(step, f"{old} → {new}: {exc.reason}") from exc
        return f"{len(sizes)} checkpoint(s) on one history"

    # 14
    def witness_quorum(self) -> str:
        """The assurance level (:class:`Assurance`), and the trust root's quorum on every checkpoint."""
        step = "witness-quorum"
        quorum = self.root.witness_quorum
        keys = self.root.by_role("witness")
        names = {w.name for w in keys}
        now = time.time() if self.policy.now is None else self.policy.now
        least: int | None = None
        for data in self.checkpoint_notes:
            try:
                parsed = note.parse(data)
            except MalformedError as exc:
                raise VerificationError(step, exc.reason) from exc
            counted: set[str] = set()
            future: set[str] = set()
            for w in keys:
                for _, ts in cosignature.verified_cosigners(parsed, [(w.name, w.public_key)]):
                    if ts > now + self.policy.clock_skew:
                        future.add(w.name)  # tlog-cosignature: verifiers MAY reject future timestamps
                    elif w.valid_at(ts):
                        counted.add(w.name)
            least = len(counted) if least is None else min(least, len(counted))
            if len(counted) < quorum:
                self.assurance = Assurance(least, len(names), quorum)
                ahead = future - counted
                note_future = (
                    f" ({len(ahead)} more dated in the future beyond the clock skew, not counted)" if ahead else ""
                )
                raise VerificationError(
                    step,
                    f"a checkpoint has {len(counted)} valid witness cosignatures; {quorum} required{note_future}",
                )
        self.assurance = Assurance(least or 0, len(names), quorum)
        if quorum == 0:
            return f"no quorum required; {self.assurance.text}"
        return f"≥ {quorum} cosignatures on every checkpoint; {self.assurance.text}"

    # 15
    def lineage(self) -> str:
        step = "lineage"
        parent = self.claims.get("parent")
        ancestors = self.bundle.ancestors
        if parent is None:
            if ancestors:
                raise VerificationError(step, "the permit has no parent but the bundle carries ancestors")
            return "root execution"
        if not ancestors:
            raise VerificationError(step, f"the permit descends from {parent} but the bundle has no ancestors")
        cap = self.root.max_lineage_depth
        if len(ancestors) > cap:
            raise VerificationError(
                step,
                f"the lineage is {len(ancestors)} ancestors deep; the trust root accepts at most {cap} "
                "(maxLineageDepth)",
            )
        own = self.assurance
        policy = dataclasses.replace(self.policy, require_receipt=False)
        seen = {self.claims["jti"]}
        expected: Any = parent
        for depth, anc in enumerate(ancestors):
            jti = anc.permit.claims.get("jti")
            if jti != expected:
                raise VerificationError(step, f"ancestor {depth} is not the parent permit {expected}")
            if jti in seen:
                raise VerificationError(step, f"the lineage loops: {jti} appears twice")
            seen.add(jti)
            self._renewal_permits(anc)
            # Verified once, on its own: its link to its parent is the next turn of this walk.
            result = _verify(dataclasses.replace(anc, ancestors=()), self.root, policy, ANCESTOR_STEPS)
            if not result.verified:
                f = result.failed
                raise VerificationError(
                    step, f"ancestor {expected} fails at {f.name if f else '?'}: {f.detail if f else ''}"
                )
            if result.assurance is not None and self.assurance is not None:
                # The least over the whole bundle: an ancestor's checkpoints count too.
                least = min(self.assurance.witnessed, result.assurance.witnessed)
                self.assurance = dataclasses.replace(self.assurance, witnessed=least)
            expected = anc.permit.claims.get("parent")
        if expected is not None:
            raise VerificationError(step, f"the lineage stops at {expected}, whose permit is not in the bundle")
        self._links()
        lowered = ""
        if own is not None and self.assurance is not None and self.assurance.witnessed < own.witnessed:
            lowered = f"; with its ancestors' checkpoints, {self.assurance.text}"
        return f"{len(ancestors)} ancestor(s); every link attenuates its parent{lowered}"

    def _links(self) -> None:
        """The rules of each link child → parent (docs/formats.md, "Delegation"), each link once.

        * ``parent chain head``: the permit of the parent's renewal chain the child names as
          ``delegation.parentHead`` is reachable from the parent through the renewals the bundle
          carries, each of which holds to the renewal rules (:meth:`_head`); a child from before
          ``parentHead`` is checked against the parent itself;
        * ``issued while the parent was valid``: the head's ``nbf <= `` the child's ``iat < `` its
          ``exp``;
        * ``expires no later``: the child's ``exp <=`` the head's;
        * ``within scope``: when the parent has a ``scope``, the child's action and resource are in
          it and the child has a ``scope``, a subset of it (a scope binds every descendant: a child
          asking for none is signed its parent's);
        * ``act chain`` (RFC 8693 §4.1): a child's chain of principals — ``act.sub`` outermost to
          innermost, then ``sub`` — is its own principal followed by its parent's chain, so ``sub``
          is the root's principal and ``act`` names every actor since, the current one outermost. A
          child with neither ``act`` nor ``delegation`` was issued before delegation was recorded
          and keeps ``sub`` as its principal;
        * ``parent not revoked``: no revocation in the bundle of the parent (of what it renews, of any
          permit above it) or of a principal of the parent's chain is dated a second or more before the
          child's ``iat`` (whole seconds, and an authority re-reads revocations every 50 ms).

        Each permit's chain is read once; each link compares one chain with the next: work linear
        in the bundle's size.
        """
        step = "lineage"
        chain: list[dict[str, Any]] = [self.claims, *(a.permit.claims for a in self.bundle.ancestors)]
        revoked: dict[tuple[str, str], float] = {}
        for part in (self.bundle, *self.bundle.ancestors):
            for s in part.statements:
                if s.statement.predicate_type != REVOCATION:
                    continue
                r = s.statement.predicate
                kind, target = r.get("kind"), r.get("target")
                if isinstance(kind, str) and isinstance(target, str):
                    at = _time(r, "time", step)
                    revoked[(kind, target)] = min(at, revoked.get((kind, target), at))
        # The earliest revocation covering each ancestor: its own, or any further up (a permit
        # revocation covers the lineage below it), found walking from the root down.
        covering: list[tuple[float, str] | None] = [None] * len(chain)
        above: tuple[float, str] | None = None
        for k in range(len(chain) - 1, 0, -1):
            c = chain[k]
            targets = [("permit", c.get("jti")), ("permit", c.get("renews"))]
            with contextlib.suppress(MalformedError):
                targets.append(("principal", entity_uid(permit_principal(c), "principal")))
            for kind, target in targets:
                when = revoked.get((kind, target)) if isinstance(target, str) else None
                if when is not None and (above is None or when < above[0]):
                    above = (when, f"the {kind} {target}")
            covering[k] = above
        principals = [chain_principals(c) for c in chain]
        for k in range(len(chain) - 1):
            child, par = chain[k], chain[k + 1]
            name, pname = child["jti"], par["jti"]
            iat, exp = child["iat"], child["exp"]
            head = self._head(child, par, self.bundle.ancestors[k])
            window = pname if head is par else f"{pname}'s renewal chain head {head['jti']}"
            if not head["nbf"] <= iat < head["exp"]:
                raise VerificationError(
                    step,
                    f"{name} was issued at {iat}, when its parent {window} was not valid "
                    f"({head['nbf']}..{head['exp']}): a child needs a live parent",
                )
            if exp > head["exp"]:
                raise VerificationError(
                    step,
                    f"{name} expires at {exp}, after its parent {window} (exp {head['exp']}): "
                    "a child never outlives it",
                )
            scope = par.get("scope")
            if isinstance(scope, list):
                allowed = scope_pairs(scope)
                action = child["action"]
                try:
                    pair = (action.get("name"), entity_uid(action.get("resource"), "resource"))
                except MalformedError as exc:
                    raise VerificationError(step, f"{name}: {exc.reason}") from exc
                if pair not in allowed:
                    raise VerificationError(
                        step, f"{name} permits {pair[0]} on {pair[1]}, outside the scope of its parent {pname}"
                    )
                if not isinstance(child.get("scope"), list):
                    # A scope binds every descendant: the authority signs the parent's into a child
                    # that asks for none, so a child of a scoped parent without one escaped it.
                    raise VerificationError(
                        step, f"{name} has no scope though its parent {pname} has one: a scope binds every descendant"
                    )
                wider = scope_pairs(child["scope"]) - allowed
                if wider:
                    a, res = sorted(wider)[0]
                    raise VerificationError(
                        step, f"{name}'s scope is wider than its parent {pname}'s: {a} on {res} is not in it"
                    )
            if "act" in child or "delegation" in child:
                want = [permit_principal(child), *principals[k + 1]]
                if principals[k] != want:
                    raise VerificationError(
                        step,
                        f"{name}'s act chain (RFC 8693 §4.1) is {_chain_text(principals[k])}; its lineage says "
                        f"{_chain_text(want)} (sub the root's principal, each actor since nested in act)",
                    )
            hit = covering[k + 1]
            if hit is not None and hit[0] + 1.0 <= iat:
                raise VerificationError(
                    step,
                    f"{name} was issued at {iat}, after {hit[1]} covering its parent {pname} was revoked "
                    f"(at {hit[0]:.3f}): a revoked parent delegates nothing",
                )

    def _head(self, child: dict[str, Any], par: dict[str, Any], anc: Bundle) -> dict[str, Any]:
        """The claims of the permit of ``par``'s renewal chain that was live when ``child`` was issued.

        A child records it as ``delegation.parentHead`` (docs/formats.md, "Delegation"); the
        ancestor's bundle carries the segment from ``par`` up to it (``renewals``). Each permit of
        the segment, signed and well-formed (:meth:`_renewal_permits`, before the ancestor is
        verified) and logged (the ancestor's ``log-inclusion`` step), is held to the renewal
        rules: it ``renews`` the permit before it, with the same action digest, ``cnf`` key and ``parent``,
        and it was issued within the predecessor's ``[nbf, exp + RENEWAL_GRACE]``. The head is
        the segment's last permit and must be the one the child names. A child without
        ``parentHead`` (issued before it was recorded) is checked against ``par`` itself, and then
        the bundle may carry no renewals. Each segment permit is read once: linear in the bundle.
        """
        step = "lineage"
        name, pname = child["jti"], par["jti"]
        delegation = child.get("delegation")
        wanted = delegation.get("parentHead") if isinstance(delegation, dict) else None
        if wanted is None:
            if anc.renewals:
                raise VerificationError(step, f"the bundle carries renewals of {pname}, but {name} names no parentHead")
            return par
        digest, cnf = par["action"]["digest"], jws.jwk_thumbprint(self._cnf_of(par))
        prev, seen = par, {pname}
        for i, r in enumerate(anc.renewals):
            c = r.permit.claims
            rname = c.get("jti")
            what = f"renewal {i} of {pname} ({rname})"
            if c.get("renews") != prev["jti"]:
                raise VerificationError(
                    step,
                    f"{wanted}, the parentHead {name} names, is not reachable from {pname}: {what} renews "
                    f"{c.get('renews')!r}, not {prev['jti']} (a renewal link is missing)",
                )
            if rname in seen:
                raise VerificationError(step, f"the renewal chain of {pname} loops: {rname} appears twice")
            seen.add(rname)
            if c["action"]["digest"] != digest or c.get("parent") != par.get("parent"):
                raise VerificationError(step, f"{what} permits another action (action digest or parent differs)")
            if jws.jwk_thumbprint(self._cnf_of(c)) != cnf:
                raise VerificationError(step, f"{what} is bound to another runtime key (cnf) than {pname}")
            if not prev["nbf"] <= c["iat"] <= prev["exp"] + permit_rules.RENEWAL_GRACE:
                raise VerificationError(
                    step,
                    f"{what} was issued at {c['iat']}, outside its predecessor's {prev['nbf']}..{prev['exp']} "
                    f"(+{permit_rules.RENEWAL_GRACE:.0f} s grace): a renewal extends a live permit",
                )
            prev = c
        if prev["jti"] != wanted:
            raise VerificationError(
                step,
                f"{wanted}, the parentHead {name} names, is not reachable from {pname} through the renewals "
                f"the bundle carries (they end at {prev['jti']}): not a permit of its parent's renewal chain",
            )
        cap = delegation.get("parentExp") if isinstance(delegation, dict) else None
        if cap is not None and cap != prev["exp"]:
            raise VerificationError(step, f"{name}'s parentExp {cap} is not the exp of its parentHead ({prev['exp']})")
        return prev

    def _renewal_permits(self, anc: Bundle) -> None:
        """Rules 1–3 of :mod:`fiat.verify.permit` for each renewal an ancestor carries: signed by an
        authority key of the trust root, valid at its ``iat``, its claims well-formed (its log
        inclusion is then the ancestor's ``log-inclusion`` step; its place in the chain, :meth:`_head`)."""
        pname = anc.permit.claims.get("jti")
        for i, r in enumerate(anc.renewals):
            try:
                key = permit_rules.check_signature(r.permit, self.root)
                permit_rules.check_key_validity(key, r.permit.claims)
                permit_rules.check_claims(r.permit.claims, self.root)
            except VerificationError as exc:
                what = f"renewal {i} of {pname} ({r.permit.claims.get('jti')})"
                raise VerificationError("lineage", f"{what} fails at {exc.step}: {exc.reason}") from exc

    @staticmethod
    def _cnf_of(claims: dict[str, Any]) -> bytes:
        return jws.public_key_from_jwk(claims["cnf"]["jwk"], "cnf")


def _chain_text(principals: list[str]) -> str:
    """A chain of principals as it reads: the current actor first, ``sub`` (on whose behalf) last."""
    *actors, sub = principals
    act = act_chain(actors)
    return f"sub {sub}" + (f", act {act}" if act else "")


def verify(bundle: Bundle, trust_root: TrustRoot, policy: VerificationPolicy | None = None) -> VerificationResult:
    """Verify ``bundle`` offline against ``trust_root``; every step is reported."""
    return _verify(bundle, trust_root, policy or VerificationPolicy(), STEPS)


def _verify(
    bundle: Bundle, trust_root: TrustRoot, policy: VerificationPolicy, steps: tuple[str, ...]
) -> VerificationResult:
    run = _Run(bundle, trust_root, policy)
    result = VerificationResult(
        permit_id=bundle.permit.claims.get("jti") if isinstance(bundle.permit.claims.get("jti"), str) else None
    )
    failed = False
    for name in steps:
        if failed:
            result.steps.append(StepResult(name, "skip", "not checked: an earlier step failed"))
            continue
        method: Callable[[], str] = getattr(run, name.replace("-", "_"))
        try:
            detail = method()
        except VerificationError as exc:
            result.steps.append(StepResult(name, "fail", exc.reason if exc.step == name else str(exc)))
            failed = True
            continue
        except MalformedError as exc:
            result.steps.append(StepResult(name, "fail", str(exc)))
            failed = True
            continue
        except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
            # Hostile input that slipped past a shape check must still fail closed, never crash.
            result.steps.append(StepResult(name, "fail", f"unexpected structure in the bundle ({type(exc).__name__})"))
            failed = True
            continue
        result.steps.append(StepResult(name, "pass", detail))
    result.containment = run.containment
    result.assurance = run.assurance
    if run.outcome is not None:
        result.outcome, result.exit_code, result.halt_reason = run.outcome
    return result


@dataclass
class SplitViewResult:
    """The verdict on a split-view proof (:mod:`fiat.verify.split_view`): its three named steps."""

    steps: list[StepResult] = field(default_factory=list)
    origin: str | None = None
    #: What the proof shows, when it verified (e.g. "two roots signed for tree size 7").
    summary: str | None = None
    #: (size, root) of the two checkpoints, when both are signed by the log.
    checkpoints: tuple[tuple[int, bytes], ...] = ()
    observed_by: str = ""
    observed_at: str = ""

    @property
    def proven(self) -> bool:
        return bool(self.steps) and all(s.status == "pass" for s in self.steps)

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == "fail"), None)

    @property
    def malformed(self) -> bool:
        """The document did not parse (step ``split-view-format``): ``fiat verify`` exit 2."""
        failed = self.failed
        return failed is not None and failed.name == split_view.STEPS[0]

    def to_json(self) -> dict[str, Any]:
        failed = self.failed
        return {
            "mediaType": split_view.MEDIA_TYPE,
            "verified": self.proven,
            "proves": "split-view" if self.proven else None,
            "origin": self.origin,
            "summary": self.summary,
            "failedStep": failed.name if failed else None,
            "checkpoints": [{"size": size, "root": note.b64(root)} for size, root in self.checkpoints],
            "observedBy": self.observed_by or None,
            "observedAt": self.observed_at or None,
            "steps": [s.to_json() for s in self.steps],
        }


def verify_split_view(data: bytes, trust_root: TrustRoot) -> SplitViewResult:
    """Verify a split-view proof offline against ``trust_root`` (docs/formats.md, "Split-view proofs").

    Steps ``split-view-format`` (:meth:`SplitViewProof.parse`), ``split-view-signatures`` (both
    checkpoints signed by a log key of the trust root — a retired one only up to its
    ``maxTreeSize`` — for the trust root's origin) and ``split-view-inconsistency``
    (:func:`fiat.verify.split_view.verify`); after a failure the rest are reported skipped.
    """
    result = SplitViewResult()
    steps = split_view.STEPS
    passed = {steps[0]: "well formed", steps[1]: "", steps[2]: ""}

    def finish(failed_at: str, reason: str) -> SplitViewResult:
        at = steps.index(failed_at)
        result.steps = [StepResult(n, "pass", passed[n]) for n in steps[:at]]
        result.steps.append(StepResult(failed_at, "fail", reason))
        result.steps += [StepResult(n, "skip", "not checked: an earlier step failed") for n in steps[at + 1 :]]
        return result

    try:
        proof = split_view.SplitViewProof.parse(data)
    except MalformedError as exc:
        return finish(steps[0], str(exc))
    result.origin, result.observed_by, result.observed_at = proof.origin, proof.observed_by, proof.observed_at
    passed[steps[1]] = f"both checkpoints signed by the log {proof.origin}"
    logs = trust_root.by_role("log")
    try:
        verifiers = [note.Verifier.from_public_key(trust_root.log_origin, k.public_key) for k in logs]
        proven = split_view.verify(proof, verifiers, [k.max_tree_size for k in logs])
    except VerificationError as exc:
        return finish(exc.step if exc.step in steps else steps[1], exc.reason)
    except MalformedError as exc:  # the trust root's origin is no key name (signed-note §Format)
        return finish(steps[1], str(exc))
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        # Hostile input that slipped past a shape check must still fail closed, never crash.
        return finish(steps[1], f"unexpected structure in the proof ({type(exc).__name__})")
    a, b = proven.first, proven.second
    result.checkpoints = ((a.size, a.root), (b.size, b.root))
    result.summary = proven.summary
    passed[steps[2]] = proven.summary
    result.steps = [StepResult(n, "pass", passed[n]) for n in steps]
    return result
