"""``fiat bench log``: the log's speed, each number beside a floor measured in the same run.

* Durable append throughput for several batch sizes, against the floor of the
  same work done plainly: one SHA-256 per entry plus a plain SQLite insert of
  the same bytes, committed per batch with the same durability settings.
* Integration latency through the sequencer (entry queued → durable and
  covered by a signed checkpoint), p50/p99 under a steady offered load.
* Inclusion and consistency proof generation and verification in a tree of
  10^6 entries, against the floor of the raw SHA-256 calls a verifier makes.
* Append → quorum-cosigned checkpoint (``witnesses``): three local ``fiat witness serve``
  processes, quorum 2 (:mod:`fiat.prove.witnessing`), p50/p99 beside the durable append alone;
  then the same with one witness killed (the quorum of the two left).
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
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

from fiat.errors import FiatError
from fiat.persist.sqlite import SQLiteLogStore
from fiat.prove.log import TransparencyLog
from fiat.prove.witnessing import WitnessCollector, WitnessEndpoint
from fiat.tlog import merkle
from fiat.tlog.note import Signer
from fiat.verify.trust_root import parse_cosigner_vkey

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


WITNESSES = 3
WITNESS_QUORUM = 2
_LISTENING = re.compile(r"fiat witness: listening on (http://\S+)")


def _fiat_cli(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "fiat.cli.main", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise FiatError(f"`fiat {' '.join(args[:2])}` failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def _start_witness(home: Path, name: str, log_vkey: str) -> tuple[subprocess.Popen[str], WitnessEndpoint]:
    """A real ``fiat witness serve`` on a free port of 127.0.0.1 that cosigns the log of ``log_vkey``."""
    _fiat_cli("witness", "init", "--home", str(home), "--name", name)
    _fiat_cli("witness", "add-log", "--home", str(home), "--vkey", log_vkey)
    vkey_name, public = parse_cosigner_vkey(_fiat_cli("witness", "vkey", "--home", str(home)).strip())
    out = home.parent / f"{home.name}.log"
    sink = out.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fiat.cli.main", "witness", "serve", "--home", str(home), "--port", "0"],
        stdout=sink,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sink.close()
    deadline = time.monotonic() + 60
    while True:
        found = _LISTENING.search(out.read_text(errors="replace"))
        if found:
            return proc, WitnessEndpoint(vkey_name, public, found.group(1))
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise FiatError(f"fiat witness serve did not start: {out.read_text(errors='replace')[-500:]}")
        time.sleep(0.05)


def _percentiles(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "p50_ms": round(statistics.median(v) * 1000, 2),
        "p99_ms": round(v[max(0, int(len(v) * 0.99) - 1)] * 1000, 2),
        "max_ms": round(v[-1] * 1000, 2),
    }


def _witnessed_latency(tmp: Path, rounds: int, gap_s: float = 0.02) -> dict[str, Any]:
    """Append one entry, then wait for a checkpoint covering it with quorum cosignatures; ``rounds`` times,
    ``gap_s`` apart; then again with one witness killed (SIGKILL)."""
    log = _new_log(tmp / "witnessed.db")
    procs: list[subprocess.Popen[str]] = []
    collector: WitnessCollector | None = None
    try:
        endpoints = []
        for i in range(WITNESSES):
            proc, ep = _start_witness(tmp / f"witness-{i + 1}", f"bench.example/w{i + 1}", log.verifier.encode())
            procs.append(proc)
            endpoints.append(ep)
        collector = WitnessCollector(log, endpoints, quorum=WITNESS_QUORUM, timeout_s=2.0, interval_s=1.0)
        collector.start()

        def measure(n: int) -> dict[str, Any]:
            total, append = [], []
            for k in range(n):
                t0 = time.perf_counter()
                res = log.append(os.urandom(ENTRY_SIZE))
                t1 = time.perf_counter()
                assert collector is not None
                if collector.wait_covering(res.index + 1, 10.0) is None:
                    raise FiatError(f"no quorum-cosigned checkpoint covered entry {res.index} within 10 s")
                total.append(time.perf_counter() - t0)
                append.append(t1 - t0)
                if k + 1 < n:
                    time.sleep(gap_s)
            return {"rounds": n, "append": _percentiles(append), "cosigned": _percentiles(total)}

        measure(5)  # connections open, witnesses warm
        result: dict[str, Any] = {"witnesses": WITNESSES, "quorum": WITNESS_QUORUM, "all": measure(rounds)}
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(10)
        result["one_killed"] = measure(max(rounds // 2, 1))
        return result
    finally:
        if collector is not None:
            collector.close()
        log.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


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
    witnessed_rounds: int = 200,
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
        if witnessed_rounds > 0:
            progress.add_task("append → quorum-cosigned checkpoint", total=None)
            result["witnessed"] = _witnessed_latency(tmp, witnessed_rounds)
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
    w = r.get("witnessed")
    if w is not None:
        lines += [
            "",
            f"Append → quorum-cosigned checkpoint ({w['witnesses']} local `fiat witness serve` processes, quorum "
            f"{w['quorum']}; one entry appended, then waited for until a checkpoint covering it has the quorum's "
            "cosignatures; floor = the durable append alone, same rounds):",
            "",
            "| witnesses | rounds | append p50 / p99 (ms) | cosigned p50 / p99 (ms) | max (ms) | target p99 ≤ 250 ms |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for label, key in ((f"{w['witnesses']} up", "all"), ("one killed", "one_killed")):
            row = w[key]
            a, c = row["append"], row["cosigned"]
            met = "yes" if c["p99_ms"] <= 250 else "**no**"
            lines.append(
                f"| {label} | {row['rounds']} | {a['p50_ms']} / {a['p99_ms']} | {c['p50_ms']} / {c['p99_ms']} | "
                f"{c['max_ms']} | {met} |"
            )
    lines += ["", f"Peak RSS: {r['max_rss_mib']} MiB."]
    return "\n".join(lines)
