"""A tamper corpus for the offline verifier: one change each, each caught at its named step.

Real evidence only: the bundles come from ``make_execution`` (a real home, real keys,
a real log, real signatures) and every tampered variant is derived from them by one
change. Each case names the step (``fiat.verify.STEPS``) that must reject it; the
in-process verifier must fail exactly there (earlier steps pass, later ones are
skipped) and the real CLI (``python -m fiat.cli.main verify --json``) must exit 1
with that step as ``failedStep``. Changes that make a bundle unparseable must be
refused as malformed instead (``MalformedError``; CLI exit 2).

Every case also goes through the CLI, each in its own process: a warm parent forks one
child per case that runs ``fiat.cli.main`` as ``__main__``, and one case of each outcome
is re-run as a plain ``python -m fiat.cli.main`` for comparison (a fresh interpreter
costs ~0.3 s here; ninety of them would dominate the run).

Receipts that the bundle's own revocation refutes are made by ``support.receipts``: the real
authority revokes, then logs the receipt the runtime key signed, and assembles the bundle.

Two cases need bundles ``make_execution`` cannot make: a decision signed at another time
than the permit (so that the decision key's validity, not the permit key's, is what
fails) and a permit minted with a retired key. ``custom_execution`` below builds them
the same way, logged and bundled by the home.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.authorize.permit import Constraints, PermitRequest, mint_permit
from fiat.config import Config
from fiat.errors import MalformedError
from fiat.formats import jws as jwslib
from fiat.formats.canonical import compact
from fiat.formats.dsse import Envelope, sign_envelope
from fiat.formats.encoding import b64url, b64url_decode, rfc3339
from fiat.formats.jws import jwk_thumbprint
from fiat.formats.statement import APPROVAL, DECISION, RECEIPT
from fiat.home import keyring, log_signer, trust_root
from fiat.keys.pem import load_private_key
from fiat.prove import evidence as ev
from fiat.tlog import cosignature, note
from fiat.tlog.checkpoint import Checkpoint, sign_checkpoint
from fiat.tlog.proof_file import TlogProof
from fiat.verify import STEPS, Bundle, TrustedKey, TrustRoot, VerificationPolicy, VerificationResult, verify
from fiat.verify.permit import PERMIT_TYP
from fiat.wiring import open_evidence, open_log
from support.evidence import ENV_DIGEST, POLICY, Execution, custom_execution, make_execution
from support.processes import cli_env, fiat
from support.receipts import Revoke, claimed_execution
from support.reference_merkle import MemoryTree

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

Json = dict[str, Any]

# -- running the CLI ------------------------------------------------------------------------


def fiat_ok(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    proc = fiat(*args)
    assert proc.returncode == EXIT_OK, (args, proc.stdout, proc.stderr)
    return proc


# -- small helpers over the bundle JSON -----------------------------------------------------


def statement_payload(st: Json) -> Json:
    return json.loads(base64.b64decode(st["envelope"]["payload"]))


def index_of(bj: Json, ptype: str) -> int:
    found = [i for i, st in enumerate(bj["statements"]) if statement_payload(st)["predicateType"] == ptype]
    assert len(found) == 1, (ptype, found)
    return found[0]


def flip_b64std(text: str, pos: int, mask: int = 0x01) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[pos] ^= mask
    return base64.b64encode(bytes(raw)).decode("ascii")


def flip_b64url(text: str, pos: int, mask: int = 0x01) -> str:
    raw = bytearray(b64url_decode(text, "test"))
    raw[pos] ^= mask
    return b64url(bytes(raw))


def flip_in_json_string(raw: bytes, member: str) -> bytes:
    """Flip the case of the first letter of the string value of ``member``: the JSON stays valid."""
    needle = b'"' + member.encode() + b'":"'
    i = raw.index(needle) + len(needle)
    assert chr(raw[i]).isalpha(), raw[i - 20 : i + 20]
    out = bytearray(raw)
    out[i] ^= 0x20
    return bytes(out)


def token_parts(bj: Json) -> list[str]:
    return str(bj["permit"]["token"]).split(".")


def set_token(bj: Json, parts: list[str]) -> None:
    bj["permit"]["token"] = ".".join(parts)


def proof_of(bj: Json, which: str | int) -> TlogProof:
    text = bj["permit"]["tlogProof"] if which == "permit" else bj["statements"][int(which)]["tlogProof"]
    return TlogProof.parse(text.encode("utf-8"))


def set_proof(bj: Json, which: str | int, proof: TlogProof) -> None:
    text = proof.encode().decode("utf-8")
    if which == "permit":
        bj["permit"]["tlogProof"] = text
    else:
        bj["statements"][int(which)]["tlogProof"] = text


def all_proof_slots(bj: Json) -> list[str | int]:
    return ["permit", *range(len(bj["statements"]))]


def with_key(root: TrustRoot, kid: str, **changes: Any) -> TrustRoot:
    keys = tuple(dataclasses.replace(k, **changes) if k.kid == kid else k for k in root.keys)
    assert any(k.kid == kid for k in root.keys), kid
    return dataclasses.replace(root, keys=keys)


def read_log_entries(cfg: Config, end: int) -> list[bytes]:
    log = open_log(cfg)
    try:
        return log.read_entries(0, end)
    finally:
        log.close()
        log.store.close()


def log_consistency(cfg: Config, old: int, new: int) -> list[bytes]:
    log = open_log(cfg)
    try:
        return log.consistency_proof(old, new)
    finally:
        log.close()
        log.store.close()


def checkpoint_size(proof: TlogProof) -> int:
    return Checkpoint.parse_text(note.parse(proof.checkpoint).text).size


# -- the world: real executions in real homes ------------------------------------------------


@dataclass
class World:
    tmp: Path
    cfg: Config
    base: Execution  # a root execution
    approved: Execution  # one that needed an approval
    child: Execution  # parent = base
    other: Execution  # another action (another resource) in the same home
    late: Bundle  # the decision signed 10 s after the permit's iat
    early: Bundle  # the decision signed 10 s before the permit's iat
    root: TrustRoot  # the home's trust root (no witness quorum)
    extra_runtime: tuple[str, Ed25519PrivateKey]  # a second runtime key in the trust root
    witnesses: list[tuple[str, Ed25519PrivateKey]]
    witness_root: bytes  # exported by the CLI with --witness-quorum 2 (of w1, w2, w3)
    rot_cfg: Config
    rot_pre: Execution  # made before the authority key was rotated
    rot_post: Execution  # made after, with the new key
    rot_old_key_permit: Bundle  # minted after the rotation with the retired key
    rot_root: bytes  # exported by the CLI after the rotation
    # Receipts claiming what the bundle's own revocation refutes, logged by the real authority
    # (support.receipts): one halted by the revocation (honest), one that ran on, one that started after.
    revoked_halted: Execution
    revoked_ran_on: Execution
    revoked_before_start: Execution
    # A renewed execution that completed long after the first permit of its chain was revoked.
    chain_revoked_ran_on: Execution
    # Delegation (docs/formats.md, "Delegation"): planner (scoped) → coder (scoped) → tester, and
    # children the authority should never have signed (each a re-signed, logged forgery).
    deleg: dict[str, Execution]
    # A planner renewed twice (p1 → p2 → p3) and children naming p1 with a parentHead.
    renewed: dict[str, Execution]

    @property
    def iat(self) -> int:
        return int(self.base.bundle.permit.claims["iat"])

    def authority_kid(self) -> str:
        return str(self.base.bundle.permit.header["kid"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("tamper")
    home = tmp / "home"
    base = make_execution(home)
    cfg = base.cfg
    approved = make_execution(home, approvals=1, approval_group="ops")  # its approver is of group ops
    child = make_execution(home, parent=base.jti)
    other = make_execution(home, resource="service:billing", context={"version": "9.9.9"})
    now = time.time()
    late = custom_execution(cfg, now=now, decision_at=now + 10)
    early = custom_execution(cfg, now=now, decision_at=now - 10)

    t = float(int(time.time()))
    halted = {"outcome": "halted", "exit_code": None, "halt_reason": "revocation: the permit was revoked: test"}
    revoked_halted = claimed_execution(
        home, now=t, revocations=[Revoke("permit", t + 5)], receipt={**halted, "end": t + 6, "verifications": 24}
    )
    revoked_ran_on = claimed_execution(
        home, now=t, revocations=[Revoke("permit", t + 5)], receipt={"end": t + 30, "verifications": 120}
    )
    revoked_before_start = claimed_execution(
        home,
        now=t,
        revocations=[Revoke("permit", t + 1)],
        receipt={**halted, "start": t + 20, "execution_start": t + 20, "end": t + 21},
    )
    first_of_chain = make_execution(home, now=t, with_receipt=False)
    chain_revoked_ran_on = claimed_execution(
        home,
        now=t,
        revocations=[Revoke("permit", t + 5, target=first_of_chain.jti)],
        receipt={"end": t + 30, "verifications": 120, "renewed_from": [first_of_chain.jti]},
    )

    deleg = delegations(home)

    # Key rotation, end to end through the CLI, in a home of its own.
    rot_home = tmp / "rot"
    rot_pre = make_execution(rot_home)
    rot_cfg = rot_pre.cfg
    old_kid = str(rot_pre.bundle.permit.header["kid"])

    # A second runtime key, registered in the home (so exported in its trust root).
    ring = keyring(cfg)
    rrec, rkey = ring.create("runtime", "vm-2")
    ring.save()
    renewed = renewed_parents(home)  # after vm-2: a renewal bound to it

    # Witnesses, through the CLI.
    fiat_ok("keys", "add", "--role", "witness", "--name", "w1", "--home", home)
    fiat_ok("keys", "add", "--role", "witness", "--name", "w2", "--home", home)
    fiat_ok("keys", "add", "--role", "witness", "--name", "w3", "--home", home)
    fiat_ok("trust-root", "export", "--home", home, "--witness-quorum", "2", "-o", tmp / "witness-root.json")
    ring = keyring(cfg)
    witnesses = [(n, ring.signing_key("witness", n)[1]) for n in ("w1", "w2", "w3")]

    # The rotation must close the old key's period after the pre-rotation permit's iat.
    while int(time.time()) <= int(rot_pre.bundle.permit.claims["iat"]):
        time.sleep(0.02)
    fiat_ok("keys", "rotate", "--role", "authority", "--home", rot_home)
    fiat_ok("trust-root", "export", "--home", rot_home, "-o", tmp / "rot-root.json")
    rot_ring = keyring(rot_cfg)
    old = rot_ring.find(old_kid)
    assert old is not None and old.file is not None and old.valid_until is not None
    old_key = load_private_key(rot_cfg.keys_dir / old.file)
    rot_old_key_permit = custom_execution(rot_cfg, now=time.time(), authority=(old_kid, old_key))
    rot_post = make_execution(rot_home)
    assert rot_post.bundle.permit.header["kid"] != old_kid

    return World(
        tmp=tmp,
        cfg=cfg,
        base=base,
        approved=approved,
        child=child,
        other=other,
        late=late,
        early=early,
        root=trust_root(cfg),
        extra_runtime=(rrec.kid, rkey),
        witnesses=witnesses,
        witness_root=(tmp / "witness-root.json").read_bytes(),
        rot_cfg=rot_cfg,
        rot_pre=rot_pre,
        rot_post=rot_post,
        rot_old_key_permit=rot_old_key_permit,
        rot_root=(tmp / "rot-root.json").read_bytes(),
        revoked_halted=revoked_halted,
        revoked_ran_on=revoked_ran_on,
        revoked_before_start=revoked_before_start,
        chain_revoked_ran_on=chain_revoked_ran_on,
        deleg=deleg,
        renewed=renewed,
    )


PAYMENTS = {"action": "deploy", "resource": "service:payments"}
BILLING = {"action": "deploy", "resource": "service:billing"}


def delegations(home: Path) -> dict[str, Execution]:
    """Three generations of delegated executions and forged children (each logged and bundled)."""
    planner = make_execution(home, principal="agent:planner", scope=[PAYMENTS])
    coder = make_execution(home, principal="agent:coder", parent=planner.jti, scope=[PAYMENTS])
    tester = make_execution(home, principal="agent:tester", parent=coder.jti)

    def forged(parent: Execution, edit: Callable[[Json], None], **kw: Any) -> Execution:
        return make_execution(home, principal=kw.pop("principal", "agent:tester"), parent=parent.jti, forge=edit, **kw)

    def other_parent(c: Json) -> None:
        c["act"] = {"sub": "agent:tester", "act": {"sub": "agent:mallory"}}

    def sub_not_root(c: Json) -> None:
        c["sub"] = "agent:coder"

    def actor_dropped(c: Json) -> None:
        c["act"] = {"sub": "agent:tester"}

    def widened(c: Json) -> None:
        c["scope"] = [PAYMENTS, BILLING]

    def scope_dropped(c: Json) -> None:
        c.pop("scope", None)

    def outlives(c: Json) -> None:
        c["exp"] += 3600

    def legacy(c: Json) -> None:  # as issued before delegation was recorded: no act, sub its principal
        del c["act"], c["delegation"]
        c["sub"] = "agent:tester"

    # Keys are valid from the home's creation on: the later children are dated ahead, not the parents back.
    t = float(int(time.time()))
    short = make_execution(home, principal="agent:planner", now=t, ttl=2, with_receipt=False)

    def after_expiry(c: Json) -> None:
        c["exp"] = c["iat"] + 60

    revoked = make_execution(home, principal="agent:planner", now=t, with_receipt=False)
    cfg = revoked.cfg
    arec, akey = keyring(cfg).signing_key("authority")
    statement = ev.revocation_statement(kind="permit", target=revoked.jti, reason="test", epoch=1, at=t + 1)
    recorder = open_evidence(cfg)
    try:
        recorder.record_statement(ev.sign_statement(statement, [(arec.kid, akey)]), revoked.jti)
    finally:
        recorder.close()
    # A grandchild that ran after a principal of its chain (coder, the middle actor) was revoked.
    late = make_execution(home, principal="agent:tester", parent=coder.jti, now=t + 20)
    statement = ev.revocation_statement(kind="principal", target='Agent::"coder"', reason="test", epoch=2, at=t + 5)
    recorder = open_evidence(cfg)
    try:
        recorder.record_statement(ev.sign_statement(statement, [(arec.kid, akey)]), late.jti)
        late = dataclasses.replace(late, bundle=recorder.bundle(late.jti))
    finally:
        recorder.close()
    return {
        "actor-revoked": late,
        "planner": planner,
        "coder": coder,
        "tester": tester,
        "other-parent": forged(coder, other_parent),
        "sub-not-root": forged(coder, sub_not_root),
        "actor-dropped": forged(coder, actor_dropped),
        "scope-widened": forged(planner, widened, principal="agent:coder", scope=[PAYMENTS]),
        # A scope binds every descendant: a child of a scoped parent signed without one escaped it
        # (its own children would be free of the root's scope).
        "scope-dropped": forged(planner, scope_dropped, principal="agent:coder"),
        "outside-scope": make_execution(home, principal="agent:coder", parent=planner.jti, resource="service:billing"),
        "outlives": forged(coder, outlives),
        "legacy": forged(coder, legacy),
        "after-expiry": forged(short, after_expiry, now=t + 10),
        "revoked-parent": make_execution(home, principal="agent:coder", parent=revoked.jti, now=t + 10),
    }


def renewed_parents(home: Path) -> dict[str, Execution]:
    """A parent renewed twice, p1 (t..t+4) → p2 (t+3..t+7) → p3 (t+6..t+10), and its children.

    ``child`` names p1 (the id the parent process knows) and p3, the chain's head when it was
    issued at t+8, after p1 had expired: it verifies only through the renewals its bundle carries.
    """
    t = float(int(time.time()))
    planner: dict[str, Any] = {"principal": "agent:planner", "with_receipt": False, "ttl": 4, "runtime_name": "vm"}
    p1 = make_execution(home, now=t, **planner)
    p2 = make_execution(home, now=t + 3, renews=p1.jti, **planner)
    p3 = make_execution(home, now=t + 6, renews=p2.jti, **planner)
    coder: dict[str, Any] = {"principal": "agent:coder", "parent": p1.jti, "runtime_name": "vm"}
    # Another chain of the same planner (another resource): q1 → q2.
    other = {**planner, "resource": "service:billing"}
    q1 = make_execution(home, now=t, **other)
    q2 = make_execution(home, now=t + 3, renews=q1.jti, **other)
    # "Renewals" of p1 the authority never issues: bound to another runtime key, for another action.
    by_vm2 = make_execution(home, now=t + 3, renews=p1.jti, **{**planner, "runtime_name": "vm-2"})
    widened = make_execution(home, now=t + 3, renews=p1.jti, context={"version": "6.6.6"}, **planner)

    def no_head(c: Json) -> None:  # as issued before parentHead was recorded
        del c["delegation"]["parentHead"]

    def one_second(c: Json) -> None:  # exp after iat, so only the lineage step can tell
        c["exp"] = c["iat"] + 1

    made = {
        "p1": p1,
        "p3": p3,
        "child": make_execution(home, now=t + 8, parent_head=p3.jti, **coder),
        "child-of-p2": make_execution(home, now=t + 5, parent_head=p2.jti, **coder),
        "before-the-head": make_execution(home, now=t + 5, parent_head=p3.jti, **coder),
        "after-the-head": make_execution(home, now=t + 8, parent_head=p2.jti, forge=one_second, **coder),
        "old-child": make_execution(home, now=t + 1, forge=no_head, **coder),
        "other-chain": make_execution(home, now=t + 5, parent_head=q2.jti, with_ancestors=False, **coder),
        "renewed-by-vm-2": make_execution(home, now=t + 5, parent_head=by_vm2.jti, **coder),
        "renewed-for-another-action": make_execution(home, now=t + 5, parent_head=widened.jti, **coder),
        "q-child": make_execution(home, now=t + 5, parent_head=q2.jti, **{**coder, "parent": q1.jti}),
    }
    # Every bundle proven against one checkpoint, so that parts of one can be spliced into another.
    recorder = open_evidence(p1.cfg)
    try:
        return {
            name: dataclasses.replace(ex, bundle=recorder.bundle(ex.jti, with_ancestors=name != "other-chain"))
            for name, ex in made.items()
        }
    finally:
        recorder.close()


def with_renewals(ex: Execution, source: Execution) -> Json:
    """``ex``'s own bundle with the ancestors (and their renewals) that ``source``'s bundle carries."""
    bj = bj_of(ex)
    bj["ancestors"] = bj_of(source)["ancestors"]
    return bj


# -- the cases -------------------------------------------------------------------------------

Input = tuple[Json | bytes, TrustRoot | bytes]


@dataclass(frozen=True)
class Case:
    name: str
    step: str | None  # None: verifies; "malformed": refused by Bundle.parse
    build: Callable[[World], Input]
    reason: str | None = None  # a fragment the failing step's detail must contain; valid: the assurance text


CASES: list[Case] = []


Builder = Callable[[World], Input]


def case(name: str, step: str | None, reason: str | None = None) -> Callable[[Builder], Builder]:
    assert step is None or step == "malformed" or step in STEPS, step

    def register(fn: Builder) -> Builder:
        assert all(c.name != name for c in CASES), name
        CASES.append(Case(name, step, fn, reason))
        return fn

    return register


def bj_of(ex: Execution | Bundle) -> Json:
    bundle = ex.bundle if isinstance(ex, Execution) else ex
    return copy.deepcopy(bundle.to_json())


# valid ------------------------------------------------------------------------------------


@case("valid/root-execution", None)
def _(w: World) -> Input:
    return bj_of(w.base), w.root


@case("valid/with-approval", None)
def _(w: World) -> Input:
    return bj_of(w.approved), w.root


@case("valid/child-with-lineage", None)
def _(w: World) -> Input:
    return bj_of(w.child), w.root


@case("valid/authority-valid-from-exactly-iat", None)
def _(w: World) -> Input:
    return bj_of(w.base), with_key(w.root, w.authority_kid(), valid_from=float(w.iat))


@case("valid/late-decision-key-still-valid", None)
def _(w: World) -> Input:
    iat = int(w.late.permit.claims["iat"])
    return bj_of(w.late), with_key(w.root, w.authority_kid(), valid_from=iat - 100.0, valid_until=iat + 11.0)


@case("valid/early-decision-key-already-valid", None)
def _(w: World) -> Input:
    iat = int(w.early.permit.claims["iat"])
    return bj_of(w.early), with_key(w.root, w.authority_kid(), valid_from=iat - 10.0)


@case("valid/multi-checkpoint-with-consistency", None)
def _(w: World) -> Input:
    return multi_checkpoint(w, with_consistency=True), w.root


@case("valid/cosigned-by-quorum", None, "witnessed by 3 of 3")
def _(w: World) -> Input:
    return cosigned(w), w.witness_root


@case("valid/cosigned-by-two-of-three", None, "witnessed by 2 of 3")
def _(w: World) -> Input:
    return cosigned(w, w.witnesses[:2]), w.witness_root


@case("valid/cosigned-no-quorum-required", None, "witnessed by 1 of 3")
def _(w: World) -> Input:
    return cosigned(w, w.witnesses[1:2]), w.root


@case("valid/signed-by-the-log-only", None, "signed by the log")
def _(w: World) -> Input:
    return bj_of(w.base), w.root


@case("valid/least-cosigned-checkpoint-decides", None, "witnessed by 2 of 3")
def _(w: World) -> Input:
    """Two checkpoints: the newer cosigned by all three, the older by two: the least counts."""
    bj = multi_checkpoint(w, with_consistency=True)
    return cosigned(w, bj=bj, per_slot={"permit": w.witnesses[:2]}), w.witness_root


@case("valid/cosignature-lines-of-unknown-witnesses-ignored", None, "witnessed by 2 of 3")
def _(w: World) -> Input:
    stranger = ("w9", Ed25519PrivateKey.generate())
    return cosigned(w, [stranger, *w.witnesses[:2]]), w.witness_root


@case("valid/ml-dsa-44-cosignature-lines-ignored", None, "witnessed by 2 of 3")
def _(w: World) -> Input:
    """Real ML-DSA-44 lines (type 0x06) under the witnesses' names: the trust root holds their
    Ed25519 keys only, so those lines are ignored (C2SP tlog-cosignature: unknown key IDs)."""
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

    bj = cosigned(w, w.witnesses[:2])
    ts = int(time.time())
    for slot in all_proof_slots(bj):
        p = proof_of(bj, slot)
        n = note.parse(p.checkpoint)
        cp = Checkpoint.parse_text(n.text)
        lines = [
            cosignature.mldsa_signature(name, MLDSA44PrivateKey.generate(), ts, cp.origin, cp.size, cp.root)
            for name, _ in w.witnesses
        ]
        set_proof(bj, slot, dataclasses.replace(p, checkpoint=note.Note(n.text, (*n.signatures, *lines)).encode()))
    return bj, w.witness_root


@case("valid/least-cosigned-ancestor-decides", None, "witnessed by 1 of 3")
def _(w: World) -> Input:
    """The child's checkpoints cosigned by all three, its parent's by one: the bundle is witnessed by 1."""
    bj = cosigned(w, bj=bj_of(w.child))
    bj["ancestors"][0] = cosigned(w, w.witnesses[:1], bj=bj["ancestors"][0])
    return bj, w.root


@case("valid/cosigned-within-the-clock-skew-ahead", None, "witnessed by 2 of 3")
def _(w: World) -> Input:
    return cosigned(w, w.witnesses[:2], ts=int(time.time()) + 2), w.witness_root


@case("valid/pre-rotation-bundle-new-trust-root", None)
def _(w: World) -> Input:
    return bj_of(w.rot_pre), w.rot_root


@case("valid/post-rotation-bundle-new-trust-root", None)
def _(w: World) -> Input:
    return bj_of(w.rot_post), w.rot_root


@case("valid/halted-by-a-revocation-in-the-bundle", None)
def _(w: World) -> Input:
    return bj_of(w.revoked_halted), w.root


# permit-signature -------------------------------------------------------------------------


@case("permit/signature-first-byte-flipped", "permit-signature", "does not verify")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    parts = token_parts(bj)
    parts[2] = flip_b64url(parts[2], 0)
    set_token(bj, parts)
    return bj, w.root


@case("permit/signature-last-bit-flipped", "permit-signature", "does not verify")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    parts = token_parts(bj)
    parts[2] = flip_b64url(parts[2], 63, 0x80)
    set_token(bj, parts)
    return bj, w.root


@case("permit/payload-byte-flipped", "permit-signature", "does not verify")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    parts = token_parts(bj)
    parts[1] = b64url(flip_in_json_string(b64url_decode(parts[1], "t"), "sub"))
    set_token(bj, parts)
    return bj, w.root


@case("permit/payload-expiry-extended", "permit-signature", "does not verify")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    parts = token_parts(bj)
    claims = json.loads(b64url_decode(parts[1], "t"))
    claims["exp"] += 3600
    parts[1] = b64url(json.dumps(claims, separators=(",", ":")).encode())
    set_token(bj, parts)
    return bj, w.root


@case("permit/header-typ-changed", "permit-signature", "typ")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    parts = token_parts(bj)
    parts[0] = b64url(flip_in_json_string(b64url_decode(parts[0], "t"), "typ"))
    set_token(bj, parts)
    return bj, w.root


@case("permit/alg-none-with-signature-stripped", "permit-signature")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    parts = token_parts(bj)
    header = json.loads(b64url_decode(parts[0], "t"))
    header["alg"] = "none"
    parts[0] = b64url(json.dumps(header).encode())
    parts[2] = ""
    set_token(bj, parts)
    return bj, w.root


@case("keys/authority-key-swapped-in-trust-root", "permit-signature", "not an authority key")
def _(w: World) -> Input:
    pub = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    keys = tuple(
        dataclasses.replace(k, kid=jwk_thumbprint(pub), public_key=pub) if k.role == "authority" else k
        for k in w.root.keys
    )
    return bj_of(w.base), dataclasses.replace(w.root, keys=keys)


@case("keys/authority-role-relabelled-approver", "permit-signature", "not an authority key")
def _(w: World) -> Input:
    return bj_of(w.base), with_key(w.root, w.authority_kid(), role="approver")


# permit-key-validity ----------------------------------------------------------------------


@case("keys/authority-expired-before-iat", "permit-key-validity", "was not valid")
def _(w: World) -> Input:
    return bj_of(w.base), with_key(w.root, w.authority_kid(), valid_from=w.iat - 100.0, valid_until=w.iat - 1.0)


@case("keys/authority-valid-until-exactly-iat", "permit-key-validity", "was not valid")
def _(w: World) -> Input:
    return bj_of(w.base), with_key(w.root, w.authority_kid(), valid_from=w.iat - 100.0, valid_until=float(w.iat))


@case("keys/authority-not-yet-valid-at-iat", "permit-key-validity", "was not valid")
def _(w: World) -> Input:
    return bj_of(w.base), with_key(w.root, w.authority_kid(), valid_from=w.iat + 1.0)


@case("keys/rotated-old-key-mints-after-rotation", "permit-key-validity", "was not valid")
def _(w: World) -> Input:
    return bj_of(w.rot_old_key_permit), w.rot_root


# permit-claims, receipt, environment-binding: signed by a key holder, wrong in substance -----


def _mint_for_base(w: World, **overrides: Any) -> str:
    ring = keyring(w.cfg)
    arec, akey = ring.signing_key("authority")
    cnf = w.base.bundle.permit.claims["cnf"]["jwk"]
    spec = PermitRequest(
        w.base.request,
        jwslib.public_key_from_jwk(cnf, "cnf"),
        POLICY,
        ENV_DIGEST,
        ttl=60,
        constraints=Constraints(max_duration=300),
    )
    args: dict[str, Any] = {"issuer": w.cfg.authority.issuer, "audience": w.cfg.authority.audience, "now": w.iat}
    args.update(overrides)
    token, _ = mint_permit(spec, key=akey, kid=arec.kid, **args)
    return token


@case("claims/permit-for-another-audience", "permit-claims", "aud")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    bj["permit"]["token"] = _mint_for_base(w, audience="another-relying-party")
    return bj, w.root


@case("claims/permit-from-another-issuer", "permit-claims", "iss")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    bj["permit"]["token"] = _mint_for_base(w, issuer="rogue.example")
    return bj, w.root


def _resigned_receipt(w: World, mutate: Callable[[Json], None]) -> Json:
    """The runtime (holder of the cnf key) signs a receipt saying something else."""
    bj = bj_of(w.base)
    i = index_of(bj, RECEIPT)
    payload = statement_payload(bj["statements"][i])
    mutate(payload["predicate"])
    rrec, rkey = keyring(w.cfg).signing_key("runtime", w.cfg.runtime_name)
    body = json.dumps(payload, separators=(",", ":")).encode()
    bj["statements"][i]["envelope"] = sign_envelope("application/vnd.in-toto+json", body, [(rrec.kid, rkey)]).to_json()
    return bj


@case("receipt/arguments-digest-of-other-arguments", "receipt", "argumentsDigest is not the digest")
def _(w: World) -> Input:
    """A tool call's receipt (docs/mcp.md) naming arguments other than those the permit was for."""

    def other_arguments(p: Json) -> None:
        p["argumentsDigest"] = {"sha256": hashlib.sha256(b'{"amount_cents":999999}').hexdigest()}

    return _resigned_receipt(w, other_arguments), w.root


