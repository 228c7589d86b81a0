"""Attacks on the log's witness collector (fiat.prove.witnessing) by the witnesses it submits to.

A witness is a third party the log only trusts for its cosignatures, not to behave on the wire or
to keep its clock: over real HTTP on 127.0.0.1, a witness must not be able to exhaust the log's
memory with a large answer, hold a submission past ``log.witness_timeout_ms`` by dribbling its
answer, freeze the other witnesses' cosignatures with a future-dated or pinned timestamp, make the
log unable to store any quorum with a cosignature line that passes for the log's own signature, or
grow the collector's memory while the quorum is out of reach.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.persist.sqlite import SQLiteLogStore
from fiat.prove import witnessing
from fiat.prove.log import TransparencyLog
from fiat.prove.witnessing import WitnessCollector, WitnessEndpoint, WitnessState, cosigners
from fiat.tlog import cosignature, note
from fiat.tlog.checkpoint import open_checkpoint
from support.witness_double import RawWitness, TestWitness

ORIGIN = "witnessing.example/log"
#: Two Ed25519 seeds whose key IDs collide under the name ORIGIN: the log's note key (type 0x01) and
#: a cosigner key (type 0x04), both a43b2912. Found by a birthday search over 2^17 log keys (about
#: 10 s of CPU): the 32-bit key ID is no barrier to a witness that wants to pass for the log.
COLLIDING_LOG_SEED = bytes.fromhex("aaf95c1eca8f46342e8bb81f81259d9c40f1156a9748a5a0b83c162a00013144")
COLLIDING_WITNESS_SEED = bytes.fromhex("eefaabc7ae077739053b2a0f314a993668a1b25ebd05a05e9f1decfd000021c8")
#: What a hostile answer may make the server push into the kernel's buffers before the collector
#: hangs up: far less than the answers below (64 MiB), far more than loopback socket buffers.
SENT_BOUND = 16 << 20


@pytest.fixture
def signer() -> note.Signer:
    return note.Signer(ORIGIN, Ed25519PrivateKey.generate())


def open_log(tmp_path: Path, signer: note.Signer) -> TransparencyLog:
    return TransparencyLog(SQLiteLogStore(tmp_path / "log.db", synchronous="NORMAL"), signer)


@pytest.fixture
def tlog(tmp_path: Path, signer: note.Signer) -> Iterator[TransparencyLog]:
    log = open_log(tmp_path, signer)
    yield log
    log.close()


@pytest.fixture
def raw() -> Iterator[list[RawWitness]]:
    started: list[RawWitness] = []
    yield started
    for r in started:
        r.stop()


def endpoint(w: TestWitness) -> WitnessEndpoint:
    return WitnessEndpoint(w.name, w.public_key, w.url)


def raw_endpoint(r: RawWitness) -> WitnessEndpoint:
    return WitnessEndpoint("witness.example/raw", Ed25519PrivateKey.generate().public_key().public_bytes_raw(), r.url)


def collector(
    log: TransparencyLog, ws: list[WitnessEndpoint], quorum: int, timeout_s: float, interval_s: float
) -> WitnessCollector:
    c = WitnessCollector(log, ws, quorum=quorum, timeout_s=timeout_s, interval_s=interval_s)
    c.start()
    return c


def first_failure(c: WitnessCollector, name: str, within: float) -> WitnessState:
    deadline = time.monotonic() + within
    while True:
        state = next(s for s in c.statuses() if s.name == name)
        if state.failures:
            return state
        assert time.monotonic() < deadline, f"no failure of {name} within {within} s: {state}"
        time.sleep(0.02)


def times_on(cp_note: bytes, ws: list[TestWitness]) -> dict[str, int]:
    return dict(cosigners(cp_note, [(w.name, w.public_key) for w in ws]))


# -- 1. the wire: answers too large, answers too slow -------------------------------------------------

HUGE = 64 << 20


def huge(head: bytes, fill: bytes) -> Callable[[], Iterable[bytes]]:
    chunk = fill * (65536 // len(fill))
    return lambda: itertools.chain([head], itertools.repeat(chunk, HUGE // len(chunk)))


@pytest.mark.parametrize(
    ("head", "fill", "refusal"),
    [
        # A 200 of 64 MiB, its length declared: refused on the header, nothing of it read.
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % HUGE, b"A", "declares"),
        # The same without a length (the body runs until the connection closes): refused at the cap.
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n", b"A", "longer than"),
        # A 409 whose "size" never ends: its cap is 32 bytes.
        (
            b"HTTP/1.1 409 Conflict\r\nContent-Type: text/x.tlog.size\r\nConnection: close\r\n\r\n",
            b"9",
            "longer than the 32",
        ),
    ],
    ids=["200-declared", "200-until-close", "409-until-close"],
)
def test_an_oversized_answer_is_refused_without_reading_it(
    tlog: TransparencyLog, raw: list[RawWitness], head: bytes, fill: bytes, refusal: str
) -> None:
    """Attack: a witness (or whoever answers for its plain-http URL) answers 64 MiB. The collector
    reads at most its cap (64 KiB for a 200, 32 bytes for a 409) and hangs up: the server gets rid
    of no more than the kernel's socket buffers, not the answer (the old collector read it all
    into memory before checking its size: 600 MB took 1.8 GiB)."""
    r = RawWitness(huge(head, fill))
    raw.append(r)
    ep = raw_endpoint(r)
    c = collector(tlog, [ep], quorum=1, timeout_s=10.0, interval_s=60.0)
    try:
        state = first_failure(c, ep.name, 10.0)
        deadline = time.monotonic() + 5
        while not r.held:  # the server notices the hang-up
            assert time.monotonic() < deadline, f"the collector did not hang up ({r.sent} bytes sent)"
            time.sleep(0.02)
        assert r.sent < SENT_BOUND, f"the witness pushed {r.sent} bytes"
        assert refusal in (state.last_error or ""), state.last_error
    finally:
        c.close()


HEADER_DRIBBLE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Padding: " + b"a" * 8000 + b"\r\n\r\n"
BODY_DRIBBLE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + b"A" * 8000


@pytest.mark.parametrize("answer", [HEADER_DRIBBLE, BODY_DRIBBLE], ids=["headers", "body"])
def test_a_witness_dribbling_its_answer_is_cut_off_at_the_timeout(
    tlog: TransparencyLog, raw: list[RawWitness], answer: bytes
) -> None:
    """Attack: a witness sends its answer one byte every 50 ms, well within every per-read timeout
    (httpx's timeouts bound each read, not the request). The submission, retries included, still
    ends at ``log.witness_timeout_ms`` (0.5 s here), is recorded as the witness's error, and the
    connection is dropped (before the fix: held for the whole answer, 400 s here)."""
    r = RawWitness(lambda: (answer[i : i + 1] for i in range(len(answer))), pause=0.05)
    raw.append(r)
    ep = raw_endpoint(r)
    t0 = time.monotonic()
    c = collector(tlog, [ep], quorum=1, timeout_s=0.5, interval_s=60.0)
    try:
        state = first_failure(c, ep.name, 3.0)
        took = time.monotonic() - t0
        assert took < 0.5 + 0.5, f"the submission took {took:.2f} s with a 0.5 s timeout"
        assert "log.witness_timeout_ms" in (state.last_error or ""), state.last_error
        deadline = time.monotonic() + 2
        while not r.held:
            assert time.monotonic() < deadline, "the collector did not hang up"
            time.sleep(0.02)
        assert r.held[0] < 1.0, r.held
    finally:
        c.close()


# -- 2. the clock: future-dated and pinned timestamps ---------------------------------------------------


def wait_refreshed(tlog: TransparencyLog, w: TestWitness, after: int, within: float) -> int:
    """The witness's timestamp on the stored note once it is later than ``after``."""
    deadline = time.monotonic() + within
    while True:
        stored = tlog.witnessed_checkpoint()
        ts = None if stored is None else times_on(stored.note_bytes, [w]).get(w.name)
        if ts is not None and ts > after:
            return ts
        assert time.monotonic() < deadline, f"{w.name}'s cosignature was not refreshed past {after} in {within} s"
        time.sleep(0.05)


def test_a_future_dated_cosignature_is_not_counted_and_does_not_freeze_the_others(
    tlog: TransparencyLog, signer: note.Signer, witnesses: list[TestWitness]
) -> None:
    """Attack: with quorum 1, a witness cosigns with a timestamp an hour ahead. Its cosignature is
    not counted (nor merged) and its status says why; the honest witness's cosignature keeps being
    refreshed (before the fix, the future one pinned the quorum time and no store happened again:
    the honest timestamps aged until require_witnessed guards halted)."""
    honest = TestWitness("witness.example/honest", signer.verifier).start()
    future = TestWitness("witness.example/future", signer.verifier, time_offset=3600).start()
    witnesses += [honest, future]
    c = collector(tlog, [endpoint(honest), endpoint(future)], quorum=1, timeout_s=2.0, interval_s=0.2)
    try:
        tlog.append(b"entry")
        assert c.wait_covering(1, 5.0) is not None
        state = first_failure(c, future.name, 3.0)
        assert "after the log's clock" in (state.last_error or ""), state.last_error
        assert state.cosigned_size is None
        first = wait_refreshed(tlog, honest, 0, 3.0)
        wait_refreshed(tlog, honest, first, 3.0)
        stored = tlog.witnessed_checkpoint()
        assert stored is not None
        assert future.name.encode() not in stored.note_bytes
        assert set(times_on(stored.note_bytes, [honest, future])) == {honest.name}
    finally:
        c.close()


def test_each_witness_is_refreshed_against_its_own_timestamp(
    tlog: TransparencyLog, signer: note.Signer, witnesses: list[TestWitness]
) -> None:
    """Attack: a witness answers one cached cosignature dated 5 s ahead (within the clock skew, so
    it counts). Whether the stored note needs refreshing is decided per witness: the honest
    witness's newer timestamps are stored every second, not only once they pass the pinned one
    (before the fix: frozen until then, or forever with a larger pin)."""
    honest = TestWitness("witness.example/honest", signer.verifier).start()
    pinned = TestWitness("witness.example/pinned", signer.verifier, fixed_time=int(time.time()) + 5).start()
    witnesses += [honest, pinned]
    c = collector(tlog, [endpoint(honest), endpoint(pinned)], quorum=1, timeout_s=2.0, interval_s=0.2)
    try:
        tlog.append(b"entry")
        assert c.wait_covering(1, 5.0) is not None
        deadline = time.monotonic() + 3
        while True:  # both on the stored note
            stored = tlog.witnessed_checkpoint()
            assert stored is not None
            found = times_on(stored.note_bytes, [honest, pinned])
            if set(found) == {honest.name, pinned.name}:
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
        wait_refreshed(tlog, honest, found[honest.name], 2.5)
        assert pinned.fixed_time is not None and found[pinned.name] == pinned.fixed_time
    finally:
        c.close()


# -- 3. a cosignature line that passes for the log's signature -----------------------------------------


def test_a_witness_named_like_the_log_is_never_merged(tmp_path: Path, witnesses: list[TestWitness]) -> None:
    """Attack: a witness named like the log's origin, with a key ground so that its cosigner key ID
    equals the log key's (32 bits: the seeds above). Merged, its line would be taken for the log's
    own signature and the note would not open under the log key: every store would fail and no
    quorum would ever be kept. It is never submitted to (its status says why); the honest
    witness's quorum is stored and refreshed, and the stored note opens under the log key."""
    signer = note.Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(COLLIDING_LOG_SEED))
    impostor_key = Ed25519PrivateKey.from_private_bytes(COLLIDING_WITNESS_SEED)
    assert cosignature.ed25519_key_id(ORIGIN, impostor_key.public_key().public_bytes_raw()) == signer.key_id
    tlog = open_log(tmp_path, signer)
    honest = TestWitness("witness.example/honest", signer.verifier).start()
    impostor = TestWitness(ORIGIN, signer.verifier, key=impostor_key).start()
    witnesses += [honest, impostor]
    c = collector(tlog, [endpoint(impostor), endpoint(honest)], quorum=1, timeout_s=2.0, interval_s=0.2)
    try:
        tlog.append(b"entry")
        assert c.wait_covering(1, 5.0) is not None
        state = first_failure(c, impostor.name, 3.0)
        assert "the log's origin" in (state.last_error or ""), state.last_error
        assert state.cosigned_size is None and not impostor.seen
        first = wait_refreshed(tlog, honest, 0, 3.0)
        wait_refreshed(tlog, honest, first, 3.0)
        stored = tlog.witnessed_checkpoint()
        assert stored is not None
        assert open_checkpoint(stored.note_bytes, signer.verifier).size == 1
        assert [s.name for s in note.parse(stored.note_bytes).signatures] == [ORIGIN, honest.name]
    finally:
        c.close()
        tlog.close()


