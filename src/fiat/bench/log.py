"""``fiat bench log``: the log's speed, each number beside a floor measured in the same run.

* Durable append throughput for several batch sizes, against the floor of the
  same work done plainly: one SHA-256 per entry plus a plain SQLite insert of
  the same bytes, committed per batch with the same durability settings.
* Integration latency through the sequencer (entry queued → durable and
  covered by a signed checkpoint), p50/p99 under a steady offered load.
* Inclusion and consistency proof generation and verification in a tree of
  10^6 entries, against the floor of the raw SHA-256 calls a verifier makes.
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import Progress

from fiat.persist.sqlite import SQLiteLogStore
from fiat.prove.log import TransparencyLog
from fiat.tlog import merkle
from fiat.tlog.note import Signer

ENTRY_SIZE = 128
BATCH_SIZES = (64, 1024, 4096)


def _entries(n: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(ENTRY_SIZE) for _ in range(n)]


@contextmanager
def _scratch(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="fiat-bench-", dir=workdir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _floor_appends(db: Path, entries: list[bytes], batch: int) -> float:
    """Raw SHA-256 per entry + plain SQLite insert of the same bytes, one durable commit per batch."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (idx INTEGER PRIMARY KEY, h BLOB, data BLOB)")
    start = time.perf_counter()
    for b in range(0, len(entries), batch):
        chunk = entries[b : b + batch]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t (idx, h, data) VALUES (?, ?, ?)",
            ((b + i, hashlib.sha256(e).digest(), e) for i, e in enumerate(chunk)),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(entries) / elapsed


def _new_log(db: Path, **kw: Any) -> TransparencyLog:
    return TransparencyLog(SQLiteLogStore(db), Signer("bench.fiat.local/log", Ed25519PrivateKey.generate()), **kw)


def _fiat_appends(db: Path, entries: list[bytes], batch: int) -> float:
    log = _new_log(db)
    start = time.perf_counter()
    for b in range(0, len(entries), batch):
        log.integrate(entries[b : b + batch])
    elapsed = time.perf_counter() - start
    log.close()
    return len(entries) / elapsed


def _sequencer_latency(db: Path, rate: int, seconds: float, linger_ms: float) -> dict[str, float]:
    """Offer ``rate`` entries/s in small chunks; measure queued → acknowledged per entry."""
    log = _new_log(db, batch_linger=linger_ms / 1000)
    latencies: list[float] = []
    lock = threading.Lock()
    chunk = 50
    interval = chunk / rate
    payload = _entries(chunk, 7)

    def make_cb(t0: float) -> Any:
        def cb(_: Any) -> None:
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)

        return cb

    start = time.perf_counter()
    sent = 0
    next_at = start
    while time.perf_counter() - start < seconds:
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        t0 = time.perf_counter()
        futures = log.submit(payload)
        for f in futures:
            f.add_done_callback(make_cb(t0))
        sent += chunk
        next_at += interval
    log.close()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "offered_per_s": rate,
        "achieved_per_s": round(sent / elapsed),
        "entries": sent,
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 2),
        "max_ms": round(1000 * latencies[-1], 2),
        "linger_ms": linger_ms,
    }


