"""The log's witness collector (fiat.prove.witnessing) against witnesses over real HTTP.

C2SP tlog-witness §add-checkpoint from the client's side: the old size and consistency proof it
sends, learning the size from a 409, retries within the timeout, cosignatures verified and the
unknown or invalid ones ignored; and what the log keeps: the newest quorum-cosigned checkpoint,
durably, never a smaller one, without ever holding up an append.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.persist.sqlite import SQLiteLogStore
from fiat.prove.log import TransparencyLog
from fiat.prove.witnessing import WitnessCollector, WitnessEndpoint, cosigners
from fiat.tlog import note
from fiat.tlog.checkpoint import open_checkpoint
from support.witness_double import TestWitness

ORIGIN = "witnessing.example/log"


@pytest.fixture
def signer() -> note.Signer:
    return note.Signer(ORIGIN, Ed25519PrivateKey.generate())


@pytest.fixture
def tlog(tmp_path: Path, signer: note.Signer) -> Iterator[TransparencyLog]:
    log = TransparencyLog(SQLiteLogStore(tmp_path / "log.db", synchronous="NORMAL"), signer)
    yield log
    log.close()


def start(witnesses: list[TestWitness], signer: note.Signer, *modes: str) -> list[TestWitness]:
    for i, mode in enumerate(modes):
        w = TestWitness(f"witness.example/w{len(witnesses) + 1}", signer.verifier, mode).start()
        witnesses.append(w)
        del i
    return witnesses[-len(modes) :]


def endpoints(ws: list[TestWitness]) -> list[WitnessEndpoint]:
    return [WitnessEndpoint(w.name, w.public_key, w.url) for w in ws]


def keys(ws: list[TestWitness]) -> list[tuple[str, bytes]]:
    return [(w.name, w.public_key) for w in ws]


def collector(log: TransparencyLog, ws: list[WitnessEndpoint], **kw: float) -> WitnessCollector:
    c = WitnessCollector(
        log,
        ws,
        quorum=int(kw.get("quorum", 2)),
        timeout_s=kw.get("timeout_s", 2.0),
        interval_s=kw.get("interval_s", 0.2),
    )
    c.start()
    return c


def test_three_witnesses_cosign_and_the_quorum_checkpoint_is_kept(
    tlog: TransparencyLog, signer: note.Signer, witnesses: list[TestWitness]
) -> None:
    ws = start(witnesses, signer, "honest", "honest", "honest")
    c = collector(tlog, endpoints(ws))
    try:
        for n in range(5):
            tlog.append(f"entry {n}".encode())
        cp = c.wait_covering(5, 5.0)
        assert cp is not None and cp.size == 5
        # The log's own signature still verifies (cosignatures are extra lines it ignores) ...
        assert open_checkpoint(cp.note_bytes, signer.verifier).size == 5
        # ... and at least the quorum of cosignatures verify independently.
        assert len(cosigners(cp.note_bytes, keys(ws))) >= 2
        # The unknown key's line each witness sent along is not merged.
        assert b"someone.else/w9" not in cp.note_bytes
        # Stored durably; /log/checkpoint's source serves it.
        stored = tlog.witnessed_checkpoint()
        assert stored is not None and stored.size == 5
        # (The same tree: fresher cosignatures on it may be stored between the two reads.)
        served = tlog.served_checkpoint()
        assert served.checkpoint == stored.checkpoint and len(cosigners(served.note_bytes, keys(ws))) >= 2
        # Submissions after the first carried a consistency proof from the witness's size.
        for w in ws:
            assert all(s.status in (200, 409) for s in w.seen), w.seen
            assert any(s.old_size > 0 and s.proof_lines > 0 for s in w.seen) or all(s.old_size == 0 for s in w.seen)
        deadline = time.monotonic() + 5
        while not all(s.cosigned_size == 5 and s.last_success for s in c.statuses()):
            assert time.monotonic() < deadline, c.statuses()
            time.sleep(0.05)
    finally:
        c.close()


def test_a_witness_ahead_is_learned_from_409_and_sent_a_proof(
    tmp_path: Path, signer: note.Signer, witnesses: list[TestWitness]
) -> None:
    """A collector starts believing every witness at size 0; a witness holding a later size answers
    409 with it (text/x.tlog.size) and the resubmission carries the proof from that size: the case
    of a restarted log server (tlog-witness §add-checkpoint)."""
    (w,) = start(witnesses, signer, "honest")
    log = TransparencyLog(SQLiteLogStore(tmp_path / "log.db", synchronous="NORMAL"), signer)
    try:
        first = collector(log, endpoints([w]), quorum=1)
        for n in range(7):
            log.append(f"entry {n}".encode())
        assert first.wait_covering(7, 5.0) is not None
        first.close()
        for n in range(7, 300):
            log.append(f"entry {n}".encode())
        w.seen.clear()
        second = collector(log, endpoints([w]), quorum=1)  # a new process: knows nothing of w's size
        try:
            cp = second.wait_covering(300, 5.0)
            assert cp is not None and cp.size == 300
        finally:
            second.close()
        assert w.seen[0].old_size == 0 and w.seen[0].status == 409
        assert w.seen[1].old_size == 7 and w.seen[1].proof_lines > 0 and w.seen[1].status == 200
    finally:
        log.close()


def test_garbage_and_wrong_key_cosignatures_are_ignored_and_do_not_count(
    tlog: TransparencyLog, signer: note.Signer, witnesses: list[TestWitness]
) -> None:
    """Attack: two of three witnesses answer 200 with garbage, a cosignature by another key under the
    witness's name, or a zero timestamp. Quorum 2 is never reached; with quorum 1 only the honest
    witness's line is merged."""
    honest, garbage, wrong, zero = start(witnesses, signer, "honest", "garbage", "wrong-key", "zero-time")
    c = collector(tlog, endpoints([honest, garbage, wrong, zero]), quorum=2)
    try:
        tlog.append(b"entry")
        assert c.wait_covering(1, 1.5) is None
        assert tlog.witnessed_checkpoint() is None
        status = {s.name: s for s in c.statuses()}
        assert status[honest.name].cosigned_size == 1
        for w in (garbage, wrong, zero):
            assert status[w.name].cosigned_size is None and status[w.name].last_error, status[w.name]
        assert "not note signature lines" in (status[garbage.name].last_error or "")
        assert "no valid cosignature" in (status[wrong.name].last_error or "")
    finally:
        c.close()
    c = collector(tlog, endpoints([honest, garbage, wrong, zero]), quorum=1)
    try:
        cp = c.wait_covering(1, 3.0)
        assert cp is not None
        parsed = note.parse(cp.note_bytes)
        assert [s.name for s in parsed.signatures] == [ORIGIN, honest.name]
        assert [n for n, _ in cosigners(cp.note_bytes, keys([honest, garbage, wrong, zero]))] == [honest.name]
    finally:
        c.close()


