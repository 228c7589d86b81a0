"""Durability (kill -9 right after a 200) and the race of tlog-witness §add-checkpoint."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

from fiat.errors import StorageError
from fiat.persist.sqlite.witness import SQLiteWitnessStore
from fiat.tlog import note, witness
from fiat.witness.core import Witness
from support.witnesses import running, start_witness, three_witnesses
from witness.conftest import MemoryLog, cosigners


def test_a_cosigned_checkpoint_survives_kill_9_right_after_the_200(tmp_path: Path) -> None:
    log = MemoryLog(entries=3)
    w = start_witness(tmp_path, "witness.test/durable", log.vkey)
    try:
        old = 0
        for grow in (0, 4, 9):
            log.grow(grow)
            r = httpx.post(w.url + "/add-checkpoint", content=log.request(old), timeout=10)
            assert r.status_code == 200, r.text
            w.kill()  # no shutdown: the state must already be on disk
            w.restart()
            r = httpx.post(w.url + "/add-checkpoint", content=log.request(0), timeout=10)
            assert r.status_code == 409, r.text
            assert r.headers["content-type"] == witness.SIZE_MEDIA_TYPE
            assert witness.parse_size(r.content) == log.tree.size
            served = httpx.get(w.url + witness.checkpoint_path(log.origin), timeout=10)
            assert served.status_code == 200
            text = log.checkpoint_text()
            assert served.content.startswith(text.encode() + b"\n")
            ed, ml = cosigners(w, text, served.content[len(text) + 1 :])
            assert len(ed) == 1 and len(ml) == 1  # the cosignatures it returned, after the crash
            old = log.tree.size
    finally:
        w.stop()


def test_monitoring_404_until_a_checkpoint_is_cosigned(tmp_path: Path) -> None:
    log = MemoryLog(entries=2)
    w = start_witness(tmp_path, "witness.test/mon", log.vkey)
    try:
        path = witness.checkpoint_path(log.origin)
        assert httpx.get(w.url + path).status_code == 404
        assert httpx.get(w.url + "/" + "A" * 64 + "/checkpoint").status_code == 404  # not lowercase hex
        assert httpx.post(w.url + "/add-checkpoint", content=log.request(0)).status_code == 200
        served = httpx.get(w.url + path)
        assert served.status_code == 200 and served.headers["content-type"].startswith("text/plain")
        sigs = note.parse(served.content).signatures
        assert [s.name for s in sigs] == [log.origin, w.name, w.name]  # the log's, then its own two
        summary = httpx.get(w.url + "/").json()
        assert summary["name"] == w.name and summary["vkey"] == w.vkey
        (entry,) = summary["logs"]
        assert entry["origin"] == log.origin and entry["size"] == 2 and entry["checkpointPath"] == path
    finally:
        w.stop()


def test_concurrent_submissions_never_roll_back_or_cosign_a_fork(tmp_path: Path) -> None:
    """Many clients submit checkpoints of two forks (one key) at once, each from the size it last
    learned: the stored size never decreases, and every cosigned checkpoint lies on one history."""
    a = MemoryLog(entries=5)
    b = a.fork()
    a.grow(35, b"A")
    b.grow(35, b"B")
    w = start_witness(tmp_path, "witness.test/race", a.vkey)
    cosigned: list[tuple[str, int]] = []
    seen_sizes: list[int] = []
    statuses: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        current = 0
        with httpx.Client(base_url=w.url, timeout=30) as c:
            for _ in range(12):
                side, log = rng.choice((("A", a), ("B", b)))
                target = rng.randint(current, 40)
                r = c.post("/add-checkpoint", content=log.request(current, target))
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        cosigned.append((side, target))
                if r.status_code == 200:
                    current = target
                elif r.status_code == 409:
                    current = witness.parse_size(r.content)
                else:
                    assert r.status_code == 422, r.text

    def monitor() -> None:
        with httpx.Client(base_url=w.url, timeout=30) as c:
            while not stop.is_set():
                r = c.get(witness.checkpoint_path(a.origin))
                if r.status_code == 200:
                    seen_sizes.append(int(r.content.split(b"\n")[1]))

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
        watcher = threading.Thread(target=monitor)
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        watcher.join()
        assert cosigned, statuses
        assert 409 in statuses  # they did race
        assert seen_sizes == sorted(seen_sizes), "the stored size went backwards"
        forked = {side for side, size in cosigned if size > 5}  # beyond the shared prefix
        assert len(forked) <= 1, f"cosigned both forks: {sorted(cosigned)}"
        final = httpx.post(w.url + "/add-checkpoint", content=a.request(0))
        assert final.status_code == 409
        assert witness.parse_size(final.content) == max(size for _, size in cosigned)
    finally:
        w.stop()


def test_two_stores_on_one_file_compare_and_set_atomically(tmp_path: Path) -> None:
    """As two witness processes sharing a state file would: threads over two store objects."""
    path = tmp_path / "witness.db"
    log = MemoryLog(entries=64)
    keys = {log.origin: [log.signer.verifier]}
    ed, ml = Ed25519PrivateKey.generate(), MLDSA44PrivateKey.generate()
    stores = [SQLiteWitnessStore(path), SQLiteWitnessStore(path)]
    witnesses = [Witness("w.test/x", ed, ml, lambda: keys, s) for s in stores]
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        rng = random.Random(i)
        current = 0
        for _ in range(25):
            target = rng.randint(current, 64)
            out = witnesses[i % 2].add_checkpoint(log.request(current, target))
            with lock:
                results.append((out.status, target))
            if out.status == 200:
                current = target
            else:
                assert out.status == 409, out.body
                current = witness.parse_size(out.body)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latest = stores[0].latest(log.origin)
    assert latest is not None
    assert latest.size == max(size for status, size in results if status == 200)
    for s in stores:
        s.close()


def test_three_witnesses_helper_kill_and_restart_on_the_same_url(tmp_path: Path) -> None:
    """tests/support/witnesses.py as the other tests use it: three witnesses of one log."""
    log = MemoryLog(entries=4)
    ws = three_witnesses(tmp_path, log.vkey)
    with running(ws):
        assert [w.name for w in ws] == ["witness.test/w1", "witness.test/w2", "witness.test/w3"]
        assert len({w.url for w in ws}) == 3 and len({w.vkey for w in ws}) == 3
        for w in ws:
            assert httpx.post(w.url + "/add-checkpoint", content=log.request(0)).status_code == 200
        victim = ws[1]
        url = victim.url
        victim.kill()
        assert not victim.running()
        with pytest.raises(httpx.TransportError):
            httpx.post(url + "/add-checkpoint", content=log.request(4), timeout=2)
        victim.restart()
        assert victim.url == url and victim.running()
        log.grow(3)
        assert httpx.post(url + "/add-checkpoint", content=log.request(4)).status_code == 200


def test_the_state_database_commits_with_synchronous_full_in_wal_mode(tmp_path: Path) -> None:
    store = SQLiteWitnessStore(tmp_path / "witness.db")
    try:
        conn = store.db.conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        store.close()
    # Another Fiat database is not taken for a witness state.
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE permits (x)")
    with pytest.raises(StorageError, match=r"point witness\.state at a file of its own"):
        SQLiteWitnessStore(other)
