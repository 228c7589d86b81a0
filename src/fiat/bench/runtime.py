"""``fiat bench runtime``: how fast a guard halts, what it costs, how many it can carry.

* **Sandbox start-up** — from the call that starts a governed command (the permit is
  already verified) to the command's first instruction (its first byte of output), for
  each containment of :mod:`fiat.enforce.containment` beside a plain ``fork``/``exec``
  of the same command (the floor).
* **Halt latency** — from the revocation request leaving the admin client to the guarded
  command's whole tree being gone, over many runs (real ``fiat serve``, real processes, the
  push-based trust stream), for a plain process group (the floor) and for each containment.
* **Guard CPU** — the CPU time a guard spends per second on one guarded action at the
  default heartbeat (250 ms), as a share of one core: in this process (the verification
  loop alone), and for a real ``fiat run`` process with its command contained (read from
  ``/proc`` after its start-up, so only the steady state counts).
* **1,000 concurrent guarded actions on one node** — 1,000 permits, 1,000 processes, one
  supervisor and one shared trust subscription: how long a verification round over all of
  them takes, and how long until all are gone after revoking their principal.
* **Lineage cascade** — three generations, each its own real ``fiat run`` process (process
  containment: a nested guard needs the home), each command starting the next with
  ``fiat run --parent "$FIAT_PERMIT_ID"``; from the root permit's revocation request leaving
  the admin client to each generation's command and the process it started gone (seen here
  through pidfds, ``pidfd_open(2)``, on this process's monotonic clock), and to each
  generation's ``fiat run`` exiting (its receipt, naming the revocation, signed and uploaded,
  its bundle written). The floor, measured in the same run and interleaved: one ``fiat run`` without
  lineage, revoked the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress

from fiat.api.client import AuthorityClient
from fiat.api.credentials import ensure_admin_token
from fiat.bench.log import _scratch, machine
from fiat.config import CONTAINMENTS, load_config
from fiat.enforce.containment import Contained, Containment, ContainmentUnavailable
from fiat.enforce.guard import GuardSettings, Halt, Runtime, Session
from fiat.enforce.trust import TrustMonitor
from fiat.establish.measure import default_measurer
from fiat.formats.statement import RECEIPT
from fiat.home import init_home, keyring, trust_root
from fiat.verify.bundle import Bundle

#: The parts of the benchmark, in the order they run (``concurrent`` revokes the principal: last).
PARTS = ("startup", "halt", "cpu", "cascade", "concurrent")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "policies"
SLEEPER = ["sleep", "600"]  # coreutils: a small process, so a thousand fit


def halt_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the whole process group, a grace period, then SIGKILL: the floor of any containment."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    # Anything left in the group, even if the leader already exited.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


class _Bench:
    def __init__(self, home: Path) -> None:
        self.home = home
        init_home(home)
        self.cfg = load_config(home, require=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "FIAT_HOME": str(home)}
        subprocess.run(
            [sys.executable, "-m", "fiat.cli.main", "policy", "publish", str(EXAMPLES)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        self.server = subprocess.Popen(
            [sys.executable, "-m", "fiat.cli.main", "serve", "--port", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("fiat serve did not start for the benchmark")
            time.sleep(0.1)
        rec, key = keyring(self.cfg).signing_key("runtime")
        self.runtime = Runtime(rec.kid, key)
        self.root = trust_root(self.cfg)
        self.client = AuthorityClient(self.url)
        self.monitor = TrustMonitor.shared(self.url, self.root)
        self.monitor.wait_fresh(5)
        self.token = ensure_admin_token(self.cfg.keys_dir)

    def session(self, principal: str = "agent:release-bot") -> Session:
        measurer = default_measurer(SLEEPER, os.getcwd(), [], ["PATH"])
        return Session(
            self.client,
            self.root,
            self.runtime,
            self.monitor,
            measurer,
            principal,
            "shell:run",
            "repo:fiat",
            {"command": {"argv": SLEEPER, "cwd": os.getcwd()}},
            None,
            GuardSettings(),
        )

    def close(self) -> None:
        self.monitor.release()
        self.client.close()
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()


class _Started:
    """One started command: contained (``fiat run``'s own code) or a plain process group (the floor)."""

    def __init__(self, containment: Containment | None, argv: list[str], stdout: int | None = None) -> None:
        self.contained: Contained | None = None
        self.proc: subprocess.Popen[bytes]
        if containment is None:
            self.proc = subprocess.Popen(argv, start_new_session=True, stdout=stdout)
        else:
            self.contained = containment.start(argv, cwd=os.getcwd(), stdout=stdout)
            self.proc = self.contained.proc

    def halt(self, grace: float) -> None:
        if self.contained is None:
            halt_group(self.proc, grace)
        else:
            self.contained.halt(grace)


def _containments(b: _Bench) -> dict[str, Containment | None]:
    """The floor (a plain process group) and every containment available here, as ``fiat run`` sets it up."""
    found: dict[str, Containment | None] = {"group": None}
    for mode in CONTAINMENTS:
        c = dataclasses.replace(Containment.from_config(b.cfg), mode=mode)
        try:
            c.check(os.getcwd())
        except ContainmentUnavailable:
            continue  # reported as absent, never silently measured as something else
        found[mode] = c
    return found


def _startup(b: _Bench, runs: int, progress: Progress | None) -> dict[str, Any]:
    """Start → the command's first byte of output, per containment; ratios to the plain fork/exec."""
    argv = ["echo", "x"]
    modes = _containments(b)
    task = progress.add_task("sandbox start-up", total=runs * len(modes)) if progress else None
    samples: dict[str, list[float]] = {m: [] for m in modes}
    done = 0
    for _ in range(runs):
        for mode, containment in modes.items():  # interleaved: drift in the machine hits all alike
            r, w = os.pipe()
            try:
                t0 = time.perf_counter()
                started = _Started(containment, argv, stdout=w)
                os.close(w)
                w = -1
                if not os.read(r, 1):
                    raise RuntimeError(f"the {mode} start-up probe wrote nothing")
                samples[mode].append(time.perf_counter() - t0)
                started.proc.wait()
                if started.contained is not None:
                    started.contained.sweep()
            finally:
                os.close(r)
                if w >= 0:
                    os.close(w)
            done += 1
            if progress and task is not None:
                progress.update(task, completed=done)
    floor = _pct(samples["group"], 0.5)
    return {
        "runs": runs,
        "command": " ".join(argv),
        "modes": {
            m: {
                "p50_ms": round(_pct(v, 0.5) * 1000, 2),
                "p99_ms": round(_pct(v, 0.99) * 1000, 2),
                "ratio_to_floor": round(_pct(v, 0.5) / floor, 2),
            }
            for m, v in samples.items()
        },
        "unavailable": [m for m in CONTAINMENTS if m not in modes],
    }


def _halt_latency(b: _Bench, runs: int, progress: Progress | None) -> dict[str, Any]:
    """Revocation → the whole tree gone, for the floor and each containment (runs interleaved)."""
    modes = _containments(b)
    task = progress.add_task("halt latency", total=runs * len(modes)) if progress else None
    latencies: dict[str, list[float]] = {m: [] for m in modes}
    admin = AuthorityClient(b.url)
    done = 0
    try:
        for _ in range(runs):
            for mode, containment in modes.items():
                latencies[mode].append(_one_halt(b, admin, containment))
                done += 1
                if progress and task is not None:
                    progress.update(task, completed=done)
    finally:
        admin.close()
    return {
        "runs": runs,
        "modes": {
            m: {
                "p50_ms": round(_pct(v, 0.5) * 1000, 2),
                "p99_ms": round(_pct(v, 0.99) * 1000, 2),
                "max_ms": round(max(v) * 1000, 2),
            }
            for m, v in latencies.items()
        },
    }


def _one_halt(b: _Bench, admin: AuthorityClient, containment: Containment | None) -> float:
    s = b.session()
    s.establish()
    started = _Started(containment, SLEEPER)
    wake = b.monitor.subscribe()
    gone = threading.Event()
    t_gone = [0.0]

    def guard() -> None:
        while True:
            wake.wait(s.heartbeat)
            wake.clear()
            try:
                s.check()
            except Halt:
                started.halt(2.0)
                t_gone[0] = time.perf_counter()
                gone.set()
                return

    thread = threading.Thread(target=guard, daemon=True)
    thread.start()
    try:
        time.sleep(0.05)
        t0 = time.perf_counter()
        admin.revoke(b.token, "permit", s.permit_id, "benchmark")
        if not gone.wait(10):
            raise RuntimeError("a revoked action was not halted within 10 s")
        return t_gone[0] - t0
    finally:
        b.monitor.unsubscribe(wake)
        if started.proc.poll() is None:
            started.halt(0.0)


def _cpu(b: _Bench, seconds: float) -> dict[str, Any]:
    """CPU of this (guard) process per wall second with one guarded action at the default heartbeat."""
    s = b.session()
    s.establish()
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    wake = b.monitor.subscribe()
    checks = 0
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            wake.wait(s.heartbeat)
            wake.clear()
            s.check()
            checks += 1
    finally:
        b.monitor.unsubscribe(wake)
        halt_group(proc, 1.0)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {
        "seconds": round(t1 - t0, 2),
        "checks": checks,
        "heartbeat_ms": round(s.heartbeat * 1000),
        "cpu_percent_of_one_core": round(100 * cpu / (t1 - t0), 3),
        "cpu_per_check_us": round(cpu / max(checks, 1) * 1e6, 1),
    }


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid``, all its threads (``/proc/PID/stat``, proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cli_cpu(b: _Bench, seconds: float) -> dict[str, Any]:
    """Steady-state CPU of a real ``fiat run`` guarding a contained ``sleep`` (its default containment)."""
    env = {**os.environ, "FIAT_HOME": str(b.home)}
    argv = [sys.executable, "-m", "fiat.cli.main", "run", "--url", b.url,
            "--principal", "agent:release-bot", "--action", "shell:run", "--resource", "repo:fiat",
            "--", "sleep", str(int(seconds + 30))]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, cwd=b.home.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not _has_child(proc.pid):  # the command started: start-up and establishment are over
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"fiat run did not start its command: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            time.sleep(0.05)
        time.sleep(1.0)
        c0, t0 = _process_cpu(proc.pid), time.perf_counter()
        time.sleep(seconds)
        c1, t1 = _process_cpu(proc.pid), time.perf_counter()
    finally:
        proc.send_signal(signal.SIGTERM)  # the guard halts its command and signs the receipt
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {
        "seconds": round(t1 - t0, 2),
        "containment": b.cfg.runtime.containment,
        "cpu_percent_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 3),
    }


def _has_child(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


def _concurrent(b: _Bench, count: int, progress: Progress | None) -> dict[str, Any]:
    task = progress.add_task(f"{count} guarded actions", total=count) if progress else None
    principal = "agent:release-bot"  # revoked at the end: this runs last
    sessions: list[Session] = []
    procs: list[subprocess.Popen[bytes]] = []
    t0 = time.perf_counter()
    for i in range(count):
        s = b.session(principal)
        s.establish()
        sessions.append(s)
        if progress and task is not None:
            progress.update(task, completed=i + 1)
    establish_s = time.perf_counter() - t0
    try:
        for _ in sessions:
            procs.append(subprocess.Popen(SLEEPER, start_new_session=True))
        rounds: list[float] = []
        end = time.perf_counter() + 3
        while time.perf_counter() < end:  # one supervisor verifying every action each heartbeat
            r0 = time.perf_counter()
            for s in sessions:
                s.check()
            rounds.append(time.perf_counter() - r0)
            time.sleep(max(0.0, 0.25 - rounds[-1]))
        # revoke the principal: every action must halt
        wake = b.monitor.subscribe()
        admin = AuthorityClient(b.url)
        t_rev = time.perf_counter()
        admin.revoke(b.token, "principal", principal, "benchmark: revoke all")
        admin.close()
        wake.wait(5)
        halted = []
        for s, p in zip(sessions, procs, strict=True):
            try:
                s.check()
            except Halt:
                halted.append(p)
        for p in halted:
            os.killpg(p.pid, signal.SIGTERM)
        for p in halted:
            p.wait()
        all_gone = time.perf_counter() - t_rev
        b.monitor.unsubscribe(wake)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return {
        "actions": count,
        "establish_per_s": round(count / establish_s),
        "round_p50_ms": round(_pct(rounds, 0.5) * 1000, 1),
        "round_p99_ms": round(_pct(rounds, 0.99) * 1000, 1),
        "halted": len(halted),
        "all_gone_after_revoke_ms": round(all_gone * 1000, 1),
    }


#: Seconds between the last generation's start and the revocation (the guards' steady state).
SETTLE = 1.0

#: One generation of the cascade: it starts the next (``fiat run --parent "$FIAT_PERMIT_ID"``)
#: and a sleeper, writes their pids, and waits; the last generation only sleeps.
GENERATION = r"""
import json, os, subprocess, sys, time

base, n, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
work = os.path.join(base, f"gen{n}")
sleeper = subprocess.Popen(["sleep", "600"])
guard = None
if n < last:
    sub = os.path.join(base, f"gen{n + 1}")
    os.makedirs(sub)
    guard = subprocess.Popen(
        [sys.executable, "-m", "fiat.cli.main", "run", "--url", os.environ["FIAT_BENCH_URL"],
         "--principal", "agent:release-bot", "--action", "shell:run", "--resource", "repo:fiat",
         "--parent", os.environ["FIAT_PERMIT_ID"], "--evidence", os.path.join(sub, "bundle.json"),
         "--", sys.executable, __file__, base, str(n + 1), str(last)],
        cwd=sub, stdout=subprocess.DEVNULL, stderr=open(os.path.join(sub, "stderr"), "w"),
    )
with open(os.path.join(work, "pids.tmp"), "w") as f:
    json.dump({"pid": os.getpid(), "sleeper": sleeper.pid, "guard": guard and guard.pid,
               "permit": os.environ["FIAT_PERMIT_ID"]}, f)
os.replace(os.path.join(work, "pids.tmp"), os.path.join(work, "pids.json"))
(guard or sleeper).wait()
"""


def _cascade(b: _Bench, runs: int, generations: int, progress: Progress | None) -> dict[str, Any]:
    """Root revocation → each generation gone, for ``generations`` nested ``fiat run`` processes;
    the floor is one ``fiat run`` without lineage revoked the same way (runs interleaved)."""
    script = b.home.parent / "generation.py"
    script.write_text(GENERATION)
    task = progress.add_task("lineage cascade", total=runs) if progress else None
    gone: dict[str, list[float]] = {"floor": [], **{f"gen{n}": [] for n in range(generations)}}
    guard_exit: dict[str, list[float]] = {k: [] for k in gone}
    answered: list[float] = []  # the revocation request → its answer (logged, and the state pushed)
    admin = AuthorityClient(b.url)
    try:
        for i in range(runs):
            for label, depth in (("floor", 1), ("chain", generations)):
                base = b.home.parent / f"cascade-{i}-{label}"
                times, exits, answer = _one_cascade(b, admin, script, base, depth)
                answered.append(answer)
                for n in range(depth):
                    key = "floor" if label == "floor" else f"gen{n}"
                    gone[key].append(times[n])
                    guard_exit[key].append(exits[n])
            if progress and task is not None:
                progress.update(task, completed=i + 1)
    finally:
        admin.close()
    floor = _pct(gone["floor"], 0.5)

    def row(k: str) -> dict[str, Any]:
        v, e = gone[k], guard_exit[k]
        return {
            "p50_ms": round(_pct(v, 0.5) * 1000, 2),
            "p99_ms": round(_pct(v, 0.99) * 1000, 2),
            "max_ms": round(max(v) * 1000, 2),
            "ratio_to_floor": round(_pct(v, 0.5) / floor, 2),
            "guard_exit_p50_ms": round(_pct(e, 0.5) * 1000, 2),
            "guard_exit_p99_ms": round(_pct(e, 0.99) * 1000, 2),
        }

    return {
        "runs": runs,
        "generations": generations,
        "containment": "process",
        "rows": {k: row(k) for k in gone},
        "answered_p50_ms": round(_pct(answered, 0.5) * 1000, 2),
        "answered_p99_ms": round(_pct(answered, 0.99) * 1000, 2),
    }


def _one_cascade(
    b: _Bench, admin: AuthorityClient, script: Path, base: Path, depth: int
) -> tuple[list[float], list[float], float]:
    """One chain of ``depth`` generations, its root revoked: for each generation, the seconds from the
    revocation request to its command and sleeper gone, and to its guard's exit (pidfds, ``pidfd_open(2)``):
    the halt, and the halt with its receipt signed, uploaded and the bundle written."""
    (base / "gen0").mkdir(parents=True)
    env = {**os.environ, "FIAT_HOME": str(b.home), "FIAT_BENCH_URL": b.url, "FIAT_RUNTIME_CONTAINMENT": "process"}
    argv = [sys.executable, "-m", "fiat.cli.main", "run", "--url", b.url,
            "--principal", "agent:release-bot", "--action", "shell:run", "--resource", "repo:fiat",
            "--evidence", str(base / "gen0" / "bundle.json"),
            "--", sys.executable, str(script), str(base), "0", str(depth - 1)]  # fmt: skip
    root = subprocess.Popen(argv, env=env, cwd=base / "gen0", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fds: dict[int, tuple[str, int]] = {}  # pidfd -> (what, generation)
    try:
        deadline = time.monotonic() + 60
        pids: list[dict[str, Any]] = []
        while len(pids) < depth:
            pids = []
            for n in range(depth):
                with contextlib.suppress(OSError, ValueError):
                    pids.append(json.loads((base / f"gen{n}" / "pids.json").read_text()))
            if root.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the cascade's chain of {depth} did not start (fiat run exited {root.returncode})")
            time.sleep(0.02)
        poll = select.poll()
        guards = [root.pid, *(p["guard"] for p in pids[:-1])]
        for n, p in enumerate(pids):
            for what, pid in (("tree", p["pid"]), ("tree", p["sleeper"]), ("guard", guards[n])):
                fd = os.pidfd_open(pid)
                fds[fd] = (what, n)
                poll.register(fd, select.POLLIN)
        # Every guard past its start-up and waiting on its trust subscription: a revocation within
        # about a second of a guard's start halts slower here (BENCHMARKS.md, the runtime section).
        time.sleep(SETTLE)
        left = {n: 2 for n in range(depth)}  # each generation: its command and its sleeper
        times, exits = [0.0] * depth, [0.0] * depth
        t0 = time.perf_counter()
        admin.revoke(b.token, "permit", pids[0]["permit"], "benchmark: cascade")
        answer = time.perf_counter() - t0  # answered once logged and pushed (fiat.api.routes.admin)
        open_fds = set(fds)
        while open_fds:
            ready = poll.poll(10_000)
            if not ready:
                raise RuntimeError("a revoked chain was not halted within 10 s")
            now = time.perf_counter()
            for fd, _ in ready:
                poll.unregister(fd)
                open_fds.discard(fd)
                what, n = fds[fd]
                if what == "guard":
                    exits[n] = now - t0
                else:
                    left[n] -= 1
                    if left[n] == 0:
                        times[n] = now - t0
        if root.wait(30) != 124:
            raise RuntimeError(f"the cascade's root fiat run exited {root.returncode}, not 124 (halted)")
        for n in range(depth):
            bundle = Bundle.parse((base / f"gen{n}" / "bundle.json").read_bytes())
            (receipt,) = [s.statement.predicate for s in bundle.statements if s.statement.predicate_type == RECEIPT]
            if not str(receipt.get("haltReason", "")).startswith("revocation: "):
                raise RuntimeError(f"generation {n} halted at {receipt.get('haltReason')!r}, not at revocation")
        return times, exits, answer
    finally:
        for fd in fds:
            os.close(fd)
        if root.poll() is None:
            root.kill()
            root.wait()


def run_runtime_bench(
    runs: int = 100,
    cpu_seconds: float = 10.0,
    concurrent: int = 1000,
    workdir: Path | None = None,
    console: Console | None = None,
    cascade_runs: int = 50,
    generations: int = 3,
    parts: tuple[str, ...] = PARTS,
) -> dict[str, Any]:
    progress = Progress(console=console, transient=True, disable=console is None)
    with progress, _scratch(workdir) as tmp:
        b = _Bench(tmp / "home")
        try:
            startup = _startup(b, runs, progress) if "startup" in parts else None
            latency = _halt_latency(b, runs, progress) if "halt" in parts else None
            cpu = _cpu(b, cpu_seconds) if "cpu" in parts else None
            cli_cpu = _cli_cpu(b, cpu_seconds) if "cpu" in parts else None
            cascade = _cascade(b, cascade_runs, generations, progress) if "cascade" in parts and cascade_runs else None
            # Last: it revokes the benchmark's principal.
            many = _concurrent(b, concurrent, progress) if "concurrent" in parts and concurrent else None
        finally:
            b.close()
    return {
        "benchmark": "runtime",
        "machine": machine(),
        "startup": startup,
        "halt": latency,
        "cpu": cpu,
        "cli_cpu": cli_cpu,
        "concurrent": many,
        "cascade": cascade,
    }


def render_markdown(r: dict[str, Any]) -> str:
    m, st, h, c, cc, n = r["machine"], r["startup"], r["halt"], r["cpu"], r["cli_cpu"], r["concurrent"]
    names = {"group": "plain process group (floor)", "process": "process containment", "namespace": "namespace (bwrap)"}
    lines = [f"### `fiat bench runtime` — {m['cpu']}, {m['cores']} cores, Python {m['python']}"]
    if st:
        lines += [
            "",
            f"Start-up, start call → the command's first byte of output (`{st['command']}`), {st['runs']} runs each:",
            "",
            "| start | p50 | p99 | ratio to the floor (p50) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {names.get(k, k)} | {v['p50_ms']} ms | {v['p99_ms']} ms | {v['ratio_to_floor']}× |"
            for k, v in st["modes"].items()
        ]
        if st["unavailable"]:
            lines += ["", "Unavailable here (not measured): " + ", ".join(st["unavailable"]) + "."]
    if h:
        lines += [
            "",
            f"Halt latency, revocation request → the whole tree gone, {h['runs']} runs each "
            "(target p99 ≤ 100 ms; Keylime polls every 2 s):",
            "",
            "| halted as | p50 | p99 | max |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {names.get(k, k)} | {v['p50_ms']} ms | {v['p99_ms']} ms | {v['max_ms']} ms |"
            for k, v in h["modes"].items()
        ]
    if c and cc:
        lines += [
            "",
            f"Guard CPU at the {c['heartbeat_ms']} ms heartbeat over {c['seconds']} s ({c['checks']} verifications): "
            f"{c['cpu_percent_of_one_core']} % of one core, {c['cpu_per_check_us']} µs per verification "
            f"(target ≤ 1 %); a real `fiat run` ({cc['containment']} containment) over {cc['seconds']} s of its "
            f"steady state: {cc['cpu_percent_of_one_core']} % of one core.",
        ]
    if r.get("cascade"):
        k = r["cascade"]
        gens = {"floor": "one `fiat run`, no lineage (floor)", "gen0": "root", "gen1": "child", "gen2": "grandchild"}
        lines += [
            "",
            f"Lineage cascade, the root permit's revocation request → each generation's command and the "
            f"process it started gone (pidfds), {k['generations']} generations, each its own `fiat run` "
            f"({k['containment']} containment), {k['runs']} runs (target p99 ≤ 100 ms); last column: → its "
            "`fiat run` exited (receipt signed and uploaded, its bundle written):",
            "",
            "| generation | p50 | p99 | max | ratio to the floor (p50) | guard exited p50 / p99 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {gens.get(g, g)} | {v['p50_ms']} ms | {v['p99_ms']} ms | {v['max_ms']} ms | "
            f"{v['ratio_to_floor']}× | {v['guard_exit_p50_ms']} / {v['guard_exit_p99_ms']} ms |"
            for g, v in k["rows"].items()
        ]
        lines += [
            "",
            f"Of that, the authority's part — the request → its answer, sent once the revocation is logged "
            f"and the new trust state pushed: p50 {k['answered_p50_ms']} ms, p99 {k['answered_p99_ms']} ms.",
        ]
    if n:
        lines += [
            "",
            f"{n['actions']:,} concurrent guarded actions on one node (one supervisor, one trust subscription): "
            f"established at {n['establish_per_s']}/s; a verification round over all of them takes "
            f"p50 {n['round_p50_ms']} ms, p99 {n['round_p99_ms']} ms; after revoking their principal "
            f"{n['halted']:,} halted and all were gone in {n['all_gone_after_revoke_ms']} ms.",
        ]
    return "\n".join(lines) + "\n"
