"""Attacks on what the witness keeps: a flood of refusals that prove nothing cannot wipe out fork
evidence (tlog-witness §add-checkpoint: the witness "MAY log the request [...] as it might be proof
of log misbehavior"), and a clock glitch cannot pin the cosignature timestamps in the future."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.persist.sqlite.witness import MAX_UNPROVEN_REFUSALS_PER_ORIGIN, SQLiteWitnessStore
from fiat.tlog import cosignature, note
from fiat.tlog.witness import AddCheckpointRequest
from fiat.verify.split_view import SplitViewProof, verify
from fiat.witness.core import Witness
from support.processes import fiat_text, ok
from support.witnesses import WitnessProc
from witness.conftest import MemoryLog, post


def _junk(old: int, checkpoint: bytes, lines: int = 1) -> bytes:
    return AddCheckpointRequest(old, tuple(os.urandom(32) for _ in range(lines)), checkpoint).encode()


def _summary(client: httpx.Client, origin: str) -> dict[str, object]:
    (entry,) = [e for e in client.get("/").json()["logs"] if e["origin"] == origin]
    assert isinstance(entry, dict)
    return entry


def test_a_flood_of_refusals_that_prove_nothing_cannot_crowd_out_a_fork(
    witness_proc: WitnessProc, client: httpx.Client
) -> None:
    """Anyone can POST the log's public checkpoint with made-up proof lines; none of that may cost
    the witness the evidence of a real fork submitted afterwards."""
    log = MemoryLog(entries=5)
    witness_proc.add_log(log.vkey)
    assert post(client, log.request(0)).status_code == 200
    # The cosigned checkpoint itself with junk proofs: refused, and never recorded (no evidence of anything).
    public = log.checkpoint()
    for _ in range(MAX_UNPROVEN_REFUSALS_PER_ORIGIN + 20):
        assert post(client, _junk(5, public)).status_code == 422
    assert _summary(client, log.origin)["refused"] == 0
    # A newer honest checkpoint with junk proofs: proves nothing, so only the first ones are kept.
    log.grow(3)
    newer, flood = log.checkpoint(), 30
    for _ in range(MAX_UNPROVEN_REFUSALS_PER_ORIGIN + flood):
        assert post(client, _junk(5, newer, 2)).status_code == 422
    entry = _summary(client, log.origin)
    assert (entry["refused"], entry["refusedProving"], entry["refusedDropped"]) == (
        MAX_UNPROVEN_REFUSALS_PER_ORIGIN,
        0,
        flood,
    )
    # Now the log forks: size 5 with another root, and a size 8 whose proof shows another root at 5.
    fork = MemoryLog(log.origin, log.key)
    fork.grow(4)
    fork.grow(1, b"other")
    same_size = fork.checkpoint()
    assert post(client, AddCheckpointRequest(5, (), same_size).encode()).status_code == 422
    for _ in range(20):  # the same forked checkpoint again, with junk proofs: kept once
        assert post(client, _junk(5, same_size)).status_code == 422
    fork.grow(3, b"other")
    assert post(client, fork.request(5)).status_code == 422
    entry = _summary(client, log.origin)
    assert (entry["refused"], entry["refusedProving"], entry["refusedDropped"]) == (
        MAX_UNPROVEN_REFUSALS_PER_ORIGIN + 2,
        2,
        flood,
    )
    # Both forks are exported as proofs that verify with nothing but the log's key.
    home = witness_proc.home
    out_dir = home / "flood-proofs"
    result = json.loads(ok(fiat_text("witness", "split-views", "--home", home, "--out", out_dir, "--json")).stdout)
    mine = [p for p in result["proofs"] if p["origin"] == log.origin]
    assert sorted(p["summary"] for p in mine) == [
        "checkpoint 8's history has another root at size 5 than the signed checkpoint 5",
        "two roots signed for tree size 5",
    ]
    for p in mine:
        assert verify(SplitViewProof.parse(Path(p["file"]).read_bytes()), [log.signer.verifier])
    assert sum(u["origin"] == log.origin for u in result["unproven"]) == MAX_UNPROVEN_REFUSALS_PER_ORIGIN
    assert result["dropped"][log.origin] == flood
    text = ok(fiat_text("witness", "split-views", "--home", home, "--out", out_dir)).stdout
    assert f"{flood} more submissions that prove nothing were not kept" in text
    status = ok(fiat_text("witness", "status", "--home", home)).stdout
    assert f"{MAX_UNPROVEN_REFUSALS_PER_ORIGIN + 2} refused (2 proving a fork)" in status
    assert f"{flood} more refused that prove nothing (not kept)" in status


def test_a_clock_glitch_does_not_pin_later_cosignatures_in_the_future(tmp_path: Path) -> None:
    """tlog-cosignature: the timestamp "MUST NOT be zero" — nothing asks it to be monotonic. One answer
    from a clock ten years ahead must not make every later cosignature future-dated (guards reject those)."""
    log = MemoryLog(entries=3)
    now = time.time()
    clock = [now + 10 * 365 * 86400]
    warnings: list[str] = []
    ed = Ed25519PrivateKey.generate()
    keys = {log.origin: [log.signer.verifier]}
    store = SQLiteWitnessStore(tmp_path / "w.db")
    w = Witness("w.test/clock", ed, None, lambda: keys, store, clock=lambda: clock[0], warn=warnings.append)
    pub = [("w.test/clock", ed.public_key().public_bytes_raw())]

    def cosigned_at(body: bytes) -> int:
        parsed = note.parse(log.checkpoint_text().encode() + b"\n" + body)
        ((_, timestamp),) = cosignature.verified_cosigners(parsed, pub)
        return timestamp

    try:
        out = w.add_checkpoint(log.request(0))
        assert out.status == 200 and cosigned_at(out.body) == int(clock[0])
        assert not warnings
        clock[0] = now  # the clock is right again
        log.grow(2)
        out = w.add_checkpoint(log.request(3))
        assert out.status == 200 and cosigned_at(out.body) == int(now)
        latest = store.latest(log.origin)
        assert latest is not None and latest.timestamp == int(now)
        (warning,) = warnings
        assert "ahead of this machine's clock" in warning and log.origin in warning
        clock[0] = 0.0  # a clock at the epoch still never gives the zero timestamp
        out = w.add_checkpoint(log.request(5))
        assert out.status == 200 and cosigned_at(out.body) == 1
    finally:
        store.close()


_V1 = (
    "CREATE TABLE witness_latest (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, "
    "note BLOB NOT NULL, timestamp INTEGER NOT NULL)",
    "CREATE TABLE witness_refusals (id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, "
    "digest TEXT NOT NULL UNIQUE, checkpoint BLOB NOT NULL, old_size INTEGER NOT NULL, proof BLOB NOT NULL, "
    "against BLOB, reason TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX witness_refusals_origin ON witness_refusals (origin, id)",
)


def test_a_version_1_state_is_upgraded_with_its_refusals_classified(tmp_path: Path) -> None:
    log = MemoryLog(entries=5)
    fork = MemoryLog(log.origin, log.key)
    fork.grow(4)
    fork.grow(1, b"other")
    cosigned = log.checkpoint()
    rows = [  # (digest, checkpoint, proof): the same fork twice (two proofs), then junk on the log's own
        ("d1", fork.checkpoint(), b""),
        ("d2", fork.checkpoint(), os.urandom(32)),
        ("d3", log.checkpoint(), os.urandom(32)),
    ]
    path = tmp_path / "witness.db"
    with sqlite3.connect(path) as c:
        for statement in _V1:
            c.execute(statement)
        for digest, cp, proof in rows:
            c.execute(
                "INSERT INTO witness_refusals (origin, digest, checkpoint, old_size, proof, against, reason, at) "
                "VALUES (?, ?, ?, 5, ?, ?, 'r', 1.0)",
                (log.origin, digest, cp, proof, cosigned),
            )
        c.execute("PRAGMA user_version = 1")
    c.close()
    store = SQLiteWitnessStore(path)
    try:
        assert store.db.conn().execute("PRAGMA user_version").fetchone()[0] == 2
        kept = store.refusals()
        assert [(r.checkpoint, r.proves) for r in kept] == [(fork.checkpoint(), True), (log.checkpoint(), False)]
        counts = store.refusal_counts()[log.origin]
        assert (counts.proving, counts.unproven, counts.dropped) == (1, 1, 0)
    finally:
        store.close()