@case("receipt/arguments-digest-malformed", "receipt", "argumentsDigest must be a digest set")
def _(w: World) -> Input:
    def malformed(p: Json) -> None:
        p["argumentsDigest"] = "sha256:abc"

    return _resigned_receipt(w, malformed), w.root


@case("receipt/started-after-the-permit-expired", "receipt", "outside the permit's validity window")
def _(w: World) -> Input:
    def late_start(p: Json) -> None:
        p["start"] = p["end"] = rfc3339(w.iat + 3600)

    return _resigned_receipt(w, late_start), w.root


@case("receipt/ran-beyond-max-duration", "receipt", "beyond maxDuration")
def _(w: World) -> Input:
    def long_run(p: Json) -> None:
        p["end"] = rfc3339(w.iat + 3600)

    return _resigned_receipt(w, long_run), w.root


@case("receipt/renewed-run-beyond-max-duration-since-execution-start", "receipt", "beyond maxDuration")
def _(w: World) -> Input:
    def long_since_start(p: Json) -> None:
        # A renewed permit's window starts late; the action itself started long before.
        p["executionStart"] = rfc3339(w.iat - 3600)

    return _resigned_receipt(w, long_since_start), w.root


@case("receipt/completed-after-the-permit-was-revoked", "receipt", "without halting")
def _(w: World) -> Input:
    return bj_of(w.revoked_ran_on), w.root


