"""Crash durability of the transparency log: SIGKILL a writer process under load, reopen, prove nothing was lost.

A child process (tests/support/workers/crash_writer.py) opens a Fiat home's log and appends from several threads,
printing an acknowledgement line (index, SHA-256 of the entry, the covering checkpoint) after every append
that returned. The parent reads the acknowledgements as they stream, kills the child with SIGKILL at a random
moment, reopens the log and checks that:

* the log opens (its own recovery re-derives the root from the stored tiles);
* every acknowledged index holds exactly the acknowledged entry, in this and every earlier cycle;
* every writer thread's stored entries are a gap-free, duplicate-free prefix of what it submitted, at least as
  long as what was acknowledged and at most one in-flight batch longer (nothing lost, nothing invented);
* the stored checkpoint verifies under the log key and covers exactly the stored entries;
* the root recomputed from the stored tiles, and independently from the entries, equals the checkpoint's root;
* every level-0 tile holds exactly the leaf hashes of its entries (and no hashes beyond the tree);
* the checkpoint is consistent with every acknowledged checkpoint and with the one from before the restart;
* acknowledged entries have inclusion proofs to the checkpoint acknowledged with them;
* a full tlog-tiles audit (fiat.prove.audit.audit_log) over a fetcher reading the store passes.

A second child (tests/support/workers/crash_authority.py) is an authority whose log ends the process right after a
batch commits: after it, every pending decision in the log has its approval row and every approval row its
logged pending decision (they commit in one batch).

The kill delays come from a seeded ``random.Random``; the seed is printed (shown on failure) and can be
replayed with ``FIAT_CRASH_SEED=<seed>``. Thread scheduling is of course not reproducible.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import fiat
from fiat.config import SETTINGS, Config, load_config
from fiat.errors import AuditError
from fiat.formats.dsse import Envelope
from fiat.formats.statement import DECISION, Statement
from fiat.home import init_home
from fiat.persist.sqlite import SQLiteLogStore
from fiat.prove.audit import audit_log
from fiat.prove.log import TransparencyLog
from fiat.tlog import merkle
from fiat.tlog.checkpoint import SignedCheckpoint, open_checkpoint
from fiat.tlog.tiles import HASH_SIZE, TILE_WIDTH, encode_bundle, parse_path
from fiat.wiring import open_authority, open_log
from support import WORKERS

HELPER = WORKERS / "crash_writer.py"
MAX_IN_FLIGHT = 8  # must match crash_writer.MAX_IN_FLIGHT
THREADS = 4
ORIGIN = "crash.example/log"
READY_TIMEOUT = 30.0

pytestmark = pytest.mark.timeout(240)


# -- the child process ------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    index: int
    sha256: str
    cp_size: int
    cp_note: bytes


@dataclass
class Writer:
    """One crash_writer.py child and the acknowledgements it has streamed so far."""

    proc: subprocess.Popen[bytes]
    tag: str
    stderr_path: Path
    acks: list[Ack] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    ready_info: tuple[int, str] | None = None
    done_size: int | None = None
    torn_tail: bytes = b""
    cond: threading.Condition = field(default_factory=threading.Condition)
    reader: threading.Thread | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not raw.endswith(b"\n"):  # the kill cut this line short: it acknowledges nothing
                self.torn_tail = raw
                break
            parts = raw.split()
            with self.cond:
                if parts[0] == b"ready":
                    self.ready_info = (int(parts[1]), parts[2].decode())
                    self.ready.set()
                elif parts[0] == b"done":
                    self.done_size = int(parts[1])
                else:
                    idx, sha, cp_size, cp_b64 = parts
                    self.acks.append(Ack(int(idx), sha.decode(), int(cp_size), base64.b64decode(cp_b64, validate=True)))
                self.cond.notify_all()
        self.ready.set()  # wake a waiter even if the child died before it was ready

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_ready(self) -> None:
        assert self.ready.wait(READY_TIMEOUT), f"writer {self.tag} not ready after {READY_TIMEOUT}s:\n{self.stderr()}"
        assert self.ready_info is not None, f"writer {self.tag} died before it was ready:\n{self.stderr()}"

    def wait_acks(self, n: int, timeout: float, min_index: int = -1) -> None:
        """Wait for ``n`` acks in all, at least one of them for an index of ``min_index`` or more."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.acks) < n or max((a.index for a in self.acks), default=-1) < min_index:
                remaining = deadline - time.monotonic()
                assert remaining > 0, (
                    f"writer {self.tag}: {len(self.acks)}/{n} acks, none at {min_index} or above:\n{self.stderr()}"
                )
                assert self.proc.poll() is None, f"writer {self.tag} exited early:\n{self.stderr()}"
                self.cond.wait(min(remaining, 0.1))

    def kill(self) -> None:
        """SIGKILL the child (it must still be running: an early exit is a failure) and reap it."""
        assert self.proc.poll() is None, f"writer {self.tag} exited before the kill:\n{self.stderr()}"
        os.kill(self.proc.pid, signal.SIGKILL)
        rc = self.proc.wait(timeout=30)
        assert rc == -signal.SIGKILL, f"writer {self.tag} ended with {rc}, not SIGKILL:\n{self.stderr()}"
        self._join()

    def stop(self) -> None:
        """Ask the child to stop cleanly (EOF on stdin) and check it did."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=60)
        self._join()
        assert rc == 0, f"writer {self.tag} exited with {rc}:\n{self.stderr()}"
        assert self.done_size is not None, f"writer {self.tag} did not report done:\n{self.stderr()}"

    def _join(self) -> None:
        assert self.reader is not None
        self.reader.join(timeout=30)
        assert not self.reader.is_alive()


class Writers:
    """Starts writer children and makes sure none outlives the test."""

    def __init__(self, tmp_path: Path, seed: int) -> None:
        self.tmp_path = tmp_path
        self.rng = random.Random(seed ^ 0x5EED)
        self.all: list[Writer] = []

    def start(self, home: Path, tag: str, env: dict[str, str] | None = None) -> Writer:
        child_env = _child_env()
        child_env.update(env or {})
        stderr_path = self.tmp_path / f"writer-{tag}.stderr"
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(HELPER), str(home), tag, str(THREADS), str(self.rng.randrange(1 << 32))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=child_env,
            )
        w = Writer(proc, tag, stderr_path)
        w.reader = threading.Thread(target=w._read, name=f"ack-reader-{tag}", daemon=True)
        w.reader.start()
        self.all.append(w)
        return w

    def cleanup(self) -> None:
        for w in self.all:
            if w.proc.poll() is None:
                w.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=30)
            for pipe in (w.proc.stdin, w.proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            if w.reader is not None:
                w.reader.join(timeout=5)


def _config_env_names() -> set[str]:
    return {"FIAT_HOME"} | {f"FIAT_{s.upper()}_{k.upper()}" for s, k in SETTINGS}


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _config_env_names()}
    src = str(Path(fiat.__file__).resolve().parent.parent)  # the same fiat the parent imports
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture
def crash_seed() -> int:
    env = os.environ.get("FIAT_CRASH_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(1 << 32)
    print(f"crash test seed: {seed} (replay the kill schedule with FIAT_CRASH_SEED={seed})")
    return seed


@pytest.fixture
def writers(tmp_path: Path, crash_seed: int) -> Iterator[Writers]:
    ws = Writers(tmp_path, crash_seed)
    try:
        yield ws
    finally:
        ws.cleanup()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in _config_env_names():
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "home"
    init_home(root, origin=ORIGIN)
    return root


# -- reading the store back -----------------------------------------------------


class StoreFetcher:
    """An audit Fetcher that serves tlog-tiles resources straight from the log's store."""

    def __init__(self, log: TransparencyLog) -> None:
        self.log = log
        self.paths: list[str] = []

    def get(self, path: str) -> bytes:
        self.paths.append(path)
        if path == "checkpoint":
            return self.log.checkpoint().note_bytes
        t = parse_path(path)
        if t.is_entries:
            start = t.index * TILE_WIDTH
            entries = self.log.read_entries(start, start + t.width)
            if len(entries) != t.width:
                raise AuditError(f"{path}: only {len(entries)} entries stored")
            return encode_bundle(entries)
        try:
            return self.log.read_tile(t.level, t.index, t.width)
        except KeyError as exc:
            raise AuditError(f"{path}: {exc}") from exc