# -- 4. memory while the quorum is out of reach ------------------------------------------------------


def test_cosignatures_waiting_for_a_quorum_are_bounded(
    tlog: TransparencyLog, signer: note.Signer, witnesses: list[TestWitness]
) -> None:
    """Attack: quorum 2, one witness down, the log busy: each checkpoint the live witness cosigns
    waits for a second cosignature that never comes. Only the newest MAX_GATHERED stay (before
    the fix: every one, about 165 more a second)."""
    alive = TestWitness("witness.example/alive", signer.verifier).start()
    witnesses.append(alive)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{dead.getsockname()[1]}"
    dead.close()  # nothing listens there: connections are refused
    dead_key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    c = collector(
        tlog,
        [endpoint(alive), WitnessEndpoint("witness.example/down", dead_key, down)],
        quorum=2,
        timeout_s=1.0,
        interval_s=0.05,
    )
    try:
        until = time.monotonic() + 3
        n = 0
        while time.monotonic() < until:
            tlog.append(b"entry %d" % n)
            n += 1
        state = next(s for s in c.statuses() if s.name == alive.name)
        assert state.cosigned_size is not None and state.cosigned_size > witnessing.MAX_GATHERED
        cosigned = len({s.size for s in alive.seen if s.status == 200})
        assert cosigned > witnessing.MAX_GATHERED, "the live witness cosigned too few checkpoints to tell"
        assert len(c._gathered) <= witnessing.MAX_GATHERED
        assert tlog.witnessed_checkpoint() is None
    finally:
        c.close()
