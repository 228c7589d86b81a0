"""Shared pieces of the witness tests: logs built in memory, requests, one real witness per module."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.tlog import cosignature, note
from fiat.tlog.checkpoint import Checkpoint
from fiat.tlog.witness import AddCheckpointRequest
from support.reference_merkle import MemoryTree
from support.witnesses import WitnessProc, make_witness_home

_counter = itertools.count(1)


class MemoryLog:
    """A log held in memory: a Merkle tree and an Ed25519 log key (a fork shares the key)."""

    def __init__(self, origin: str | None = None, key: Ed25519PrivateKey | None = None, entries: int = 0) -> None:
        self.origin = origin or f"log{next(_counter)}.test/log"
        self.key = key or Ed25519PrivateKey.generate()
        self.signer = note.Signer(self.origin, self.key)
        self.vkey = self.signer.verifier.encode()
        self.entries: list[bytes] = []
        self.tree = MemoryTree()
        self.grow(entries)

    def grow(self, n: int, tag: bytes = b"") -> None:
        for _ in range(n):
            entry = b"entry %d %s" % (self.tree.size, tag)
            self.entries.append(entry)
            self.tree.append(entry)

    def fork(self) -> MemoryLog:
        """Another history under the same origin and key, sharing what was appended so far."""
        other = MemoryLog(self.origin, self.key)
        other.entries = list(self.entries)
        other.tree = MemoryTree(self.entries)
        return other

    def checkpoint_text(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        return Checkpoint(self.origin, size, self.tree.root(size)).text()

    def checkpoint(self, size: int | None = None, extra: Sequence[note.Signer] = ()) -> bytes:
        return note.sign(self.checkpoint_text(size), [self.signer, *extra])

    def request(self, old: int, size: int | None = None, checkpoint: bytes | None = None) -> bytes:
        size = self.tree.size if size is None else size
        proof = self.tree.consistency_proof(old, size) if 0 < old < size else []
        return AddCheckpointRequest(old, tuple(proof), checkpoint or self.checkpoint(size)).encode()


def cosigners(w: WitnessProc, text: str, sig_lines: bytes) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The witness's verified Ed25519 and ML-DSA-44 cosignatures among ``sig_lines`` on checkpoint ``text``."""
    parsed = note.parse(text.encode() + b"\n" + sig_lines)
    _, _, ed = cosignature.parse_vkey(w.vkey)
    assert w.mldsa_vkey is not None
    _, _, ml = cosignature.parse_vkey(w.mldsa_vkey)
    cp = Checkpoint.parse_text(parsed.text)
    return (
        cosignature.verified_cosigners(parsed, [(w.name, ed)]),
        cosignature.verified_mldsa_cosigners(parsed, cp.origin, cp.size, cp.root, [(w.name, ml)]),
    )


@pytest.fixture(scope="module")
def witness_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WitnessProc]:
    """One real witness for the module; tests add their own logs (it re-reads its logs file)."""
    where: Path = tmp_path_factory.mktemp("witness")
    w = WitnessProc(make_witness_home(where, "witness.test/shared"), "witness.test/shared").start()
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def client(witness_proc: WitnessProc) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=witness_proc.url, timeout=30) as c:
        yield c


def post(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/add-checkpoint", content=body)
