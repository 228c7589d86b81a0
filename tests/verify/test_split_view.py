"""Split-view proofs (fiat.verify.split_view, docs/formats.md "Split-view proofs"): offline evidence
that a log signed two inconsistent checkpoints.

Real forks: two histories share a prefix, then diverge; each is a real Merkle tree
(``support.reference_merkle.MemoryTree``, the hash source the tiles serve) whose checkpoints are
signed by the same log key. A proof is built from the larger history's hashes, as a witness or a
guard does, and must verify; every tampering must be rejected at its named step
(``split-view-format`` / ``-signatures`` / ``-inconsistency``). The real CLI verifies one of each
kind against a real home's trust root and log key.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fiat.config import load_config
from fiat.errors import MalformedError
from fiat.formats.encoding import rfc3339
from fiat.formats.jws import jwk_thumbprint
from fiat.home import log_signer
from fiat.tlog import merkle, note
from fiat.tlog.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from fiat.verify import SPLIT_VIEW_MEDIA_TYPE, SplitViewProof, TrustedKey, TrustRoot, split_view, verify_split_view
from support.processes import fiat
from support.reference_merkle import MemoryTree

ORIGIN = "example.test/log"
SETTINGS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Log:
    signer: note.Signer
    root: TrustRoot
    key: Ed25519PrivateKey

    def sign(self, tree: MemoryTree, size: int | None = None) -> SignedCheckpoint:
        size = tree.size if size is None else size
        return sign_checkpoint(Checkpoint(ORIGIN, size, tree.root(size)), self.signer)


def make_log(origin: str = ORIGIN, key: Ed25519PrivateKey | None = None) -> Log:
    key = key or Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    tk = TrustedKey(jwk_thumbprint(pub), "log", origin, pub, 0.0)
    return Log(note.Signer(origin, key), TrustRoot("iss", "aud", origin, (tk,)), key)


LOG = make_log()


def fork(prefix: int, a_extra: int, b_extra: int) -> tuple[MemoryTree, MemoryTree]:
    """Two histories: ``prefix`` shared entries, then ``a_extra`` and ``b_extra`` of their own."""
    common = [f"entry {i}".encode() for i in range(prefix)]
    a = MemoryTree([*common, *(f"A {i}".encode() for i in range(a_extra))])
    b = MemoryTree([*common, *(f"B {i}".encode() for i in range(b_extra))])
    return a, b


def proof_of(log: Log, a: MemoryTree, b: MemoryTree, **kw: str) -> SplitViewProof:
    """What a witness exports: A's checkpoint, B's, and B's root at A's size with the proof to B."""
    small, large = (a, b) if a.size <= b.size else (b, a)
    old = small.size
    extra = {}
    if 0 < old < large.size:
        extra = {"old_root": large.root(old), "proof": large.consistency_proof(old, large.size)}
    return split_view.build(log.sign(a), log.sign(b), **extra, **kw)  # type: ignore[arg-type]


def check(proof: SplitViewProof | bytes, root: TrustRoot | None = None) -> tuple[str | None, str]:
    """(failed step or None, its detail or the summary)."""
    data = proof.encode() if isinstance(proof, SplitViewProof) else proof
    result = verify_split_view(data, root or LOG.root)
    assert [s.name for s in result.steps] == list(split_view.STEPS)
    failed = result.failed
    if failed is None:
        assert result.proven and result.summary
        return None, result.summary
    at = split_view.STEPS.index(failed.name)
    assert all(s.status == "pass" for s in result.steps[:at])
    assert all(s.status == "skip" for s in result.steps[at + 1 :])
    return failed.name, failed.detail


def doc(proof: SplitViewProof) -> dict[str, object]:
    return json.loads(proof.encode())


def enc(v: object) -> bytes:
    return json.dumps(v).encode()


# -- valid proofs of both kinds ---------------------------------------------------------------


def test_equal_sizes_two_roots() -> None:
    a, b = fork(5, 2, 2)
    assert check(proof_of(LOG, a, b)) == (None, "two roots signed for tree size 7")
    assert "consistency" not in doc(proof_of(LOG, a, b))


@pytest.mark.parametrize(("prefix", "a_extra", "b_extra"), [(2, 2, 5), (4, 0, 3), (3, 2, 9), (5, 1, 1000), (0, 6, 7)])
def test_different_sizes(prefix: int, a_extra: int, b_extra: int) -> None:
    """Old sizes 4 and 8 (powers of 2: the proof does not determine oldRoot) and 5, 6 (it does)."""
    a, b = fork(prefix, a_extra, b_extra)
    if a_extra == 0:  # A is a prefix of the common part: fork B's first entries instead
        a = MemoryTree([f"X {i}".encode() for i in range(prefix)])
    proof = proof_of(LOG, a, b, observed_by="witness-1", observed_at="2026-12-02T15:00:00Z")
    step, text = check(proof)
    assert step is None, text
    assert (
        text == f"checkpoint {b.size}'s history has another root at size {a.size} than the signed checkpoint {a.size}"
    )
    if a.size & (a.size - 1):
        assert merkle.old_root_from_consistency(a.size, b.size, b.root(), list(proof.proof)) == proof.old_root


def test_either_order_builds_the_same_proof() -> None:
    a, b = fork(3, 2, 6)
    extra = {"old_root": b.root(a.size), "proof": b.consistency_proof(a.size)}
    assert split_view.build(LOG.sign(b), LOG.sign(a), **extra) == split_view.build(LOG.sign(a), LOG.sign(b), **extra)  # type: ignore[arg-type]


def test_a_signed_empty_tree_with_another_root() -> None:
    bad = sign_checkpoint(Checkpoint(ORIGIN, 0, merkle.leaf_hash(b"x")), LOG.signer)
    proof = split_view.build(bad, LOG.sign(MemoryTree([b"a", b"b"])))
    assert check(proof)[0] is None
    good = split_view.build(LOG.sign(MemoryTree()), LOG.sign(MemoryTree([b"a"])))
    assert check(good) == ("split-view-inconsistency", "the empty tree is consistent with every tree: no split view")


def test_a_retired_log_key_vouches_only_up_to_its_max_tree_size() -> None:
    a, b = fork(5, 2, 2)
    tk = LOG.root.keys[0]
    assert check(proof_of(LOG, a, b), replace(LOG.root, keys=(replace(tk, max_tree_size=7),)))[0] is None
    step, detail = check(proof_of(LOG, a, b), replace(LOG.root, keys=(replace(tk, max_tree_size=6),)))
    assert step == "split-view-signatures" and "retired log key" in detail


# -- each tampering, at its step ------------------------------------------------------------------

A5, B9 = fork(3, 2, 6)
GOOD = proof_of(LOG, A5, B9)


def test_consistent_pair_presented_as_a_fork() -> None:
    honest = MemoryTree([f"e{i}".encode() for i in range(9)])
    proof = split_view.build(
        LOG.sign(honest, 5), LOG.sign(honest), old_root=honest.root(5), proof=honest.consistency_proof(5, 9)
    )
    assert check(proof) == ("split-view-inconsistency", "checkpoint 9 extends checkpoint 5: the two are consistent")
    same = split_view.build(LOG.sign(honest), LOG.sign(honest))
    assert check(same)[0] == "split-view-inconsistency" and "same root" in check(same)[1]


def test_old_root_equal_to_a_root() -> None:
    """Claiming B's history has A's root at A's size: the proof no longer leads to B's root."""
    step, detail = check(replace(GOOD, old_root=A5.root()))
    assert step == "split-view-inconsistency" and "does not verify" in detail


def test_every_byte_of_every_proof_hash_matters() -> None:
    for i, h in enumerate((GOOD.old_root or b"", *GOOD.proof)):
        for pos in range(0, 32, 5):
            flipped = bytes(x ^ (1 if j == pos else 0) for j, x in enumerate(h))
            bad = replace(GOOD, old_root=flipped) if i == 0 else replace(GOOD, proof=_with(GOOD.proof, i - 1, flipped))
            assert check(bad)[0] == "split-view-inconsistency", (i, pos)


def _with(hashes: Sequence[bytes], i: int, h: bytes) -> tuple[bytes, ...]:
    out = list(hashes)
    out[i] = h
    return tuple(out)


def test_proof_hashes_dropped_or_added() -> None:
    assert check(replace(GOOD, proof=GOOD.proof[:-1]))[0] == "split-view-inconsistency"
    assert check(replace(GOOD, proof=(*GOOD.proof, GOOD.proof[0])))[0] == "split-view-inconsistency"
    assert check(replace(GOOD, old_root=None, proof=())) == (
        "split-view-inconsistency",
        "checkpoints of different sizes need consistency evidence (oldRoot, proof)",
    )


def test_evidence_where_none_is_needed_is_refused() -> None:
    a, b = fork(5, 2, 2)
    equal = proof_of(LOG, a, b)
    bad = replace(equal, old_root=b.root(3), proof=tuple(b.consistency_proof(3, 7)))
    step, detail = check(bad)
    assert step == "split-view-inconsistency" and "only for checkpoints of different sizes" in detail


def test_checkpoint_text_edited() -> None:
    d = doc(GOOD)
    cps = d["checkpoints"]
    assert isinstance(cps, list)
    text = cps[1]
    lines = text.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # the size, the signature left as it was
    cps[1] = "\n".join(lines)
    step, detail = check(enc(d))
    assert step == "split-view-signatures" and detail.startswith("the second checkpoint:"), detail


def test_checkpoints_swapped() -> None:
    d = doc(GOOD)
    cps = d["checkpoints"]
    assert isinstance(cps, list)
    d["checkpoints"] = [cps[1], cps[0]]
    assert check(enc(d)) == ("split-view-inconsistency", "the first checkpoint must be the smaller tree")


def test_signed_by_another_key() -> None:
    other = make_log()
    a, b = fork(5, 2, 2)
    mixed = split_view.build(LOG.sign(a), other.sign(b))
    step, detail = check(mixed)
    assert step == "split-view-signatures" and "the second checkpoint" in detail
    # Both by a key the trust root does not name: proves nothing about this log.
    assert check(proof_of(other, a, b))[0] == "split-view-signatures"


def test_wrong_origin() -> None:
    elsewhere = make_log("elsewhere.test/log")
    a, b = fork(5, 2, 2)
    proof = split_view.build(_signed(elsewhere, a), _signed(elsewhere, b))
    step, detail = check(proof)
    assert step == "split-view-signatures" and "not the trust root's log" in detail
    # The document's origin relabelled: still refused (its checkpoints are another log's).
    relabelled = replace(proof, origin=ORIGIN)
    assert check(relabelled)[0] == "split-view-signatures"
    # Checkpoints whose origin line is another log's, signed with this log's key under that name.
    forged = Log(note.Signer("elsewhere.test/log", LOG.key), LOG.root, LOG.key)
    step, _ = check(replace(split_view.build(_signed(forged, a), _signed(forged, b)), origin=ORIGIN))
    assert step == "split-view-signatures"


def _signed(log: Log, tree: MemoryTree) -> SignedCheckpoint:
    return sign_checkpoint(Checkpoint(log.signer.name, tree.size, tree.root()), log.signer)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.update(extra=1), "unknown member 'extra'"),
        (lambda d: d.update(mediaType="application/json"), "mediaType"),
        (lambda d: d.update(checkpoints=d["checkpoints"][:1]), "two signed notes"),
        (lambda d: d.update(origin=""), "origin"),
        (lambda d: d["consistency"].update(more=[]), "exactly oldRoot and proof"),
        (lambda d: d["consistency"].update(oldRoot="AAAA"), "32 bytes"),
        (lambda d: d["consistency"].update(proof=["not base64!"]), "base64"),
        (lambda d: d["consistency"].update(proof=[d["consistency"]["oldRoot"]] * 65), "at most 64"),
        (lambda d: d.update(observedBy=7), "strings"),
    ],
)
def test_malformed_documents(change: object, fragment: str) -> None:
    d = doc(GOOD)
    change(d)  # type: ignore[operator]
    step, detail = check(enc(d))
    assert step == "split-view-format" and fragment in detail, detail


@pytest.mark.parametrize("member", ["origin", "observedBy", "observedAt", "checkpoints"])
def test_lone_surrogates_are_malformed_not_a_crash(member: str) -> None:
    d = doc(GOOD)
    raw = json.dumps(d)
    if member == "checkpoints":
        raw = raw.replace('"checkpoints": ["', '"checkpoints": ["\\ud800', 1)
    else:
        raw = raw.replace('"mediaType"', f'"{member}": "x\\udc00", "mediaType"', 1) if member not in d else raw
        raw = raw.replace(f'"{member}": "', f'"{member}": "\\ud800', 1)
    step, detail = check(raw.encode())
    assert step == "split-view-format" and "surrogate" in detail, detail


def test_duplicate_json_keys_are_refused() -> None:
    raw = GOOD.encode().decode()
    dup = raw.replace('"origin": ', f'"origin": "{ORIGIN}", "origin": ', 1)
    assert check(dup.encode())[0] == "split-view-format"
    escaped = raw.replace('"origin": ', f'"origin": "{ORIGIN}", "\\u006frigin": ', 1)
    assert check(escaped.encode())[0] == "split-view-format"
    with pytest.raises(MalformedError):
        SplitViewProof.parse(dup.encode())


def test_unsigned_observations_change_nothing() -> None:
    d = doc(GOOD)
    d["observedBy"], d["observedAt"] = "someone else", rfc3339(0)
    assert check(enc(d))[0] is None
    assert d["mediaType"] == SPLIT_VIEW_MEDIA_TYPE


# -- properties ---------------------------------------------------------------------------------------


@SETTINGS
@given(
    prefix=st.integers(0, 40),
    a_extra=st.integers(1, 40),
    b_extra=st.integers(1, 80),
    flip=st.data(),
)
def test_real_forks_always_verify_and_every_proof_byte_matters(
    prefix: int, a_extra: int, b_extra: int, flip: st.DataObject
) -> None:
    a, b = fork(prefix, a_extra, b_extra)
    proof = proof_of(LOG, a, b)
    assert check(proof)[0] is None
    hashes = [proof.old_root, *proof.proof] if proof.old_root is not None else []
    assume(hashes)
    i = flip.draw(st.integers(0, len(hashes) - 1))
    pos = flip.draw(st.integers(0, 31))
    bit = flip.draw(st.integers(0, 7))
    h = bytearray(hashes[i] or b"")
    h[pos] ^= 1 << bit
    bad = replace(proof, old_root=bytes(h)) if i == 0 else replace(proof, proof=_with(proof.proof, i - 1, bytes(h)))
    assert check(bad)[0] == "split-view-inconsistency"


@SETTINGS
@given(size=st.integers(1, 120), old=st.integers(1, 119))
def test_one_history_never_proves_a_fork(size: int, old: int) -> None:
    assume(old < size)
    tree = MemoryTree([f"e{i}".encode() for i in range(size)])
    proof = split_view.build(
        LOG.sign(tree, old), LOG.sign(tree), old_root=tree.root(old), proof=tree.consistency_proof(old, size)
    )
    assert check(proof)[0] == "split-view-inconsistency"


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=400))
def test_parse_never_crashes_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(MalformedError):
        SplitViewProof.parse(data)
    result = verify_split_view(data, LOG.root)
    assert not result.proven


@settings(max_examples=200, deadline=None, database=None)
@given(st.data())
def test_parse_never_crashes_on_mutated_documents(data: st.DataObject) -> None:
    raw = bytearray(GOOD.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    result = verify_split_view(bytes(raw), LOG.root)
    assert result.steps and (result.proven or result.failed is not None)


# -- the real CLI against a real home's log key ---------------------------------------------------------


def test_cli_proves_both_kinds_and_refuses_a_tampered_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert fiat("init", "--home", home).returncode == 0
    cfg = load_config(home)
    assert fiat("trust-root", "export", "--home", home, "-o", tmp_path / "root.json").returncode == 0
    signer = log_signer(cfg)
    origin = cfg.log.origin

    def signed(tree: MemoryTree) -> SignedCheckpoint:
        return sign_checkpoint(Checkpoint(origin, tree.size, tree.root()), signer)

    a, b = fork(3, 3, 3)
    equal = split_view.build(signed(a), signed(b), observed_by="guard vm-1", observed_at="2026-12-02T15:00:00Z")
    a6, b11 = fork(4, 2, 7)
    grown = split_view.build(signed(a6), signed(b11), old_root=b11.root(6), proof=b11.consistency_proof(6))
    for name, proof in (("equal", equal), ("grown", grown)):
        (tmp_path / f"{name}.json").write_bytes(proof.encode())
    tampered = doc(grown)
    cons = tampered["consistency"]
    assert isinstance(cons, dict)
    cons["oldRoot"] = base64.b64encode(a6.root()).decode()
    (tmp_path / "tampered.json").write_bytes(enc(tampered))
    (tmp_path / "broken.json").write_bytes(GOOD.encode().replace(b'"origin"', b'"origin": "x", "origin"', 1))
    root = tmp_path / "root.json"

    text = fiat("verify", tmp_path / "equal.json", "--trust-root", root)
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert f"PROVEN: the log {origin} signed two inconsistent checkpoints: two roots signed for tree size 6" in out
    assert "observed by guard vm-1 at 2026-12-02T15:00:00Z (unsigned, information only)" in out
    js = fiat("verify", tmp_path / "grown.json", "--trust-root", root, "--json")
    assert js.returncode == 0, js.stderr
    report = json.loads(js.stdout)
    assert report["verified"] is True and report["proves"] == "split-view" and report["origin"] == origin
    assert [c["size"] for c in report["checkpoints"]] == [6, 11]
    assert [s["status"] for s in report["steps"]] == ["pass"] * 3
    bad = fiat("verify", tmp_path / "tampered.json", "--trust-root", root, "--json")
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stdout)["failedStep"] == "split-view-inconsistency"
    assert "NOT proven" in fiat("verify", tmp_path / "tampered.json", "--trust-root", root).stdout.decode()
    broken = fiat("verify", tmp_path / "broken.json", "--trust-root", root, "--json")
    assert broken.returncode == 2, broken.stderr
    assert json.loads(broken.stdout)["failedStep"] == "split-view-format"
    # Against another log's trust root, the same proof proves nothing.
    other = tmp_path / "other"
    assert fiat("init", "--home", other, "--origin", "elsewhere.example/log").returncode == 0
    assert fiat("trust-root", "export", "--home", other, "-o", tmp_path / "other.json").returncode == 0
    elsewhere = fiat("verify", tmp_path / "equal.json", "--trust-root", tmp_path / "other.json", "--json")
    assert elsewhere.returncode == 1
    assert json.loads(elsewhere.stdout)["failedStep"] == "split-view-signatures"


# -- end to end: a real witness refuses a fork, exports the proof, fiat verify proves it -------------------


def test_a_fork_refused_by_a_real_witness_is_proven_offline(tmp_path: Path) -> None:
    """A real home's log key signs two histories; a real ``fiat witness serve`` cosigns the first and
    refuses the second (422); ``fiat witness split-views`` exports what it saw, and ``fiat verify``
    proves each file against the home's trust root, offline — and refuses a tampered copy."""
    import httpx

    from fiat.tlog.witness import AddCheckpointRequest
    from support.witnesses import running, start_witness

    home = tmp_path / "home"
    assert fiat("init", "--home", home).returncode == 0
    cfg = load_config(home)
    assert fiat("trust-root", "export", "--home", home, "-o", tmp_path / "root.json").returncode == 0
    signer, origin = log_signer(cfg), cfg.log.origin
    vkey = fiat("log", "vkey", "--home", home).stdout.decode().strip()

    def signed(tree: MemoryTree, size: int | None = None) -> bytes:
        size = tree.size if size is None else size
        return note.sign(Checkpoint(origin, size, tree.root(size)).text(), [signer])

    common = [f"shared {i}".encode() for i in range(4)]
    honest = MemoryTree([*common, b"h4", b"h5"])  # size 6: not a power of 2
    forked = MemoryTree([*common, *(f"f{i}".encode() for i in range(4, 11))])  # size 11
    with running([start_witness(tmp_path, "witness.test/w1", vkey)]) as (w,), httpx.Client(base_url=w.url) as c:
        first = c.post("/add-checkpoint", content=AddCheckpointRequest(0, (), signed(honest)).encode())
        assert first.status_code == 200, first.text
        grown = AddCheckpointRequest(6, tuple(forked.consistency_proof(6)), signed(forked))
        assert c.post("/add-checkpoint", content=grown.encode()).status_code == 422
        same_size = AddCheckpointRequest(6, (), signed(forked, 6))
        assert c.post("/add-checkpoint", content=same_size.encode()).status_code == 422
        out = tmp_path / "proofs"
        exported = fiat("witness", "split-views", "--home", w.home, "--out", out, "--json")
        assert exported.returncode == 0, exported.stderr
    files = sorted(out.glob("*.json"))
    assert len(files) == 2, exported.stdout
    summaries = set()
    for f in files:
        proc = fiat("verify", f, "--trust-root", tmp_path / "root.json", "--json")
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        report = json.loads(proc.stdout)
        assert report["verified"] is True and report["observedBy"] == "witness.test/w1", report
        summaries.add(report["summary"])
        text = fiat("verify", f, "--trust-root", tmp_path / "root.json").stdout.decode()
        assert f"PROVEN: the log {origin} signed two inconsistent checkpoints: " in text
    assert summaries == {
        "two roots signed for tree size 6",
        "checkpoint 11's history has another root at size 6 than the signed checkpoint 6",
    }
    for f in files:
        d = json.loads(f.read_bytes())
        if "consistency" in d:
            d["consistency"]["oldRoot"] = base64.b64encode(honest.root()).decode()
            f.write_bytes(enc(d))
            proc = fiat("verify", f, "--trust-root", tmp_path / "root.json", "--json")
            assert proc.returncode == 1 and json.loads(proc.stdout)["failedStep"] == "split-view-inconsistency"
