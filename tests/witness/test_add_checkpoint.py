"""Every status rule of C2SP tlog-witness §add-checkpoint, against a real ``fiat witness serve``."""

from __future__ import annotations

import base64

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.tlog import note, witness
from fiat.tlog.checkpoint import Checkpoint
from fiat.tlog.witness import AddCheckpointRequest
from support.witnesses import WitnessProc
from witness.conftest import MemoryLog, cosigners, post


@pytest.fixture
def log(witness_proc: WitnessProc) -> MemoryLog:
    """A fresh log of 7 entries the shared witness cosigns."""
    m = MemoryLog(entries=7)
    witness_proc.add_log(m.vkey)
    return m


def _size_body(r: httpx.Response) -> int:
    assert r.headers["content-type"] == witness.SIZE_MEDIA_TYPE, r.headers
    return witness.parse_size(r.content)


def test_a_first_checkpoint_is_cosigned_with_ed25519_and_mldsa(
    client: httpx.Client, witness_proc: WitnessProc, log: MemoryLog
) -> None:
    r = post(client, log.request(0))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    lines = r.content.decode().splitlines(keepends=True)
    assert len(lines) == 2 and all(line.startswith("\u2014 witness.test/shared ") for line in lines)
    ed, ml = cosigners(witness_proc, log.checkpoint_text(), r.content)
    assert len(ed) == 1 and len(ml) == 1
    assert ed[0][1] > 0 and ed[0][1] == ml[0][1]  # "the timestamp MUST NOT be zero"


def test_the_next_checkpoint_needs_the_latest_size_and_a_proof(client: httpx.Client, log: MemoryLog) -> None:
    assert post(client, log.request(0, 5)).status_code == 200
    log.grow(6)
    r = post(client, log.request(5))
    assert r.status_code == 200, r.text
    # The same checkpoint again (old size = size, same root, no proof): cosigned afresh.
    assert post(client, log.request(log.tree.size)).status_code == 200


def test_409_conflict_carries_the_latest_size_as_text_x_tlog_size(client: httpx.Client, log: MemoryLog) -> None:
    r = post(client, log.request(3))  # never cosigned: the latest size is 0
    assert r.status_code == 409
    assert r.content == b"0\n" and _size_body(r) == 0
    assert post(client, log.request(0, 4)).status_code == 200
    r = post(client, log.request(0))  # a client without state asks with 0
    assert r.status_code == 409 and r.content == b"4\n" and _size_body(r) == 4
    r = post(client, log.request(2))
    assert r.status_code == 409 and _size_body(r) == 4


def test_400_when_the_old_size_exceeds_the_checkpoint_size(client: httpx.Client, log: MemoryLog) -> None:
    body = AddCheckpointRequest(9, (), log.checkpoint(7)).encode()
    r = post(client, body)
    assert r.status_code == 400
    assert "old size 9 is larger than the checkpoint's size 7" in r.text


def test_404_for_an_unknown_origin(client: httpx.Client) -> None:
    stranger = MemoryLog(entries=2)  # never added to the witness
    r = post(client, stranger.request(0))
    assert r.status_code == 404
    assert stranger.origin in r.text


def test_403_without_a_signature_from_a_trusted_key(client: httpx.Client, log: MemoryLog) -> None:
    impostor = note.Signer(log.origin, Ed25519PrivateKey.generate())  # the origin's name, another key
    body = AddCheckpointRequest(0, (), note.sign(log.checkpoint_text(), [impostor])).encode()
    r = post(client, body)
    assert r.status_code == 403
    assert "no signature from a trusted key" in r.text


def test_403_when_a_trusted_keys_signature_line_does_not_verify(client: httpx.Client, log: MemoryLog) -> None:
    good = note.parse(log.checkpoint())
    sig = good.signatures[0]
    bad = note.Signature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    other = note.Signer("other.test/key", Ed25519PrivateKey.generate())
    # A valid signature from an unknown key next to it changes nothing: the note is malformed.
    text = good.text
    forged = note.Note(text, (bad, note.Signature(other.name, other.key_id, other.sign(text.encode())))).encode()
    r = post(client, AddCheckpointRequest(0, (), forged).encode())
    assert r.status_code == 403
    assert "does not verify" in r.text
    # And a good signature next to the bad one does not rescue it either.
    both = note.Note(text, (*good.signatures, bad)).encode()
    assert post(client, AddCheckpointRequest(0, (), both).encode()).status_code == 403


def test_unknown_signatures_are_ignored(client: httpx.Client, witness_proc: WitnessProc, log: MemoryLog) -> None:
    extra = [
        note.Signer("someone.test/else", Ed25519PrivateKey.generate()),
        note.Signer("a.test/b", Ed25519PrivateKey.generate()),
    ]
    r = post(client, log.request(0, checkpoint=log.checkpoint(extra=extra)))
    assert r.status_code == 200, r.text
    served = client.get(witness.checkpoint_path(log.origin))
    assert served.status_code == 200
    names = [s.name for s in note.parse(served.content).signatures]
    assert names.count(log.origin) == 1 and "someone.test/else" not in names  # only what it verified
    assert names.count(witness_proc.name) == 2


