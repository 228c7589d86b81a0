"""Which refusals prove a fork by themselves (fiat.witness.split_views), in process."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

from fiat.persist.sqlite.witness import SQLiteWitnessStore
from fiat.tlog import cosignature, merkle, note
from fiat.tlog.checkpoint import Checkpoint
from fiat.tlog.witness import AddCheckpointRequest
from fiat.verify.split_view import verify
from fiat.witness.core import Witness
from fiat.witness.split_views import export
from witness.conftest import MemoryLog


def _witness(tmp_path: Path, log: MemoryLog) -> Witness:
    keys = {log.origin: [log.signer.verifier]}
    return Witness("w.test/e", Ed25519PrivateKey.generate(), None, lambda: keys, SQLiteWitnessStore(tmp_path / "w.db"))


@pytest.mark.parametrize("shared", [3, 5, 6, 7, 9, 12])
def test_a_fork_after_a_non_power_of_2_size_is_proven_else_said_not_to_be(tmp_path: Path, shared: int) -> None:
    a = MemoryLog(entries=shared)
    w = _witness(tmp_path, a)
    assert w.add_checkpoint(a.request(0)).status == 200
    # B rewrote the last shared entry: its history differs at every size from `shared`.
    b2 = MemoryLog(a.origin, a.key)
    b2.entries = [*a.entries[:-1], b"rewritten"]
    b2.tree = type(a.tree)(b2.entries)
    b2.grow(4, b"B2")
    out = w.add_checkpoint(b2.request(shared))
    assert out.status == 422
    (refusal,) = w.store.refusals()
    result = export(refusal, "w.test/e")
    if shared & (shared - 1) == 0:
        assert result.proof is None and "power of 2" in result.why_not
    else:
        assert result.proof is not None, result.why_not
        proven = verify(result.proof, [a.signer.verifier])
        assert f"another root at size {shared}" in proven.summary


def test_refusals_that_are_no_fork(tmp_path: Path) -> None:
    log = MemoryLog(entries=6)
    w = _witness(tmp_path, log)
    # A non-empty proof from 0 with nothing cosigned yet: no checkpoint to compare with.
    bad = AddCheckpointRequest(0, tuple(log.tree.consistency_proof(3, 6)), log.checkpoint()).encode()
    assert w.add_checkpoint(bad).status == 422
    assert (
        "no checkpoint" in export(w.store.refusals()[0], "w").why_not
        or "cosigned no" in export(w.store.refusals()[0], "w").why_not
    )
    assert w.add_checkpoint(log.request(0, 3)).status == 200
    # A garbage proof from 3 (a non-power-of-2 size) that does not lead to the new root: no evidence.
    garbage = AddCheckpointRequest(3, (bytes(32), bytes(32)), log.checkpoint()).encode()
    assert w.add_checkpoint(garbage).status == 422
    last = w.store.refusals()[-1]
    assert export(last, "w").proof is None and "does not lead" in export(last, "w").why_not


def test_an_empty_tree_with_another_root_is_proven_against_the_cosigned_empty_tree(tmp_path: Path) -> None:
    log = MemoryLog(entries=0)
    w = _witness(tmp_path, log)
    assert w.add_checkpoint(log.request(0)).status == 200  # the empty tree, properly
    bad = note.sign(Checkpoint(log.origin, 0, merkle.leaf_hash(b"x")).text(), [log.signer])
    assert w.add_checkpoint(AddCheckpointRequest(0, (), bad).encode()).status == 422
    result = export(w.store.refusals()[0], "w")
    assert result.proof is not None
    assert verify(result.proof, [log.signer.verifier]).summary == "two roots signed for tree size 0"


def test_extension_lines_are_cosigned_by_ed25519_and_left_out_by_mldsa(tmp_path: Path) -> None:
    """tlog-cosignature: extension lines "MUST be included in the cosigned message" (Ed25519);
    "checkpoint extension lines are not included in the signed message for ML-DSA-44"."""
    log = MemoryLog(entries=3)
    ed, ml = Ed25519PrivateKey.generate(), MLDSA44PrivateKey.generate()
    keys = {log.origin: [log.signer.verifier]}
    w = Witness("w.test/ext", ed, ml, lambda: keys, SQLiteWitnessStore(tmp_path / "w.db"))
    cp = Checkpoint(log.origin, 3, log.tree.root(3), ("ext line one",))
    out = w.add_checkpoint(AddCheckpointRequest(0, (), note.sign(cp.text(), [log.signer])).encode())
    assert out.status == 200
    parsed = note.parse(cp.text().encode() + b"\n" + out.body)
    ed_pub, ml_pub = ed.public_key().public_bytes_raw(), ml.public_key().public_bytes_raw()
    assert cosignature.verified_cosigners(parsed, [("w.test/ext", ed_pub)])
    plain = note.parse(Checkpoint(log.origin, 3, log.tree.root(3)).text().encode() + b"\n" + out.body)
    assert not cosignature.verified_cosigners(plain, [("w.test/ext", ed_pub)])  # the extension is signed
    assert cosignature.verified_mldsa_cosigners(plain, log.origin, 3, log.tree.root(3), [("w.test/ext", ml_pub)])