def _timeit(fn: Any, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def _proofs(db: Path, size: int, progress: Progress | None) -> dict[str, Any]:
    log = _new_log(db)
    task = progress.add_task(f"building a {size:,}-entry log", total=size) if progress else None
    rnd = random.Random(11)
    batch = 4096
    for b in range(0, size, batch):
        n = min(batch, size - b)
        log.integrate([rnd.randbytes(64) for _ in range(n)])
        if progress and task is not None:
            progress.update(task, completed=b + n)
    cp = log.checkpoint()
    indexes = [rnd.randrange(size) for _ in range(200)]
    leaves = {i: merkle.leaf_hash(log.read_entries(i, i + 1)[0]) for i in indexes}

    proofs: dict[int, list[bytes]] = {}

    def gen_inclusion() -> None:
        i = indexes[len(proofs) % len(indexes)]
        proofs[i] = merkle.inclusion_proof(log.hash_source(size), i, size)

    gen_inc = _timeit(gen_inclusion, len(indexes))
    items = list(proofs.items())
    k = [0]

    def verify_inclusion() -> None:
        i, p = items[k[0] % len(items)]
        k[0] += 1
        merkle.verify_inclusion(i, size, leaves[i], p, cp.root)

    ver_inc = _timeit(verify_inclusion, 2000)
    depth = len(items[0][1])

    old_sizes = [rnd.randrange(1, size) for _ in range(50)]
    roots = {m: merkle.tree_root(log.hash_source(m), m) for m in old_sizes}
    cproofs: dict[int, list[bytes]] = {}

    def gen_consistency() -> None:
        m = old_sizes[len(cproofs) % len(old_sizes)]
        cproofs[m] = merkle.consistency_proof(log.hash_source(size), m, size)

    gen_con = _timeit(gen_consistency, len(old_sizes))
    citems = list(cproofs.items())
    j = [0]

    def verify_consistency() -> None:
        m, p = citems[j[0] % len(citems)]
        j[0] += 1
        merkle.verify_consistency(m, size, roots[m], cp.root, p)

    ver_con = _timeit(verify_consistency, 2000)
    cdepth = round(statistics.mean(len(p) for p in cproofs.values()))
    block = b"\x01" + bytes(64)
    sha = _timeit(lambda: hashlib.sha256(block).digest(), 100_000)
    log.close()
    return {
        "tree_size": size,
        "inclusion": {
            "proof_hashes": depth,
            "generate_us": round(gen_inc * 1e6, 1),
            "verify_us": round(ver_inc * 1e6, 1),
            "floor_us": round(depth * sha * 1e6, 1),
            "verify_ratio": round(ver_inc / (depth * sha), 2),
        },
        "consistency": {
            "proof_hashes": cdepth,
            "generate_us": round(gen_con * 1e6, 1),
            "verify_us": round(ver_con * 1e6, 1),
            "floor_us": round(2 * cdepth * sha * 1e6, 1),
            "verify_ratio": round(ver_con / (2 * cdepth * sha), 2),
        },
        "sha256_us": round(sha * 1e6, 3),
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "system": f"{platform.system()} {platform.release()}",
    }


def run_log_bench(
    entries: int = 100_000,
    proof_tree: int = 1_000_000,
    workdir: Path | None = None,
    console: Console | None = None,
    rate: int = 20_000,
    seconds: float = 3.0,
) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "log", "machine": machine(), "entry_bytes": ENTRY_SIZE}
    data = _entries(entries, 1)
    progress = Progress(console=console, transient=True, disable=console is None)
    with progress, _scratch(workdir) as tmp:
        task = progress.add_task("append throughput", total=len(BATCH_SIZES))
        rows = []
        for n, batch in enumerate(BATCH_SIZES):
            floor = _floor_appends(tmp / f"floor-{batch}.db", data, batch)
            fiat = _fiat_appends(tmp / f"fiat-{batch}.db", data, batch)
            rows.append(
                {
                    "batch": batch,
                    "floor_per_s": round(floor),
                    "fiat_per_s": round(fiat),
                    "ratio": round(fiat / floor, 2),
                }
            )
            progress.update(task, completed=n + 1)
        result["append"] = rows
        progress.add_task("sequencer latency", total=None)
        result["sequencer"] = _sequencer_latency(tmp / "seq.db", rate, seconds, 0.0)
        result["proofs"] = _proofs(tmp / "proofs.db", proof_tree, progress)
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"### `fiat bench log` — {m['cpu']}, {m['cores']} cores, Python {m['python']}, SQLite {m['sqlite']}",
        "",
        f"Durable appends ({r['entry_bytes']}-byte entries, WAL + synchronous=FULL, one commit per batch):",
        "",
        "| batch | floor: SHA-256 + SQLite insert (/s) | Fiat log (/s) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for row in r["append"]:
        lines.append(f"| {row['batch']} | {row['floor_per_s']:,} | {row['fiat_per_s']:,} | {row['ratio']} |")
    s = r["sequencer"]
    lines += [
        "",
        f"Integration latency through the sequencer at {s['offered_per_s']:,} entries/s offered "
        f"(linger {s['linger_ms']} ms): achieved {s['achieved_per_s']:,}/s, "
        f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms.",
        "",
        f"Proofs in a tree of {r['proofs']['tree_size']:,} entries (floor = the raw SHA-256 calls a verifier makes, "
        f"{r['proofs']['sha256_us']} µs each):",
        "",
        "| proof | hashes | generate (µs) | verify (µs) | floor (µs) | verify ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("inclusion", "consistency"):
        p = r["proofs"][kind]
        lines.append(
            f"| {kind} | {p['proof_hashes']} | {p['generate_us']} | {p['verify_us']} | {p['floor_us']} | "
            f"{p['verify_ratio']} |"
        )
    lines += ["", f"Peak RSS: {r['max_rss_mib']} MiB."]
    return "\n".join(lines)