def test_a_failing_witness_is_retried_within_the_timeout(
    tlog: TransparencyLog, signer: note.Signer, witnesses: list[TestWitness]
) -> None:
    (flaky,) = start(witnesses, signer, "flaky")  # 503 twice, then cosigns
    c = collector(tlog, endpoints([flaky]), quorum=1)
    try:
        tlog.append(b"entry")
        assert c.wait_covering(1, 3.0) is not None
        assert [s.status for s in flaky.seen][:3] == [503, 503, 200]
    finally:
        c.close()


def test_a_silent_witness_never_blocks_appends_and_quorum_holds(
    tlog: TransparencyLog, signer: note.Signer, witnesses: list[TestWitness], black_hole: str
) -> None:
    """A witness that never answers (connections accepted, nothing read) costs the appends nothing;
    the two others keep the quorum; its status says it timed out."""
    a, b = start(witnesses, signer, "honest", "honest")
    silent = WitnessEndpoint(
        "witness.example/silent", Ed25519PrivateKey.generate().public_key().public_bytes_raw(), black_hole
    )
    c = collector(tlog, [*endpoints([a, b]), silent], quorum=2, timeout_s=0.5, interval_s=0.1)
    try:
        latencies = []
        for n in range(200):
            t = time.perf_counter()
            tlog.append(f"entry {n}".encode())
            latencies.append(time.perf_counter() - t)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        assert p99 < 0.1, f"append p99 {p99 * 1000:.1f} ms with a silent witness"
        cp = c.wait_covering(200, 5.0)
        assert cp is not None
        assert sorted(n for n, _ in cosigners(cp.note_bytes, keys([a, b]))) == sorted([a.name, b.name])
        time.sleep(0.7)
        status = {s.name: s for s in c.statuses()}
        assert status[silent.name].cosigned_size is None
        assert "log.witness_timeout_ms" in (status[silent.name].last_error or "") or "cannot reach" in (
            status[silent.name].last_error or ""
        )
    finally:
        c.close()


def test_resubmission_at_the_interval_refreshes_the_cosignature_times(
    tlog: TransparencyLog, signer: note.Signer, witnesses: list[TestWitness]
) -> None:
    (w,) = start(witnesses, signer, "honest")
    c = collector(tlog, endpoints([w]), quorum=1, interval_s=0.3)
    try:
        tlog.append(b"entry")
        cp = c.wait_covering(1, 3.0)
        assert cp is not None
        first = cosigners(cp.note_bytes, keys([w]))[0][1]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            latest = tlog.witnessed_checkpoint()
            assert latest is not None and latest.size == 1
            if cosigners(latest.note_bytes, keys([w]))[0][1] > first:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the witnessed checkpoint was not refreshed with a newer cosignature")
        again = [s for s in w.seen if s.size == 1][1:]
        assert again and all(s.old_size == 1 and s.proof_lines == 0 for s in again), w.seen
    finally:
        c.close()


def test_the_witnessed_checkpoint_never_shrinks_in_the_store(tlog: TransparencyLog) -> None:
    store = tlog.store
    assert store.set_witnessed_checkpoint(5, b"five")
    assert not store.set_witnessed_checkpoint(4, b"four")
    assert store.witnessed_checkpoint() == b"five"
    assert store.set_witnessed_checkpoint(5, b"five again, fresher")
    assert store.set_witnessed_checkpoint(9, b"nine")
    assert store.witnessed_checkpoint() == b"nine"


def test_trust_states_switch_to_the_cosigned_checkpoint_only_when_it_is_no_smaller(
    tlog: TransparencyLog, signer: note.Signer, witnesses: list[TestWitness]
) -> None:
    """A guard halts when its tree shrinks (log-continuity): the embedded checkpoint's size never
    decreases, even though the cosigned checkpoint lags the plain one."""
    for n in range(3):
        tlog.append(f"entry {n}".encode())
    (w,) = start(witnesses, signer, "honest")
    c = collector(tlog, endpoints([w]), quorum=1)
    try:
        assert tlog.embeddable_checkpoint().size == 3  # nothing witnessed yet: the plain one
        sizes = [3]
        for n in range(3, 60):
            tlog.append(f"entry {n}".encode())
            sizes.append(tlog.embeddable_checkpoint().size)
        assert c.wait_covering(60, 5.0) is not None
        final = tlog.embeddable_checkpoint()
        sizes.append(final.size)
        assert sizes == sorted(sizes), sizes
        assert cosigners(final.note_bytes, keys([w])), "once caught up, the cosigned checkpoint is embedded"
    finally:
        c.close()