def _parse_entry(e: bytes) -> tuple[str, int, int]:
    magic, tag, thread, seq, _pad = e.split(b"-", 4)
    assert magic == b"writer", e[:60]
    return tag.decode(), int(thread), int(seq)


@dataclass
class History:
    """Everything the parent has been promised so far, across cycles."""

    acked: dict[int, str] = field(default_factory=dict)  # index -> sha256 hex of the acknowledged entry
    checkpoints: list[bytes] = field(default_factory=list)  # checkpoint notes seen (acks and reopens)
    leaves: list[bytes] = field(default_factory=list)  # leaf hashes at the last verification
    last: SignedCheckpoint | None = None  # the checkpoint verified at the last reopen
    tags: set[str] = field(default_factory=set)
    cycles: list[str] = field(default_factory=list)

    def record(self, w: Writer) -> None:
        self.tags.add(w.tag)
        for a in w.acks:
            assert self.acked.get(a.index, a.sha256) == a.sha256, (
                f"index {a.index} acknowledged twice with different entries (writer {w.tag})"
            )
            self.acked[a.index] = a.sha256
        self.checkpoints.extend(a.cp_note for a in w.acks)


def verify(home: Path, history: History, new_acks: list[Ack], rng: random.Random, what: str) -> SignedCheckpoint:
    """Reopen the log after a crash and check every promise made so far; advance ``history``."""
    log = open_log(load_config(home, require=True))  # recovery itself refuses tiles that disagree with the root
    try:
        raw = log.store.checkpoint()
        assert raw is not None, f"{what}: no stored checkpoint"
        cp = open_checkpoint(raw, log.verifier)
        size = cp.size
        assert cp.origin == ORIGIN
        assert log.store.tree_size() == size, f"{what}: tree_size {log.store.tree_size()} but checkpoint {size}"

        # Entries: exactly ``size`` of them, none beyond the tree.
        entries = log.read_entries(0, size + MAX_IN_FLIGHT * THREADS * 4)
        assert len(entries) == size, f"{what}: {len(entries)} entries stored for a checkpoint of size {size}"
        leaves = [merkle.leaf_hash(e) for e in entries]
        assert leaves[: len(history.leaves)] == history.leaves, f"{what}: an earlier entry changed"
        if history.last is not None:
            assert size >= history.last.size, f"{what}: rollback from {history.last.size} to {size}"

        # Every acknowledged entry is there, byte for byte.
        for index, sha in history.acked.items():
            assert index < size, f"{what}: acknowledged index {index} is beyond the recovered size {size}"
            assert hashlib.sha256(entries[index]).hexdigest() == sha, f"{what}: entry {index} is not the acked one"

        # Every thread of every writer stored a gap-free prefix: nothing lost, duplicated or invented.
        seqs: dict[tuple[str, int], list[int]] = {}
        for e in entries:
            tag, thread, seq = _parse_entry(e)
            assert tag in history.tags, f"{what}: entry from unknown writer {tag!r}"
            seqs.setdefault((tag, thread), []).append(seq)
        acked_max: dict[tuple[str, int], int] = {}
        for index in history.acked:
            tag, thread, seq = _parse_entry(entries[index])
            acked_max[(tag, thread)] = max(acked_max.get((tag, thread), -1), seq)
        for key, got in seqs.items():
            assert got == list(range(len(got))), f"{what}: writer thread {key} stored seqs out of order or with gaps"
            top = acked_max.get(key, -1)
            assert top < len(got) <= top + 1 + MAX_IN_FLIGHT, (
                f"{what}: writer thread {key} stored {len(got)} entries, last ack was seq {top}"
            )
        assert set(acked_max) <= set(seqs)

        # Level-0 tiles hold exactly the leaf hashes (and a stored tile never runs past the tree).
        for n in range(0, (size + TILE_WIDTH - 1) // TILE_WIDTH):
            width = min(TILE_WIDTH, size - n * TILE_WIDTH)
            want = b"".join(leaves[n * TILE_WIDTH : n * TILE_WIDTH + width])
            assert log.read_tile(0, n, width) == want, f"{what}: level-0 tile {n} disagrees with its entries"
            stored = log.store.read_tile(0, n)
            assert stored is not None and len(stored) == width * HASH_SIZE, f"{what}: tile 0/{n} has extra hashes"
        assert log.store.read_tile(0, (size + TILE_WIDTH - 1) // TILE_WIDTH) is None or size % TILE_WIDTH == 0

        # The root, from the tiles and independently from the entries.
        assert merkle.tree_root(log.hash_source(size), size) == cp.root, f"{what}: tiles do not hash to the root"
        assert merkle.root_of_hashes(leaves) == cp.root, f"{what}: entries do not hash to the root"

        # Consistent with every checkpoint ever acknowledged or seen at a reopen.
        seen = dict.fromkeys(history.checkpoints)
        for note in seen:
            old = open_checkpoint(note, log.verifier)
            assert old.size <= size, f"{what}: acknowledged checkpoint {old.size} is beyond recovered size {size}"
            merkle.verify_consistency(old.size, size, old.root, cp.root, log.consistency_proof(old.size, size))

        # Acknowledged entries are included in the checkpoint that came with their ack.
        sample = rng.sample(new_acks, min(len(new_acks), 40))
        for a in sample:
            old = open_checkpoint(a.cp_note, log.verifier)
            assert old.size == a.cp_size, f"{what}: ack {a.index} names size {a.cp_size}, its checkpoint {old.size}"
            assert a.index < old.size, f"{what}: ack {a.index} came with a checkpoint of size {old.size}"
            proof, _ = log.inclusion_proof(a.index, old.size)
            merkle.verify_inclusion(a.index, old.size, leaves[a.index], proof, old.root)

        # A full audit, as an independent monitor would do it, remembering the previous reopen.
        previous = history.last.note_bytes if history.last is not None else None
        report, audited = audit_log(StoreFetcher(log), log.verifier, previous=previous)
        assert audited.note_bytes == raw
        assert report.size == size
        assert "root-hash" in report.steps
        if previous is not None:
            assert "consistency" in report.steps

        history.checkpoints.append(raw)
        history.leaves = leaves
        history.last = cp
        history.cycles.append(f"{what}: size {size}, {len(new_acks)} acks")
        return cp
    finally:
        log.close()


# -- the tests --------------------------------------------------------------------


def _kill_cycle(
    writers: Writers, home: Path, history: History, rng: random.Random, tag: str, *, anchor: str = "ready", **kw: str
) -> Writer:
    """Start one writer, SIGKILL it 50–600 ms after it is ready (or after it was spawned), record its acks."""
    delay = rng.uniform(0.05, 0.6)
    started = time.monotonic()
    w = writers.start(home, tag, env=kw or None)
    if anchor == "ready":
        w.wait_ready()
        time.sleep(delay)
    else:
        time.sleep(max(0.0, started + delay - time.monotonic()))
        if w.proc.poll() is not None:  # must not have died on its own
            pytest.fail(f"writer {tag} exited on its own:\n{w.stderr()}")
    w.kill()
    history.record(w)
    print(f"cycle {tag}: killed {delay * 1000:.0f} ms after {anchor}, {len(w.acks)} acks")
    return w


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_entry(home: Path, writers: Writers, crash_seed: int) -> None:
    rng = random.Random(crash_seed)
    history = History()
    verify(home, history, [], rng, "fresh home")
    t0 = time.monotonic()
    cycles = 8
    with_acks = 0
    for c in range(cycles):
        # One cycle counts its delay from the spawn, so the kill may land while the child imports or opens.
        w = _kill_cycle(writers, home, history, rng, f"k{c}", anchor="spawn" if c == 1 else "ready")
        with_acks += bool(w.acks)
        cp = verify(home, history, w.acks, rng, f"after kill {c} (seed {crash_seed})")
        if w.ready_info is not None:
            assert cp.size >= w.ready_info[0]
    print("\n".join(history.cycles), f"\n{cycles} cycles in {time.monotonic() - t0:.1f}s")
    assert with_acks >= cycles // 2, f"only {with_acks}/{cycles} cycles acknowledged anything: the load never ran"
    assert history.last is not None and history.last.size > 0


@pytest.mark.slow
def test_sigkill_one_of_two_concurrent_writers(home: Path, writers: Writers, crash_seed: int) -> None:
    rng = random.Random(crash_seed ^ 2)
    history = History()
    # Some history first, so the concurrent cycle starts from a restarted, non-empty log.
    w0 = _kill_cycle(writers, home, history, rng, "pre")
    verify(home, history, w0.acks, rng, f"after the first kill (seed {crash_seed})")

    survivor = writers.start(home, "surv")
    victim = writers.start(home, "vict")
    for w in (survivor, victim):
        w.wait_ready()
    for w in (survivor, victim):  # both are appending before the kill clock starts
        w.wait_acks(1, timeout=30)
    delay = rng.uniform(0.05, 0.6)
    time.sleep(delay)
    victim.kill()
    store = SQLiteLogStore(load_config(home, require=True).database_path)
    try:
        size_at_kill = store.tree_size()  # everything the victim ever committed lies below this
    finally:
        store.close()
    assert max((a.index for a in victim.acks), default=-1) < size_at_kill
    # The survivor keeps appending after its neighbour died (possibly holding the write lock): wait until it
    # has acknowledged an entry 50 positions past everything committed at the kill.
    survivor.wait_acks(1, timeout=30, min_index=size_at_kill + 50)
    survivor.stop()
    history.record(victim)
    history.record(survivor)
    print(
        f"victim killed {delay * 1000:.0f} ms after both acked: {len(victim.acks)} acks; tree size at the kill "
        f"{size_at_kill}; survivor {len(survivor.acks)} acks, up to index {max(a.index for a in survivor.acks)}"
    )
    cp = verify(home, history, victim.acks + survivor.acks, rng, f"after the concurrent kill (seed {crash_seed})")
    assert survivor.done_size is not None and cp.size == survivor.done_size

    # And the home still takes writes after all that.
    w = _kill_cycle(writers, home, history, rng, "post")
    verify(home, history, w.acks, rng, f"after the last kill (seed {crash_seed})")


@pytest.mark.slow
def test_sigkill_with_synchronous_normal(home: Path, writers: Writers, crash_seed: int) -> None:
    """WAL with synchronous=NORMAL must survive a process crash (not a power loss) without losing acks."""
    rng = random.Random(crash_seed ^ 3)
    history = History()
    for c in range(3):
        w = _kill_cycle(writers, home, history, rng, f"n{c}", FIAT_STORAGE_SYNCHRONOUS="NORMAL")
        assert w.ready_info is not None and w.ready_info[1] == "NORMAL", w.ready_info
        verify(home, history, w.acks, rng, f"after NORMAL kill {c} (seed {crash_seed})")
    assert history.last is not None and history.last.size > 0


# -- a pending decision and its approval ------------------------------------------------

AUTHORITY_HELPER = WORKERS / "crash_authority.py"
CRASHED = 70  # must match crash_authority.CRASHED


def _pending_in_log(cfg: Config) -> set[str]:
    """The approval ids named by the pending decisions in the log."""
    log = open_log(cfg)
    try:
        entries = log.read_entries(0, log.checkpoint().size)
    finally:
        log.close()
    ids = set()
    for raw in entries:
        if raw.startswith(b"{"):  # a DSSE envelope (permits are compact JWS)
            statement = Statement.from_envelope(Envelope.parse(raw))
            if statement.predicate_type == DECISION and statement.predicate["decision"] == "pending":
                ids.add(statement.predicate["approval"]["id"])
    return ids


def _approval_rows(cfg: Config) -> set[str]:
    db = sqlite3.connect(cfg.database_path)
    try:
        return {str(row[0]) for row in db.execute("SELECT id FROM approvals WHERE status = 'pending'")}
    finally:
        db.close()


@pytest.mark.parametrize("crash_after", [1, 2])
def test_a_crash_after_a_batch_leaves_no_pending_decision_without_its_approval(home: Path, crash_after: int) -> None:
    """The authority process dies right after a log batch commits; after reopening, every logged
    pending decision has its approval row and every approval row its logged pending decision."""
    cfg = load_config(home, require=True)
    authority = open_authority(cfg)
    try:
        authority.publish_policy(Path(fiat.__file__).parent / "examples" / "policies")
    finally:
        authority.close()
    child = subprocess.run(
        [sys.executable, str(AUTHORITY_HELPER), str(home), "40", str(crash_after)],
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == CRASHED, f"exit {child.returncode}:\n{child.stderr[-4000:]}"
    logged, stored = _pending_in_log(cfg), _approval_rows(cfg)
    assert logged, "the crashed batches held no pending decision: the test proves nothing"
    assert logged - stored == set(), "logged pending decisions without their approval"
    assert stored - logged == set(), "approvals without their logged pending decision"
    authority = open_authority(cfg)  # and the home still decides on them
    try:
        assert {authority.approval(i)["status"] for i in logged} == {"pending"}
    finally:
        authority.close()