@case("receipt/completed-after-the-first-permit-of-its-chain-was-revoked", "receipt", "without halting")
def _(w: World) -> Input:
    """A revocation covers the whole renewal chain (docs/formats.md, "Renewal and revocation"): the
    last permit's guard had to halt too, though the revocation names the chain's first permit."""
    return bj_of(w.chain_revoked_ran_on), w.root


@case("receipt/started-after-the-permit-was-revoked", "receipt", "a revoked permit never runs")
def _(w: World) -> Input:
    return bj_of(w.revoked_before_start), w.root


@case("receipt/completed-after-the-permit-expired", "receipt", "after the permit chain expired")
def _(w: World) -> Input:
    def past_exp(p: Json) -> None:
        p["end"] = rfc3339(w.base.bundle.permit.claims["exp"] + 60)
        p["verifications"]["count"] = 1000

    return _resigned_receipt(w, past_exp), w.root


@case("receipt/too-few-verifications-for-its-duration", "receipt", "records at least 10")
def _(w: World) -> Input:
    def long_and_unchecked(p: Json) -> None:
        p["end"] = rfc3339(w.iat + 50)  # 250 ms heartbeat: at least floor(50 / 4) - 2 = 10; it says 8

    return _resigned_receipt(w, long_and_unchecked), w.root


