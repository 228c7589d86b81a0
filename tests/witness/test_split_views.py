"""A forked log (one key, two histories in two real log stores) is caught and proven by the witness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.errors import MalformedError, VerificationError
from fiat.persist.sqlite.log import SQLiteLogStore
from fiat.prove.log import TransparencyLog
from fiat.tlog import note
from fiat.tlog.witness import AddCheckpointRequest
from fiat.verify.split_view import SplitViewProof, verify
from support.processes import fiat_text, ok
from support.witnesses import WitnessProc, start_witness


def _log(path: Path, signer: note.Signer) -> TransparencyLog:
    log = TransparencyLog(SQLiteLogStore(path), signer)
    log.start()
    return log


def _append(log: TransparencyLog, entries: list[bytes]) -> bytes:
    note_bytes = b""
    for e in entries:
        note_bytes = log.append(e).checkpoint.note_bytes  # one batch each: one checkpoint per size
    return note_bytes


def _submit(w: WitnessProc, log: TransparencyLog, old: int, checkpoint: bytes) -> httpx.Response:
    size = int(checkpoint.split(b"\n")[1])
    proof = log.consistency_proof(old, size) if 0 < old < size else []
    return httpx.post(w.url + "/add-checkpoint", content=AddCheckpointRequest(old, tuple(proof), checkpoint).encode())


@pytest.fixture
def forks(tmp_path: Path) -> Iterator[tuple[note.Signer, TransparencyLog, TransparencyLog]]:
    signer = note.Signer("fork.test/log", Ed25519PrivateKey.generate())
    a, b = _log(tmp_path / "a.db", signer), _log(tmp_path / "b.db", signer)
    try:
        yield signer, a, b
    finally:
        a.close()
        b.close()


def test_a_forked_log_is_refused_recorded_and_proven(
    tmp_path: Path, forks: tuple[note.Signer, TransparencyLog, TransparencyLog]
) -> None:
    signer, a, b = forks
    shared = [b"shared 0", b"shared 1", b"shared 2"]
    _append(a, shared)
    _append(b, shared)
    a5 = _append(a, [b"A 3", b"A 4"])
    b5 = _append(b, [b"B 3", b"B 4"])
    b6 = _append(b, [b"B 5"])
    # A second pair of forks whose common size is a power of 2: not provable from the request alone.
    signer2 = note.Signer("fork.test/other", Ed25519PrivateKey.generate())
    c, d = _log(tmp_path / "c.db", signer2), _log(tmp_path / "d.db", signer2)
    w = start_witness(tmp_path, "witness.test/forks", [signer.verifier.encode(), signer2.verifier.encode()])
    try:
        _append(c, [b"x 0"])
        _append(d, [b"x 0"])
        c4 = _append(c, [b"C 1", b"C 2", b"C 3"])
        d6 = _append(d, [b"D 1", b"D 2", b"D 3", b"D 4", b"D 5"])

        # Side A is cosigned; side B is refused with 422 (its proof from 5 does not reach A's root at 5).
        assert _submit(w, a, 0, a5).status_code == 200
        r = _submit(w, b, 5, b6)
        assert r.status_code == 422 and "does not verify" in r.text
        r = _submit(w, b, 5, b5)
        assert r.status_code == 422 and "another root hash" in r.text
        assert _submit(w, b, 5, b5).status_code == 422  # a repeat is recorded once
        assert _submit(w, c, 0, c4).status_code == 200
        assert _submit(w, d, 4, d6).status_code == 422
        # B's checkpoints never displaced A's.
        assert _submit(w, a, 5, a5).status_code == 200

        status = json.loads(ok(fiat_text("witness", "status", "--home", w.home, "--json")).stdout)
        refused = {entry["origin"]: entry["refused"] for entry in status["logs"]}
        assert refused == {"fork.test/log": 2, "fork.test/other": 1}
        assert {entry["origin"]: entry["size"] for entry in status["logs"]} == {
            "fork.test/log": 5,
            "fork.test/other": 4,
        }

        out_dir = tmp_path / "proofs"
        p = ok(fiat_text("witness", "split-views", "--home", w.home, "--out", out_dir, "--json"))
        result = json.loads(p.stdout)
        assert len(result["proofs"]) == 2, result
        (unproven,) = result["unproven"]
        assert unproven["origin"] == "fork.test/other"
        assert "cannot be proven from this request alone" in unproven["whyNot"] and "power of 2" in unproven["whyNot"]
        summaries = sorted(x["summary"] for x in result["proofs"])
        assert summaries == sorted(
            [
                "two roots signed for tree size 5",
                "checkpoint 6's history has another root at size 5 than the signed checkpoint 5",
            ]
        )
        text = ok(fiat_text("witness", "split-views", "--home", w.home, "--out", out_dir)).stdout
        assert "split view of fork.test/log" in text and "no proof" in text

        # Each exported proof verifies offline with nothing but the log's key.
        for item in result["proofs"]:
            data = Path(item["file"]).read_bytes()
            proof = SplitViewProof.parse(data)
            assert proof.observed_by == "witness.test/forks"
            proven = verify(proof, [signer.verifier])
            assert proven.summary == item["summary"]
            _tampered_proofs_are_rejected(data, signer, a5)
    finally:
        w.stop()
        c.close()
        d.close()


def _tampered_proofs_are_rejected(data: bytes, signer: note.Signer, honest: bytes) -> None:
    doc = json.loads(data)
    cases: list[dict[str, object]] = []
    if "consistency" in doc:
        root = bytearray(note.b64decode_strict(doc["consistency"]["oldRoot"], "t"))
        root[0] ^= 1
        cases.append({**doc, "consistency": {**doc["consistency"], "oldRoot": note.b64(bytes(root))}})
        cases.append({**doc, "consistency": {**doc["consistency"], "proof": doc["consistency"]["proof"][1:]}})
    first = doc["checkpoints"][0]
    forged = first.replace("\n5\n", "\n4\n", 1)  # the text changed under the log's signature
    cases.append({**doc, "checkpoints": [forged, doc["checkpoints"][1]]})
    cases.append({**doc, "checkpoints": [honest.decode(), honest.decode()]})  # one history twice
    other = note.Signer(signer.name, Ed25519PrivateKey.generate())  # a key the trust root does not name
    resigned = note.sign(note.parse(doc["checkpoints"][1].encode()).text, [other]).decode()
    cases.append({**doc, "checkpoints": [doc["checkpoints"][0], resigned]})
    for case in cases:
        with pytest.raises((VerificationError, MalformedError)):
            verify(SplitViewProof.parse(json.dumps(case).encode()), [signer.verifier])
    assert verify(SplitViewProof.parse(data), [signer.verifier])  # the untouched proof still verifies


def test_split_views_without_refusals(tmp_path: Path) -> None:
    w = start_witness(tmp_path, "witness.test/quiet", None)
    try:
        p = ok(fiat_text("witness", "split-views", "--home", w.home, "--json"))
        assert json.loads(p.stdout) == {"proofs": [], "unproven": [], "dropped": {}}
        assert "no refused checkpoints" in ok(fiat_text("witness", "split-views", "--home", w.home)).stdout
    finally:
        w.stop()