def test_422_same_size_with_another_root(client: httpx.Client, log: MemoryLog) -> None:
    assert post(client, log.request(0)).status_code == 200
    other = MemoryLog(log.origin, log.key)  # the same log key, another history
    other.grow(log.tree.size, b"other")
    r = post(client, other.request(log.tree.size))
    assert r.status_code == 422
    assert "another root hash" in r.text


def test_422_a_non_empty_proof_with_old_size_zero(client: httpx.Client, log: MemoryLog) -> None:
    proof = tuple(log.tree.consistency_proof(3, 7))
    r = post(client, AddCheckpointRequest(0, proof, log.checkpoint()).encode())
    assert r.status_code == 422
    assert "old size is 0" in r.text


def test_422_a_size_zero_checkpoint_with_a_non_empty_root(client: httpx.Client, log: MemoryLog) -> None:
    text = Checkpoint(log.origin, 0, log.tree.root(3)).text()
    r = post(client, AddCheckpointRequest(0, (), note.sign(text, [log.signer])).encode())
    assert r.status_code == 422
    assert "size 0 must have the root of the empty tree" in r.text
    # The empty tree with the empty root is fine.
    assert post(client, AddCheckpointRequest(0, (), log.checkpoint(0)).encode()).status_code == 200


def test_422_a_consistency_proof_that_does_not_verify(client: httpx.Client, log: MemoryLog) -> None:
    assert post(client, log.request(0, 3)).status_code == 200
    proof = list(log.tree.consistency_proof(3, 7))
    proof[0] = bytes(32)
    r = post(client, AddCheckpointRequest(3, tuple(proof), log.checkpoint()).encode())
    assert r.status_code == 422
    assert "consistency proof from size 3 to 7 does not verify" in r.text
    # No proof at all between different sizes is no proof either.
    assert post(client, AddCheckpointRequest(3, (), log.checkpoint()).encode()).status_code == 422
    # A proof between equal sizes must be empty.
    extra = AddCheckpointRequest(3, (bytes(32),), log.checkpoint(3)).encode()
    assert post(client, extra).status_code == 422
    assert post(client, log.request(3)).status_code == 200  # the right proof still works


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 0\n",  # no empty line, no checkpoint
        b"old 0\n\n",  # no checkpoint
        b"old 01\n\nx\n",  # leading zero
        b"old -1\n\nx\n",
        b"Old 0\n\nx\n",
        b"old  0\n\nx\n",
        b"old 0\nnot base64!\n\nx\n",
        b"old 0\n" + base64.b64encode(bytes(31)) + b"\n\nx\n",  # a 31-byte hash
        b"old 0\n" + b"".join(base64.b64encode(bytes(32)) + b"\n" for _ in range(64)) + b"\nx\n",  # 64 lines
        b"old 99999999999999999999\n\nx\n",
        b"\xff\xfe\n\nx\n",
    ],
)
def test_400_for_malformed_bodies(client: httpx.Client, body: bytes) -> None:
    r = post(client, body)
    assert r.status_code == 400, (body, r.status_code, r.text)
    assert r.text.startswith("malformed") and r.text.endswith("\n")


def test_400_for_a_checkpoint_that_is_not_a_signed_checkpoint(client: httpx.Client, log: MemoryLog) -> None:
    for cp in (
        b"not a note",
        log.checkpoint_text().encode() + b"\n",  # no signature
        b"origin\n07\n" + base64.b64encode(bytes(32)) + b"\n\n\xe2\x80\x94 origin AAAAAAA=\n",
        note.sign("only-an-origin\n", [log.signer]),
    ):
        r = post(client, b"old 0\n\n" + cp)
        assert r.status_code == 400, (cp, r.text)


def test_other_methods_and_paths(client: httpx.Client) -> None:
    assert client.get("/add-checkpoint").status_code == 405
    assert client.get("/nothing-here").status_code == 404


def test_413_for_a_huge_body(client: httpx.Client) -> None:
    r = post(client, b"old 0\n\n" + b"x" * (witness.MAX_REQUEST_SIZE + 10))
    assert r.status_code == 413


def test_one_connection_serves_many_requests(witness_proc: WitnessProc, log: MemoryLog) -> None:
    """tlog-witness: witnesses SHOULD support keep-alive connections."""
    with httpx.Client(base_url=witness_proc.url, timeout=10) as c:
        for size in range(1, 8):
            old = size - 1
            r = c.post("/add-checkpoint", content=log.request(old, size))
            assert r.status_code == 200, r.text
            assert r.headers.get("connection", "").lower() != "close"
        assert c.get("/").status_code == 200