@case("receipt/completed-with-a-nonzero-exit-code", "receipt", "not 0")
def _(w: World) -> Input:
    def exit_one(p: Json) -> None:
        p["exitCode"] = 1

    return _resigned_receipt(w, exit_one), w.root


@case("receipt/measured-environment-differs", "environment-binding", "differs from the permitted one")
def _(w: World) -> Input:
    def other_env(p: Json) -> None:
        p["measurements"]["start"]["digest"]["sha256"] = "1" * 64

    return _resigned_receipt(w, other_env), w.root


# action-binding ---------------------------------------------------------------------------


@case("action/resource-changed", "action-binding", "action digest")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    bj["actionRequest"]["resource"] = "service:billing"
    return bj, w.root


@case("action/context-value-changed", "action-binding", "action digest")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    bj["actionRequest"]["context"]["replicas"] = 300
    return bj, w.root


@case("action/context-member-added", "action-binding", "action digest")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    bj["actionRequest"]["context"]["force"] = True
    return bj, w.root


@case("action/principal-changed", "action-binding", "action digest")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    bj["actionRequest"]["principal"] = "agent:intruder"
    return bj, w.root


@case("action/request-of-another-execution", "action-binding", "action digest")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    bj["actionRequest"] = bj_of(w.other)["actionRequest"]
    return bj, w.root


# runtime-key ------------------------------------------------------------------------------


@case("keys/cnf-key-not-in-trust-root", "runtime-key", "not a runtime key")
def _(w: World) -> Input:
    ring = keyring(w.cfg)
    arec, akey = ring.signing_key("authority")
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    spec = PermitRequest(
        w.base.request, stranger, POLICY, ENV_DIGEST, ttl=60, constraints=Constraints(max_duration=300)
    )
    token, _ = mint_permit(
        spec, key=akey, kid=arec.kid, issuer=w.cfg.authority.issuer, audience=w.cfg.authority.audience
    )
    bj = bj_of(w.base)
    bj["permit"]["token"] = token
    return bj, w.root


@case("keys/runtime-key-expired-before-iat", "runtime-key", "not valid at iat")
def _(w: World) -> Input:
    cnf_kid = jwk_thumbprint(jwslib.public_key_from_jwk(w.base.bundle.permit.claims["cnf"]["jwk"], "cnf"))
    return bj_of(w.base), with_key(w.root, cnf_kid, valid_from=w.iat - 100.0, valid_until=w.iat - 1.0)


# statement-signatures ---------------------------------------------------------------------


def _statement_flips(label: str, ex_name: str, ptype: str, member: str) -> None:
    def pick(w: World) -> tuple[Json, int]:
        bj = bj_of(getattr(w, ex_name))
        return bj, index_of(bj, ptype)

    @case(f"statement/{label}-dsse-signature-flipped", "statement-signatures")
    def _sig(w: World) -> Input:
        bj, i = pick(w)
        sig = bj["statements"][i]["envelope"]["signatures"][0]
        sig["sig"] = flip_b64std(sig["sig"], 5)
        return bj, w.root

    @case(f"statement/{label}-dsse-payload-flipped", "statement-signatures")
    def _payload(w: World) -> Input:
        bj, i = pick(w)
        env = bj["statements"][i]["envelope"]
        env["payload"] = base64.b64encode(flip_in_json_string(base64.b64decode(env["payload"]), member)).decode()
        return bj, w.root


_statement_flips("decision", "base", DECISION, "reason")
_statement_flips("receipt", "base", RECEIPT, "outcome")
_statement_flips("approval", "approved", APPROVAL, "approver")
_statement_flips("approved-decision", "approved", DECISION, "reason")
_statement_flips("approved-receipt", "approved", RECEIPT, "outcome")


@case("keys/receipt-resigned-by-another-runtime-key", "statement-signatures", "cnf key")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    i = index_of(bj, RECEIPT)
    env = Envelope.from_json(bj["statements"][i]["envelope"])
    bj["statements"][i]["envelope"] = sign_envelope(env.payload_type, env.payload, [w.extra_runtime]).to_json()
    assert w.root.find(w.extra_runtime[0], "runtime") is not None
    return bj, w.root


@case("keys/decision-resigned-by-untrusted-key", "statement-signatures", "no signature by a trusted")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    i = index_of(bj, DECISION)
    env = Envelope.from_json(bj["statements"][i]["envelope"])
    stranger = Ed25519PrivateKey.generate()
    kid = jwk_thumbprint(stranger.public_key().public_bytes_raw())
    bj["statements"][i]["envelope"] = sign_envelope(env.payload_type, env.payload, [(kid, stranger)]).to_json()
    return bj, w.root


@case("keys/decision-signer-expired-at-decision-time", "statement-signatures", "was not valid at")
def _(w: World) -> Input:
    iat = int(w.late.permit.claims["iat"])
    return bj_of(w.late), with_key(w.root, w.authority_kid(), valid_from=iat - 100.0, valid_until=iat + 5.0)


@case("keys/decision-signer-not-yet-valid-at-decision-time", "statement-signatures", "was not valid at")
def _(w: World) -> Input:
    iat = int(w.early.permit.claims["iat"])
    return bj_of(w.early), with_key(w.root, w.authority_kid(), valid_from=iat - 5.0)


# statement-digests ------------------------------------------------------------------------


@case("action/decision-for-another-action", "statement-digests", "not this action")
def _(w: World) -> Input:
    bj, other = bj_of(w.base), bj_of(w.other)
    bj["statements"][index_of(bj, DECISION)] = other["statements"][index_of(other, DECISION)]
    return bj, w.root


@case("statement/receipt-of-another-permit", "statement-digests", "not this permit")
def _(w: World) -> Input:
    bj, other = bj_of(w.base), bj_of(w.other)
    bj["statements"][index_of(bj, RECEIPT)] = other["statements"][index_of(other, RECEIPT)]
    return bj, w.root


# removed statements -----------------------------------------------------------------------


@case("removed/decision", "decision", "no signed allow decision")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    del bj["statements"][index_of(bj, DECISION)]
    return bj, w.root


@case("removed/receipt", "receipt", "no execution receipt")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    del bj["statements"][index_of(bj, RECEIPT)]
    return bj, w.root


@case("removed/approval", "approvals", "not in the bundle")
def _(w: World) -> Input:
    bj = bj_of(w.approved)
    del bj["statements"][index_of(bj, APPROVAL)]
    return bj, w.root


@case("approvals/signed-by-an-approver-of-another-group", "approvals", "not by an approver of group 'ops'")
def _(w: World) -> Input:
    # A real execution whose allow decision names group ops, approved by a key enrolled in group sec.
    # One second on: the home (and its approver key) made here must predate the approval's time,
    # which is written to the second (else, across a second boundary, the key is "not yet valid").
    ex = make_execution(
        w.tmp / "other-group", now=time.time() + 1, approvals=1, approval_group="ops", approver_groups=("sec",)
    )
    return bj_of(ex), ex.trust_root()


@case("approvals/approver-relabelled-into-no-group", "approvals", "not by an approver of group 'ops'")
def _(w: World) -> Input:
    return bj_of(w.approved), with_key(w.root, _approver_kid(w), groups=())


@case("approvals/approved-by-the-principal-who-asked", "approvals", "the principal who asked")
def _(w: World) -> Input:
    # The approver's identity, in the Cedar spelling, is the request's principal (agent:release-bot).
    return bj_of(w.approved), with_key(w.root, _approver_kid(w), identity='Agent::"release-bot"')


def _approver_kid(w: World) -> str:
    bj = bj_of(w.approved)
    return str(bj["statements"][index_of(bj, APPROVAL)]["envelope"]["signatures"][0]["keyid"])


@case("removed/ancestors", "lineage", "no ancestors")
def _(w: World) -> Input:
    bj = bj_of(w.child)
    del bj["ancestors"]
    return bj, w.root


@case("lineage/ancestor-permit-signature-flipped", "lineage", "fails at permit-signature")
def _(w: World) -> Input:
    bj = bj_of(w.child)
    anc = bj["ancestors"][0]
    parts = token_parts(anc)
    parts[2] = flip_b64url(parts[2], 10)
    set_token(anc, parts)
    return bj, w.root


@case("lineage/ancestor-decision-removed", "lineage", "fails at decision")
def _(w: World) -> Input:
    bj = bj_of(w.child)
    anc = bj["ancestors"][0]
    del anc["statements"][index_of(anc, DECISION)]
    return bj, w.root


@case("lineage/ancestor-is-another-execution", "lineage", "is not the parent permit")
def _(w: World) -> Input:
    bj = bj_of(w.child)
    bj["ancestors"] = [bj_of(w.other)]
    return bj, w.root


@case("lineage/deeper-than-the-trust-root-allows", "lineage", "at most 0 (maxLineageDepth)")
def _(w: World) -> Input:
    return bj_of(w.child), dataclasses.replace(w.root, max_lineage_depth=0)


@case("valid/delegated-three-generations", None)
def _(w: World) -> Input:
    return bj_of(w.deleg["tester"]), w.root


@case("valid/delegated-child-without-act-as-before", None)
def _(w: World) -> Input:
    return bj_of(w.deleg["legacy"]), w.root


@case("lineage/act-names-another-parent-principal", "lineage", "act chain (RFC 8693 §4.1)")
def _(w: World) -> Input:
    return bj_of(w.deleg["other-parent"]), w.root


@case("lineage/sub-is-not-the-root-principal", "lineage", "sub agent:planner")
def _(w: World) -> Input:
    return bj_of(w.deleg["sub-not-root"]), w.root


@case("lineage/act-chain-drops-an-actor", "lineage", "act chain")
def _(w: World) -> Input:
    return bj_of(w.deleg["actor-dropped"]), w.root


@case("lineage/scope-wider-than-the-parent", "lineage", "scope is wider than its parent")
def _(w: World) -> Input:
    return bj_of(w.deleg["scope-widened"]), w.root


@case("lineage/scope-dropped-under-a-scoped-parent", "lineage", "a scope binds every descendant")
def _(w: World) -> Input:
    return bj_of(w.deleg["scope-dropped"]), w.root


@case("lineage/action-outside-the-parent-scope", "lineage", "outside the scope of its parent")
def _(w: World) -> Input:
    return bj_of(w.deleg["outside-scope"]), w.root


@case("lineage/child-outlives-its-parent", "lineage", "a child never outlives it")
def _(w: World) -> Input:
    return bj_of(w.deleg["outlives"]), w.root


@case("lineage/issued-after-the-parent-expired", "lineage", "a child needs a live parent")
def _(w: World) -> Input:
    return bj_of(w.deleg["after-expiry"]), w.root


@case("lineage/issued-after-the-parent-was-revoked", "lineage", "a revoked parent delegates nothing")
def _(w: World) -> Input:
    return bj_of(w.deleg["revoked-parent"]), w.root


@case("lineage/re-signed-parent-not-in-the-log", "lineage", "fails at log-inclusion")
def _(w: World) -> Input:
    # The parent re-signed with the authority key (a wider scope that would admit the child's
    # action): its signature verifies, but these bytes were never logged.
    # Its allow decision is re-signed for the new bytes too (the forger holds the authority key);
    # an ancestor's receipt is not required, so it is dropped.
    bj = bj_of(w.deleg["tester"])
    anc = bj["ancestors"][0]
    claims = jwslib.parse(anc["permit"]["token"]).claims
    claims["scope"] = [PAYMENTS, BILLING]
    arec, akey = keyring(w.cfg).signing_key("authority")
    token = jwslib.sign_compact(compact(claims), akey, kid=arec.kid, typ=PERMIT_TYP)
    anc["permit"]["token"] = token
    anc["statements"] = [st for st in anc["statements"] if statement_payload(st)["predicateType"] == DECISION]
    request = anc["actionRequest"]
    decision = ev.decision_statement(
        decision="allow",
        reason="forged",
        request=request,
        request_digest=claims["action"]["digest"]["sha256"],
        policy=POLICY.to_json(),
        at=float(claims["iat"]),
        permit=(claims["jti"], jwslib.parse(token).digest),
    )
    anc["statements"][0]["envelope"] = ev.sign_statement(decision, [(arec.kid, akey)]).to_json()
    return bj, w.root


@case(
    "receipt/ran-after-a-principal-of-its-act-chain-was-revoked", "receipt", "delegation chain's principal agent:coder"
)
def _(w: World) -> Input:
    return bj_of(w.deleg["actor-revoked"]), w.root


# A parent renewed while its child was issued (docs/formats.md, "Delegation": parentHead) -----------


@case("valid/child-of-a-renewed-parent-after-its-first-permit-expired", None)
def _(w: World) -> Input:
    bj = bj_of(w.renewed["child"])
    assert [jwslib.parse(r["token"]).claims["jti"] for r in bj["ancestors"][0]["renewals"]][-1] == (w.renewed["p3"].jti)
    return bj, w.root


@case("valid/child-naming-the-middle-of-the-renewal-chain", None)
def _(w: World) -> Input:
    return bj_of(w.renewed["child-of-p2"]), w.root


@case("valid/child-without-parent-head-as-before", None)
def _(w: World) -> Input:
    return bj_of(w.renewed["old-child"]), w.root


@case("lineage/parent-head-unreachable-a-renewal-removed", "lineage", "is not reachable from")
def _(w: World) -> Input:
    bj = bj_of(w.renewed["child"])
    del bj["ancestors"][0]["renewals"][0]
    return bj, w.root


@case("lineage/parent-head-renewals-all-removed", "lineage", "they end at")
def _(w: World) -> Input:
    bj = bj_of(w.renewed["child"])
    del bj["ancestors"][0]["renewals"]
    return bj, w.root


@case("lineage/parent-head-renewal-signature-flipped", "lineage", "fails at permit-signature")
def _(w: World) -> Input:
    bj = bj_of(w.renewed["child"])
    renewal = bj["ancestors"][0]["renewals"][1]
    parts = token_parts({"permit": renewal})
    parts[2] = flip_b64url(parts[2], 10)
    renewal["token"] = ".".join(parts)
    return bj, w.root


@case("lineage/parent-head-re-signed-not-in-the-log", "lineage", "fails at log-inclusion: renewal 1")
def _(w: World) -> Input:
    # The head re-signed with the authority key (a later exp): its signature verifies, these bytes were never logged.
    bj = bj_of(w.renewed["child"])
    renewal = bj["ancestors"][0]["renewals"][1]
    claims = jwslib.parse(renewal["token"]).claims
    claims["exp"] += 3600
    arec, akey = keyring(w.cfg).signing_key("authority")
    renewal["token"] = jwslib.sign_compact(compact(claims), akey, kid=arec.kid, typ=PERMIT_TYP)
    return bj, w.root


@case("lineage/child-issued-before-its-parent-head", "lineage", "a child needs a live parent")
def _(w: World) -> Input:
    return bj_of(w.renewed["before-the-head"]), w.root


@case("lineage/child-issued-after-its-parent-head-expired", "lineage", "a child needs a live parent")
def _(w: World) -> Input:
    return bj_of(w.renewed["after-the-head"]), w.root


@case("lineage/parent-head-of-another-chain", "lineage", "not a permit of its parent's renewal chain")
def _(w: World) -> Input:
    # The child names p1 as parent and q2 (a renewal of another execution) as head; the bundle
    # carries p1's real renewals.
    return with_renewals(w.renewed["other-chain"], w.renewed["child"]), w.root


@case("lineage/parent-head-segment-of-another-chain", "lineage", "renews")
def _(w: World) -> Input:
    # The same child, carrying q2 (which renews q1, not p1) as p1's renewal.
    bj = with_renewals(w.renewed["other-chain"], w.renewed["child"])
    bj["ancestors"][0]["renewals"] = bj_of(w.renewed["q-child"])["ancestors"][0]["renewals"]
    return bj, w.root


@case("lineage/parent-renewal-bound-to-another-runtime-key", "lineage", "bound to another runtime key (cnf)")
def _(w: World) -> Input:
    return bj_of(w.renewed["renewed-by-vm-2"]), w.root


@case("lineage/parent-renewal-for-another-action", "lineage", "permits another action")
def _(w: World) -> Input:
    return bj_of(w.renewed["renewed-for-another-action"]), w.root


@case("lineage/renewals-carried-for-a-child-without-parent-head", "lineage", "names no parentHead")
def _(w: World) -> Input:
    return with_renewals(w.renewed["old-child"], w.renewed["child"]), w.root


@case("malformed/renewals-on-the-top-level-bundle", "malformed", "only an ancestor bundle carries renewals")
def _(w: World) -> Input:
    bj = bj_of(w.renewed["child"])
    bj["renewals"] = bj["ancestors"][0]["renewals"]
    return bj, w.root


@case("lineage/stray-ancestor-on-a-root-execution", "lineage", "no parent")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    bj["ancestors"] = [bj_of(w.other)]
    return bj, w.root


# log-inclusion ----------------------------------------------------------------------------


def _flip_proof_hash(p: TlogProof) -> TlogProof:
    assert p.path, "an entry of a one-leaf tree has no path to flip"
    first = bytearray(p.path[0])
    first[7] ^= 0x10
    return dataclasses.replace(p, path=(bytes(first), *p.path[1:]))


def _flip_checkpoint_root(p: TlogProof) -> TlogProof:
    n = note.parse(p.checkpoint)
    origin, size, root, *rest = n.text.split("\n")
    raw = bytearray(base64.b64decode(root))
    raw[0] ^= 0x01
    text = "\n".join([origin, size, base64.b64encode(bytes(raw)).decode(), *rest])
    return dataclasses.replace(p, checkpoint=note.Note(text, n.signatures).encode())


def _flip_checkpoint_signature(p: TlogProof) -> TlogProof:
    n = note.parse(p.checkpoint)
    s = n.signatures[0]
    sig = bytearray(s.signature)
    sig[20] ^= 0x04
    return dataclasses.replace(
        p, checkpoint=note.Note(n.text, (note.Signature(s.name, s.key_id, bytes(sig)),)).encode()
    )


def _shift_index(p: TlogProof) -> TlogProof:
    return dataclasses.replace(p, index=p.index ^ 1)


def _proof_case(slot: str | int, fn: Callable[[TlogProof], TlogProof]) -> Callable[[World], Input]:
    def build(w: World) -> Input:
        bj = bj_of(w.base)
        set_proof(bj, slot, fn(proof_of(bj, slot)))
        return bj, w.root

    return build


for _slot in ("permit", 0, 1):
    for _label, _fn in (
        ("proof-hash-flipped", _flip_proof_hash),
        ("checkpoint-root-flipped", _flip_checkpoint_root),
        ("checkpoint-signature-flipped", _flip_checkpoint_signature),
        ("index-shifted", _shift_index),
    ):
        case(f"log/{_slot}-{_label}", "log-inclusion")(_proof_case(_slot, _fn))


@case("log/checkpoint-signed-by-another-log-key", "log-inclusion", "no signature from a trusted key")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    p = proof_of(bj, "permit")
    n = note.parse(p.checkpoint)
    impostor = note.Signer(w.cfg.log.origin, Ed25519PrivateKey.generate())
    set_proof(bj, "permit", dataclasses.replace(p, checkpoint=note.sign(n.text, [impostor])))
    return bj, w.root


@case("log/statement-entry-not-the-logged-bytes", "log-inclusion", "statement 1")
def _(w: World) -> Input:
    # A valid receipt for the same permit, signed by the cnf key but never logged.
    bj = bj_of(w.base)
    i = index_of(bj, RECEIPT)
    st = bj["statements"][i]
    payload = statement_payload(st)
    payload["predicate"]["verifications"]["count"] += 1
    ring = keyring(w.cfg)
    rrec, rkey = ring.signing_key("runtime", w.cfg.runtime_name)
    body = json.dumps(payload, separators=(",", ":")).encode()
    st["envelope"] = sign_envelope("application/vnd.in-toto+json", body, [(rrec.kid, rkey)]).to_json()
    assert i == 1
    return bj, w.root


# checkpoint-consistency -------------------------------------------------------------------


def multi_checkpoint(w: World, *, with_consistency: bool) -> Json:
    """The permit proven against an older real checkpoint, the statements against the newer one."""
    bj = bj_of(w.base)
    p = proof_of(bj, "permit")
    old, new = p.index + 1, checkpoint_size(p)
    assert old < new
    real = MemoryTree(read_log_entries(w.cfg, new))
    cp = sign_checkpoint(Checkpoint(w.cfg.log.origin, old, real.root(old)), log_signer(w.cfg))
    log = open_log(w.cfg)
    try:
        path, _ = log.inclusion_proof(p.index, old)
    finally:
        log.close()
        log.store.close()
    set_proof(bj, "permit", TlogProof(p.index, tuple(path), cp.note_bytes))
    if with_consistency:
        proof = log_consistency(w.cfg, old, new)
        bj["consistency"] = [{"oldSize": old, "newSize": new, "proof": [base64.b64encode(h).decode() for h in proof]}]
    return bj


@case("consistency/two-sizes-no-consistency-proof", "checkpoint-consistency", "no consistency proof")
def _(w: World) -> Input:
    return multi_checkpoint(w, with_consistency=False), w.root


@case("consistency/consistency-proof-hash-flipped", "checkpoint-consistency")
def _(w: World) -> Input:
    bj = multi_checkpoint(w, with_consistency=True)
    bj["consistency"][0]["proof"][0] = flip_b64std(bj["consistency"][0]["proof"][0], 3)
    return bj, w.root


def _forged_tree(entries: list[bytes], permit_index: int, size: int) -> MemoryTree:
    forged = [*entries[: permit_index + 1]]
    forged += [b"forged entry %d" % i for i in range(size - len(forged))]
    return MemoryTree(forged)


@case("consistency/fork-stale-checkpoint-between-real-ones", "checkpoint-consistency", "→")
def fork(w: World) -> Input:
    """A forked tree (the permit's exact bytes at its index, then other entries) of a size between
    two real checkpoints, signed with the REAL log key: each proof verifies, the history does not."""
    bj = bj_of(w.approved)
    origin, signer = w.cfg.log.origin, log_signer(w.cfg)
    permit = proof_of(bj, "permit")
    ai = index_of(bj, APPROVAL)
    approval = proof_of(bj, ai)
    n = checkpoint_size(permit)
    k, m = approval.index + 1, permit.index + 2  # real K <= permit < forged M < real N
    assert k <= permit.index < m < n
    entries = read_log_entries(w.cfg, n)
    real = MemoryTree(entries)
    forged = _forged_tree(entries, permit.index, m)
    assert forged.root() != real.root(m)
    cp_m = sign_checkpoint(Checkpoint(origin, m, forged.root()), signer)
    set_proof(bj, "permit", TlogProof(permit.index, tuple(forged.inclusion_proof(permit.index)), cp_m.note_bytes))
    cp_k = sign_checkpoint(Checkpoint(origin, k, real.root(k)), signer)
    set_proof(bj, ai, TlogProof(approval.index, tuple(real.inclusion_proof(approval.index, k)), cp_k.note_bytes))

    def b64s(hashes: list[bytes]) -> list[str]:
        return [base64.b64encode(h).decode() for h in hashes]

    bj["consistency"] = [
        # K → M verifies: the forged tree extends the real prefix of size K ...
        {"oldSize": k, "newSize": m, "proof": b64s(forged.consistency_proof(k, m))},
        # ... but M → N cannot: the real log's proof does not fit the forged root.
        {"oldSize": m, "newSize": n, "proof": b64s(log_consistency(w.cfg, m, n))},
    ]
    return bj, w.root


@case("consistency/split-view-two-roots-for-one-size", "checkpoint-consistency", "split view")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    permit = proof_of(bj, "permit")
    n = checkpoint_size(permit)
    forged = _forged_tree(read_log_entries(w.cfg, n), permit.index, n)
    cp = sign_checkpoint(Checkpoint(w.cfg.log.origin, n, forged.root()), log_signer(w.cfg))
    set_proof(bj, "permit", TlogProof(permit.index, tuple(forged.inclusion_proof(permit.index)), cp.note_bytes))
    return bj, w.root


# witness-quorum ---------------------------------------------------------------------------


def cosigned(
    w: World,
    signers: list[tuple[str, Ed25519PrivateKey]] | None = None,
    ts: int | None = None,
    *,
    bj: Json | None = None,
    per_slot: dict[str | int, list[tuple[str, Ed25519PrivateKey]]] | None = None,
) -> Json:
    """``bj`` (default: the base execution's) with every checkpoint cosigned (C2SP tlog-cosignature) by
    ``signers`` (default: all three witnesses) at ``ts`` (default: now); ``per_slot`` overrides the
    signers of one proof's checkpoint."""
    bj = bj_of(w.base) if bj is None else bj
    ts = int(time.time()) if ts is None else ts
    for slot in all_proof_slots(bj):
        p = proof_of(bj, slot)
        data = p.checkpoint
        chosen = (per_slot or {}).get(slot, w.witnesses if signers is None else signers)
        for name, key in chosen:
            data = cosignature.cosign(data, name, key, ts)
        set_proof(bj, slot, dataclasses.replace(p, checkpoint=data))
    return bj


@case("witness/no-cosignatures", "witness-quorum", "0 valid witness cosignatures")
def _(w: World) -> Input:
    return bj_of(w.base), w.witness_root


@case("witness/one-cosignature-flipped", "witness-quorum", "1 valid witness cosignatures")
def _(w: World) -> Input:
    bj = cosigned(w, w.witnesses[:2])
    p = proof_of(bj, 1)
    n = note.parse(p.checkpoint)
    sigs = list(n.signatures)
    j = next(i for i, s in enumerate(sigs) if s.name == "w2")
    raw = bytearray(sigs[j].signature)
    raw[8 + 30] ^= 0x01  # inside the Ed25519 signature, after the timestamp
    sigs[j] = dataclasses.replace(sigs[j], signature=bytes(raw))
    set_proof(bj, 1, dataclasses.replace(p, checkpoint=note.Note(n.text, tuple(sigs)).encode()))
    return bj, w.witness_root


@case("witness/one-witness-cosigning-twice", "witness-quorum", "1 valid witness cosignatures")
def _(w: World) -> Input:
    w1 = w.witnesses[0]
    return cosigned(w, [w1, w1]), w.witness_root


@case("witness/cosigned-before-the-witness-keys-existed", "witness-quorum", "0 valid witness cosignatures")
def _(w: World) -> Input:
    return cosigned(w, ts=w.iat - 3600), w.witness_root


@case("witness/below-quorum", "witness-quorum", "a checkpoint has 1 valid witness cosignatures; 2 required")
def _(w: World) -> Input:
    return cosigned(w, w.witnesses[2:]), w.witness_root


@case("witness/cosigned-by-an-unknown-key-under-a-witness-name", "witness-quorum", "1 valid witness cosignatures")
def _(w: World) -> Input:
    impostor = ("w2", Ed25519PrivateKey.generate())
    return cosigned(w, [w.witnesses[0], impostor]), w.witness_root


@case("witness/cosigned-after-the-witness-key-expired", "witness-quorum", "1 valid witness cosignatures")
def _(w: World) -> Input:
    root = TrustRoot.parse(w.witness_root)
    w2 = next(k for k in root.by_role("witness") if k.name == "w2")
    return cosigned(w, w.witnesses[:2]), with_key(root, w2.kid, valid_until=w2.valid_from + 1)


@case("witness/cosignature-dated-in-the-future", "witness-quorum", "1 more dated in the future beyond the clock skew")
def _(w: World) -> Input:
    bj = cosigned(w, w.witnesses[:1])
    return cosigned(w, w.witnesses[1:2], ts=int(time.time()) + 3600, bj=bj), w.witness_root


@case("witness/one-checkpoint-below-quorum", "witness-quorum", "1 valid witness cosignatures; 2 required")
def _(w: World) -> Input:
    bj = multi_checkpoint(w, with_consistency=True)
    return cosigned(w, bj=bj, per_slot={"permit": w.witnesses[:1]}), w.witness_root


@case("witness/an-ancestor-below-quorum", "lineage", "fails at witness-quorum: a checkpoint has 1 valid")
def _(w: World) -> Input:
    bj = cosigned(w, bj=bj_of(w.child))
    bj["ancestors"][0] = cosigned(w, w.witnesses[:1], bj=bj["ancestors"][0])
    return bj, w.witness_root


@case("witness/the-log-key-cosigning-as-a-witness", "witness-quorum", "1 valid witness cosignatures")
def _(w: World) -> Input:
    """A cosignature line under a witness's name by the log's own key does not count."""
    log_key = log_signer(w.cfg)._key
    return cosigned(w, [w.witnesses[0], ("w3", log_key)]), w.witness_root


# unparseable changes: malformed, CLI exit 2 -----------------------------------------------


@case("malformed/permit-payload-json-broken", "malformed")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    parts = token_parts(bj)
    raw = bytearray(b64url_decode(parts[1], "t"))
    raw[0] ^= 0x01  # '{' -> 'z'
    parts[1] = b64url(bytes(raw))
    set_token(bj, parts)
    return bj, w.root


@case("malformed/permit-signature-not-base64url", "malformed")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    parts = token_parts(bj)
    parts[2] = "!" + parts[2][1:]
    set_token(bj, parts)
    return bj, w.root


@case("malformed/statement-payload-json-broken", "malformed")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    env = bj["statements"][0]["envelope"]
    raw = bytearray(base64.b64decode(env["payload"]))
    raw[-1] ^= 0x01  # the final '}' -> '|'
    env["payload"] = base64.b64encode(bytes(raw)).decode()
    return bj, w.root


@case("malformed/statement-payload-not-base64", "malformed")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    env = bj["statements"][1]["envelope"]
    env["payload"] = "*" + env["payload"][1:]
    return bj, w.root


@case("malformed/statement-signature-not-base64", "malformed")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    sig = bj["statements"][0]["envelope"]["signatures"][0]
    sig["sig"] = sig["sig"][:-3] + "$=="
    return bj, w.root


def unused_bits_set(text: str) -> str:
    """The same bytes in a non-canonical spelling: the last character's unused bits set (RFC 4648 §3.5)."""
    pad = len(text) - len(text.rstrip("="))
    assert pad in (1, 2), text
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    i = len(text) - pad - 1
    out = text[:i] + alphabet[alphabet.index(text[i]) | (0b1111 if pad == 2 else 0b11)] + text[i + 1 :]
    assert out != text and base64.b64decode(out) == base64.b64decode(text)
    return out


@case("malformed/dsse-signature-unused-bits-set", "malformed")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    sig = bj["statements"][index_of(bj, RECEIPT)]["envelope"]["signatures"][0]
    sig["sig"] = unused_bits_set(sig["sig"])
    return bj, w.root


@case("malformed/dsse-payload-unused-bits-set", "malformed")
def _(w: World) -> Input:
    for ex in (w.base, w.approved, w.child, w.other, w.revoked_halted, w.revoked_ran_on):
        bj = bj_of(ex)
        for st in bj["statements"]:
            if len(base64.b64decode(st["envelope"]["payload"])) % 3:
                st["envelope"]["payload"] = unused_bits_set(st["envelope"]["payload"])
                return bj, w.root
    raise AssertionError("every payload's length is a multiple of 3: no unused bits to set")


@case("malformed/consistency-hash-unused-bits-set", "malformed")
def _(w: World) -> Input:
    bj = multi_checkpoint(w, with_consistency=True)
    bj["consistency"][0]["proof"][0] = unused_bits_set(bj["consistency"][0]["proof"][0])
    return bj, w.root


@case("malformed/tlog-proof-header-flipped", "malformed")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    bj["permit"]["tlogProof"] = bj["permit"]["tlogProof"].replace("index ", "indey ", 1)
    return bj, w.root


@case("malformed/tlog-proof-hash-truncated", "malformed")
def _(w: World) -> Input:
    bj = bj_of(w.base)
    lines = bj["statements"][0]["tlogProof"].split("\n")
    lines[2] = lines[2][:-8]
    bj["statements"][0]["tlogProof"] = "\n".join(lines)
    return bj, w.root


# -- fixtures running every case ---------------------------------------------------------------


def _as_bytes(bundle: Json | bytes) -> bytes:
    return bundle if isinstance(bundle, bytes) else json.dumps(bundle, indent=1).encode()


def _root_bytes(root: TrustRoot | bytes) -> bytes:
    return root if isinstance(root, bytes) else json.dumps(root.to_json(), indent=1).encode()


@pytest.fixture(scope="module")
def inputs(world: World) -> dict[str, tuple[bytes, bytes]]:
    out = {}
    for c in CASES:
        bundle, root = c.build(world)
        out[c.name] = (_as_bytes(bundle), _root_bytes(root))
    return out


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: bytes
    stderr: bytes


# Runs ``fiat`` once per job, each in its own forked child that executes ``fiat.cli.main`` as
# ``__main__`` (exactly what ``python -m fiat.cli.main`` does) after the parent imported its
# dependencies once: the CLI code path and exit status of a fresh process, without paying the
# interpreter and import start-up (~0.3 s) per case. ``real_cli`` cross-checks it against plain
# ``python -m fiat.cli.main`` runs.
CLI_BATCH = r"""
import importlib, json, os, runpy, sys, traceback
import fiat.cli.main
del sys.modules["fiat.cli.main"]  # keep its dependencies imported; run the module itself afresh
for lazy in ("typer._adapters", "typer._coercion", "rich._emoji_codes", "fiat.verify"):  # imported at parse time
    try:
        importlib.import_module(lazy)
    except ImportError:
        pass
jobs = json.loads(open(sys.argv[1], encoding="utf-8").read())
codes = []
for job in jobs:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            sys.argv = [job["argv0"], *job["args"]]
            runpy.run_module("fiat.cli.main", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump(codes, f)
"""


def write_case_files(d: Path, inputs: dict[str, tuple[bytes, bytes]]) -> dict[str, tuple[Path, Path]]:
    d.mkdir(exist_ok=True)
    files = {}
    for i, (name, (b, r)) in enumerate(inputs.items()):
        bp, rp = d / f"{i}.bundle.json", d / f"{i}.root.json"
        bp.write_bytes(b)
        rp.write_bytes(r)
        files[name] = (bp, rp)
    return files


def fiat_batch(d: Path, argvs: dict[str, list[str]]) -> dict[str, CliRun]:
    names = list(argvs)
    jobs = [
        {
            "argv0": "fiat",
            "args": argvs[n],
            "stdout": str(d / f"job{i}.out"),
            "stderr": str(d / f"job{i}.err"),
        }
        for i, n in enumerate(names)
    ]
    (d / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", CLI_BATCH, str(d / "jobs.json"), str(d / "codes.json")],
        env=cli_env(),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    codes = json.loads((d / "codes.json").read_text(encoding="utf-8"))
    return {
        n: CliRun(code, Path(job["stdout"]).read_bytes(), Path(job["stderr"]).read_bytes())
        for n, job, code in zip(names, jobs, codes, strict=True)
    }


@pytest.fixture(scope="module")
def case_files(world: World, inputs: dict[str, tuple[bytes, bytes]]) -> dict[str, tuple[Path, Path]]:
    return write_case_files(world.tmp / "cases", inputs)


@pytest.fixture(scope="module")
def cli(world: World, case_files: dict[str, tuple[Path, Path]]) -> dict[str, CliRun]:
    """``fiat verify BUNDLE --trust-root ROOT --json`` on every case, each in its own process."""
    argvs = {n: ["verify", str(b), "--trust-root", str(r), "--json"] for n, (b, r) in case_files.items()}
    return fiat_batch(world.tmp / "cases", argvs)


def _real_cli_cases() -> list[str]:
    """The first case of each outcome: verified, malformed, and each failing step."""
    names, steps = [], set()
    for c in CASES:
        if c.step not in steps:
            names.append(c.name)
            steps.add(c.step)
    return names


@pytest.fixture(scope="module")
def real_cli(case_files: dict[str, tuple[Path, Path]]) -> dict[str, CliRun]:
    """Plain ``python -m fiat.cli.main verify`` runs (one interpreter each) for a subset of cases."""

    def run(name: str) -> CliRun:
        b, r = case_files[name]
        proc = fiat("verify", b, "--trust-root", r, "--json")
        return CliRun(proc.returncode, proc.stdout, proc.stderr)

    with ThreadPoolExecutor(max_workers=2) as pool:
        names = _real_cli_cases()
        return dict(zip(names, pool.map(run, names), strict=True))


def cli_result(name: str, cli: dict[str, CliRun], real_cli: dict[str, CliRun]) -> CliRun:
    """The batch run of a case, checked against the plain CLI run where there is one."""
    batch = cli[name]
    real = real_cli.get(name)
    if real is not None:
        assert (real.returncode, real.stdout) == (batch.returncode, batch.stdout), (real, batch)
        return real
    return batch


def describe(result: VerificationResult) -> str:
    return "\n".join(f"{s.status:4} {s.name}: {s.detail}" for s in result.steps)


def run_in_process(data: tuple[bytes, bytes]) -> VerificationResult:
    return verify(Bundle.parse(data[0]), TrustRoot.parse(data[1]))


def _cases(kind: str) -> list[Any]:
    def want(c: Case) -> bool:
        if kind == "valid":
            return c.step is None
        if kind == "malformed":
            return c.step == "malformed"
        return c.step is not None and c.step != "malformed"

    return [pytest.param(c, id=c.name) for c in CASES if want(c)]


# -- the tests -------------------------------------------------------------------------------


def test_corpus_covers_the_steps_it_should() -> None:
    named = {c.step for c in CASES}
    for step in STEPS:
        assert step in named, step


@pytest.mark.parametrize("c", _cases("valid"))
def test_valid_bundle_verifies(
    c: Case, inputs: dict[str, tuple[bytes, bytes]], cli: dict[str, CliRun], real_cli: dict[str, CliRun]
) -> None:
    result = run_in_process(inputs[c.name])
    assert result.verified, describe(result)
    assert [(s.name, s.status) for s in result.steps] == [(name, "pass") for name in STEPS]
    proc = cli_result(c.name, cli, real_cli)
    assert proc.returncode == EXIT_OK, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["verified"] is True and report["failedStep"] is None
    assert report["permit"] == result.permit_id
    assert [s["status"] for s in report["steps"]] == ["pass"] * len(STEPS)
    # The assurance level reached (docs/formats.md, "Witnesses and assurance"), alike in both.
    assert result.assurance is not None and report["assurance"] == result.assurance.to_json()
    if c.reason is not None:
        assert result.assurance.text == c.reason, result.assurance
        said = {s.name: s.detail for s in result.steps}
        assert c.reason in said["witness-quorum"] or c.reason in said["lineage"], said
    a = report["assurance"]
    assert a["level"] == ("witnessed" if a["witnessed"] else "log") and a["witnesses"] >= a["witnessed"]


@pytest.mark.parametrize("c", _cases("tamper"))
def test_tamper_fails_at_its_step(
    c: Case, inputs: dict[str, tuple[bytes, bytes]], cli: dict[str, CliRun], real_cli: dict[str, CliRun]
) -> None:
    assert c.step is not None
    result = run_in_process(inputs[c.name])
    failed = result.failed
    assert failed is not None and failed.name == c.step, describe(result)
    at = STEPS.index(c.step)
    assert [s.name for s in result.steps] == list(STEPS)
    assert all(s.status == "pass" for s in result.steps[:at]), describe(result)
    assert all(s.status == "skip" for s in result.steps[at + 1 :]), describe(result)
    if c.reason is not None:
        assert c.reason in failed.detail, describe(result)
    assert not result.verified
    proc = cli_result(c.name, cli, real_cli)
    assert proc.returncode == EXIT_FAILED, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["verified"] is False
    assert report["failedStep"] == c.step
    assert [(s["step"], s["status"]) for s in report["steps"]] == [(s.name, s.status) for s in result.steps]


@pytest.mark.parametrize("c", _cases("malformed"))
def test_unparseable_tamper_is_malformed(
    c: Case, inputs: dict[str, tuple[bytes, bytes]], cli: dict[str, CliRun], real_cli: dict[str, CliRun]
) -> None:
    with pytest.raises(MalformedError):
        Bundle.parse(inputs[c.name][0])
    proc = cli_result(c.name, cli, real_cli)
    assert proc.returncode == EXIT_INVALID, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["verified"] is False and report["failedStep"] == "bundle-format"
    assert report["error"].startswith("malformed ")


def test_cli_human_output(world: World, inputs: dict[str, tuple[bytes, bytes]]) -> None:
    d = world.tmp / "human"
    d.mkdir()
    good, bad = inputs["valid/child-with-lineage"], inputs["removed/receipt"]
    halted = inputs["valid/halted-by-a-revocation-in-the-bundle"]
    for name, (b, r) in (("good", good), ("bad", bad), ("halted", halted)):
        (d / f"{name}.json").write_bytes(b)
        (d / f"{name}.root.json").write_bytes(r)
    with ThreadPoolExecutor(2) as pool:
        ok, ko, stopped = pool.map(
            lambda n: fiat("verify", d / f"{n}.json", "--trust-root", d / f"{n}.root.json"), ("good", "bad", "halted")
        )
    assert ok.returncode == EXIT_OK, ok.stderr
    assert f"verified: execution {world.child.jti} completed (exit 0)" in ok.stdout.decode()
    assert "\nassurance: signed by the log\n" in ok.stdout.decode()
    assert ko.returncode == EXIT_FAILED, ko.stderr
    assert "NOT verified: failed at receipt" in ko.stdout.decode()
    # A halt verifies as a halt: the verdict never reads as a success.
    assert stopped.returncode == EXIT_OK, stopped.stderr
    verdict = stopped.stdout.decode().strip().splitlines()[-1]
    assert verdict.startswith("verified: halted at revocation (the permit was revoked: test)"), verdict


def test_cli_says_the_assurance_level(world: World, inputs: dict[str, tuple[bytes, bytes]]) -> None:
    d = world.tmp / "assurance"
    d.mkdir()
    for name in ("valid/cosigned-by-two-of-three", "witness/below-quorum"):
        b, r = inputs[name]
        stem = name.replace("/", "_")
        (d / f"{stem}.json").write_bytes(b)
        (d / f"{stem}.root.json").write_bytes(r)
    ok = fiat(
        "verify",
        d / "valid_cosigned-by-two-of-three.json",
        "--trust-root",
        d / "valid_cosigned-by-two-of-three.root.json",
    )
    assert ok.returncode == EXIT_OK, ok.stderr
    lines = ok.stdout.decode().splitlines()
    assert lines[-2] == "assurance: witnessed by 2 of 3 (the trust root requires 2)", lines[-3:]
    ko = fiat("verify", d / "witness_below-quorum.json", "--trust-root", d / "witness_below-quorum.root.json")
    assert ko.returncode == EXIT_FAILED
    out = ko.stdout.decode()
    assert "assurance: witnessed by 1 of 3 (the trust root requires 2)" in out
    assert "NOT verified: failed at witness-quorum" in out


def test_a_future_dated_cosignature_counts_once_its_time_has_come(inputs: dict[str, tuple[bytes, bytes]]) -> None:
    """Not counted while its timestamp is beyond the verifier's clock plus the skew; counted by a
    verifier whose clock has reached it (VerificationPolicy.now), the skew included."""
    b, r = inputs["witness/cosignature-dated-in-the-future"]
    bundle, root = Bundle.parse(b), TrustRoot.parse(r)
    stamps = {
        struct.unpack(">Q", sig.signature[:8])[0]
        for sig in note.parse(bundle.permit_proof.checkpoint).signatures
        if sig.name == "w2"
    }
    (ts,) = stamps
    for now, ok in ((ts - 6.0, False), (ts - 5.0, True), (ts + 100.0, True)):
        result = verify(bundle, root, VerificationPolicy(now=now))
        assert result.verified is ok, (now, describe(result))
        assert result.assurance is not None
        assert result.assurance.text == ("witnessed by 2 of 3" if ok else "witnessed by 1 of 3")


def test_authority_public_key_swapped_under_the_same_kid(world: World) -> None:
    """In memory only (a parsed trust root rejects a kid that is not its key's thumbprint)."""
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    root = with_key(world.root, world.authority_kid(), public_key=other)
    result = verify(world.base.bundle, root)
    assert result.failed is not None and result.failed.name == "permit-signature", describe(result)
    assert "does not verify" in result.failed.detail
    with pytest.raises(MalformedError, match="thumbprint"):
        TrustRoot.parse(json.dumps(root.to_json()).encode())


def test_every_permit_token_character_change_is_caught(world: World) -> None:
    """Each character of the compact JWS, replaced: malformed, or rejected at permit-signature."""
    bj = bj_of(world.base)
    token = str(bj["permit"]["token"])
    alphabet = "AQgw_-"  # base64url characters with different low and high bits
    outcomes: dict[str, int] = {}
    for pos in range(0, len(token), 3):
        if token[pos] == ".":
            continue
        ch = next(a for a in alphabet if a != token[pos])
        bj["permit"]["token"] = token[:pos] + ch + token[pos + 1 :]
        try:
            bundle = Bundle.parse(json.dumps(bj).encode())
        except MalformedError:
            outcomes["malformed"] = outcomes.get("malformed", 0) + 1
            continue
        result = verify(bundle, world.root)
        assert result.failed is not None and result.failed.name == "permit-signature", (pos, describe(result))
        outcomes["permit-signature"] = outcomes.get("permit-signature", 0) + 1
    assert outcomes.get("permit-signature", 0) > 100, outcomes


def test_every_statement_payload_bit_flip_is_caught(world: World) -> None:
    """Each payload byte of each statement, one bit flipped: malformed, or rejected at statement-signatures."""
    seen: dict[str, int] = {}
    for ex in (world.base, world.approved):
        bj = bj_of(ex)
        for i in range(len(bj["statements"])):
            original = bj["statements"][i]["envelope"]["payload"]
            n = len(base64.b64decode(original))
            for pos in range(0, n, 7):
                bj["statements"][i]["envelope"]["payload"] = flip_b64std(original, pos, 1 << (pos % 8))
                try:
                    bundle = Bundle.parse(json.dumps(bj).encode())
                except MalformedError:
                    seen["malformed"] = seen.get("malformed", 0) + 1
                    continue
                result = verify(bundle, world.root)
                assert result.failed is not None, (i, pos)
                assert result.failed.name == "statement-signatures", (i, pos, describe(result))
                seen["statement-signatures"] = seen.get("statement-signatures", 0) + 1
            bj["statements"][i]["envelope"]["payload"] = original
    assert seen.get("statement-signatures", 0) > 100 and seen.get("malformed", 0) > 10, seen


def test_rotation_trust_root_records_both_periods(world: World) -> None:
    root = TrustRoot.parse(world.rot_root)
    authorities = sorted(root.by_role("authority"), key=lambda k: k.valid_from)
    assert len(authorities) == 2
    old, new = authorities
    assert old.valid_until is not None and old.valid_until == new.valid_from
    assert new.valid_until is None
    assert old.kid == world.rot_pre.bundle.permit.header["kid"]
    assert new.kid == world.rot_post.bundle.permit.header["kid"]
    # The pre-rotation bundle needs the old key: without it, it no longer verifies.
    no_old = dataclasses.replace(root, keys=tuple(k for k in root.keys if k.kid != old.kid))
    result = verify(world.rot_pre.bundle, no_old)
    assert result.failed is not None and result.failed.name == "permit-signature"


def test_grandchild_lineage_verifies(world: World, tmp_path: Path) -> None:
    home = tmp_path / "home"
    root = make_execution(home)
    child = make_execution(home, parent=root.jti)
    grandchild = make_execution(home, parent=child.jti)
    assert [a.permit.claims["jti"] for a in grandchild.bundle.ancestors] == [child.jti, root.jti]
    result = verify(grandchild.bundle, grandchild.trust_root())
    assert result.verified, describe(result)


def test_trust_root_key_helpers_are_real(world: World) -> None:
    """Sanity of the corpus itself: the trust roots used are the home's, not hand-made."""
    exported = TrustRoot.parse(json.dumps(trust_root(world.cfg).to_json()).encode())
    assert exported == world.root
    witness_root = TrustRoot.parse(world.witness_root)
    assert witness_root.witness_quorum == 2
    assert {k.name for k in witness_root.by_role("witness")} == {"w1", "w2", "w3"}
    assert isinstance(world.root.find(world.extra_runtime[0], "runtime"), TrustedKey)


def test_fork_is_caught_at_the_forged_link(world: World) -> None:
    """In the fork, K → M (the real prefix, then the forged tree) verifies; M → N does not."""
    bj, root = fork(world)
    assert isinstance(bj, dict) and isinstance(root, TrustRoot)
    (k, m), (m2, n) = ((c["oldSize"], c["newSize"]) for c in bj["consistency"])
    assert m == m2 and k < m < n
    result = verify(Bundle.parse(json.dumps(bj).encode()), root)
    assert result.failed is not None and result.failed.name == "checkpoint-consistency", describe(result)
    assert result.failed.detail.startswith(f"{m} → {n}:"), result.failed.detail
    # Without the M → N proof, the gap is what is reported: K → M itself was accepted.
    del bj["consistency"][1]
    result = verify(Bundle.parse(json.dumps(bj).encode()), root)
    assert result.failed is not None
    assert result.failed.detail == f"no consistency proof from size {m} to {n} in the bundle", describe(result)
