"""A wall-clock step neither extends nor spuriously ends a governed execution (issue 10, "Time").

Two levels:

* **Injected clocks.** A real :class:`~fiat.enforce.guard.Session` (permit established
  against a real ``fiat serve``) with a real :class:`~fiat.enforce.trust.TrustMonitor` fed
  real signed trust states, both on a fake wall clock and a fake monotonic clock. Time
  passes on both in equal ticks; in the stepped runs the wall clock alone jumps an hour
  back or forward mid-way. The halt — ``permit-expiry``, ``max-duration``, ``trust-fresh``
  — comes at the same monotonic moment as without the step, and the step joined the
  verification chain as a ``clock-step`` event. Before the fix the guard read the wall
  clock for every check: an hour back kept the action alive for that hour, an hour forward
  halted it at once.
* **A real process.** ``fiat run`` under Debian's libfaketime (``LD_PRELOAD``), its
  faked wall clock moved mid-run by rewriting ``FAKETIME_TIMESTAMP_FILE``
  (``FAKETIME_CACHE_DURATION=1``: the guard sees the new offset within a second). libfaketime fakes
  ``CLOCK_MONOTONIC`` too unless ``FAKETIME_DONT_FAKE_MONOTONIC=1``, which is set: the step
  is a wall-clock step only, as ``date -s`` makes one (``NO_FAKE_STAT=1`` leaves file
  times alone). The authority (``fiat serve``) runs on the real clock. Skipped, saying so,
  where libfaketime is not installed (``scripts/system-deps.sh`` installs it for the tests).
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import fiat
from fiat.api.client import AuthorityClient
from fiat.config import load_config
from fiat.enforce.clock import CLOCK_STEP_THRESHOLD, SteadyClock
from fiat.enforce.guard import GuardSettings, Halt, Runtime, Session
from fiat.enforce.trust import TrustMonitor
from fiat.establish.measure import default_measurer
from fiat.formats.statement import RECEIPT
from fiat.home import keyring, trust_root
from fiat.verify.bundle import Bundle
from support.processes import FiatServer, cli_env, free_port, ok
from support.processes import fiat_text as fiat_cli

EXAMPLES = Path(fiat.__file__).resolve().parent / "examples" / "policies"
PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"
HOUR = 3600.0
MAX_DURATION = 4  # seconds: the module's policy bounds shell:run by this (@max_duration)
TICK = 0.5  # the fake clocks advance by this between two checks
EXIT_HALTED = 124


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    """``fiat serve`` with the example policies, shell:run bounded to MAX_DURATION s (ttl 30 s)."""
    base = tmp_path_factory.mktemp("clock")
    home = base / "home"
    ok(fiat_cli("init", "--home", home, "--json"))
    bounded = base / "policies"
    shutil.copytree(EXAMPLES, bounded)
    shell = (bounded / "shell.cedar").read_text()
    assert '@max_duration("120")' in shell and '@ttl("30")' in shell
    (bounded / "shell.cedar").write_text(shell.replace('@max_duration("120")', f'@max_duration("{MAX_DURATION}")'))
    ok(fiat_cli("policy", "publish", bounded, "--home", home, "--json"))
    s = FiatServer(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "100"}).start()
    try:
        yield s
    finally:
        s.stop()


# -- injected clocks ------------------------------------------------------------------------------


class FakeClocks:
    """A wall clock and a monotonic clock; ``tick`` advances both, ``step`` the wall clock only."""

    def __init__(self) -> None:
        self.wall_now = self.start_wall = time.time()
        self.mono_now = 1000.0
        self.elapsed = 0.0

    def wall(self) -> float:
        return self.wall_now

    def mono(self) -> float:
        return self.mono_now

    def tick(self, seconds: float = TICK) -> None:
        self.wall_now += seconds
        self.mono_now += seconds
        self.elapsed += seconds

    def step(self, seconds: float) -> None:
        self.wall_now += seconds


def a_trust_state(url: str) -> str:
    """One signed trust state from the server's stream, as the monitor would receive it."""
    with httpx.stream("GET", url + "/v1/trust/stream", timeout=httpx.Timeout(5.0, read=10.0)) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                return line[5:].strip()
    raise AssertionError("the trust stream ended without a state")


def open_session(server: FiatServer, tmp_path: Path, clocks: FakeClocks, staleness: float) -> tuple[Session, str]:
    """An established session whose guard and trust monitor keep time on ``clocks``, and the
    trust state the monitor was fed."""
    cfg = load_config(server.home, require=True)
    rec, key = keyring(cfg).signing_key("runtime")
    root = trust_root(cfg)
    monitor = TrustMonitor(server.url, root, clock=clocks.wall, mono=clocks.mono)  # fed by hand, never started
    state = a_trust_state(server.url)
    monitor.accept(state)
    argv = [sys.executable, "-c", "pass"]
    session = Session(
        AuthorityClient(server.url),
        root,
        Runtime(rec.kid, key),
        monitor,
        default_measurer(argv, str(tmp_path), [], ["PATH"]),
        PRINCIPAL,
        ACTION,
        RESOURCE,
        {"command": {"argv": argv, "cwd": str(tmp_path)}},
        settings=GuardSettings(heartbeat=TICK, staleness=staleness),
        clock=clocks.wall,
        mono=clocks.mono,
    )
    session.establish()
    return session, state


def halt_moment(
    server: FiatServer,
    tmp_path: Path,
    *,
    step: float,
    staleness: float,
    started: bool = False,
    unreachable: bool = False,
    limit: float = 60.0,
) -> tuple[float, Halt, Session, float]:
    """Check every TICK until the session halts; the wall clock jumps by ``step`` after 1 s.

    ``started``: the action starts right after establishment (maximum duration counts).
    ``unreachable``: then the authority becomes unreachable, so the permit is not renewed.
    Returns the (fake) seconds from establishment to the halt, the halt, the session and
    its time at establishment.
    """
    clocks = FakeClocks()
    session, _ = open_session(server, tmp_path, clocks, staleness)
    client, established = session.client, session.now()
    try:
        if unreachable:
            session.client = AuthorityClient(f"http://127.0.0.1:{free_port()}")
        if started:
            session.execution_start = session.now()
        while clocks.elapsed < limit:
            if clocks.elapsed == 1.0:
                clocks.step(step)
            try:
                session.check()
            except Halt as halt:
                return clocks.elapsed, halt, session, established
            clocks.tick()
        raise AssertionError(f"no halt within {limit} s (step {step:+.0f} s): {session.event_counts}")
    finally:
        if session._renewal is not None:
            session._renewal.join(10)  # a renewal in flight finishes before its client closes
        client.close()
        if session.client is not client:
            session.client.close()


def assert_same_halt(
    server: FiatServer, tmp_path: Path, halt_step: str, due: Callable[[Session, float], float], **kw: Any
) -> None:
    """With the wall clock stepped an hour back, an hour forward, or not at all, the session
    halts at ``halt_step`` on the first check at or after ``due(session, established)``
    (seconds after establishment, as the rule computes it for that run's permit and trust
    state); each step joined the verification chain (``event_counts`` counts what joined it)."""
    runs = {step: halt_moment(server, tmp_path, step=step, **kw) for step in (0.0, -HOUR, +HOUR)}
    for step, (at, halt, session, established) in runs.items():
        deadline = due(session, established)
        assert halt.step == halt_step and deadline <= at <= deadline + TICK, (
            f"with a {step:+.0f} s wall-clock step: halted at {halt.step} {at} s after establishment; "
            f"due at {halt_step} {deadline:.2f} s"
        )
        assert session.event_counts["clock-step"] == (0 if step == 0.0 else 1), session.event_counts


def test_steady_clock_ignores_steps_and_reports_them() -> None:
    clocks = FakeClocks()
    steady = SteadyClock(clocks.wall, clocks.mono)
    start = steady.now()
    assert start == clocks.wall_now
    clocks.tick(2.0)
    assert steady.step() is None and steady.now() == start + 2.0
    clocks.step(-HOUR)
    assert steady.step() == -HOUR and steady.now() == start + 2.0
    assert steady.step() is None  # each step is reported once
    clocks.step(CLOCK_STEP_THRESHOLD / 2)  # below the threshold: not a step
    assert steady.step() is None
    clocks.step(+2 * HOUR)
    assert steady.step() == 2 * HOUR and steady.now() == start + 2.0


def test_permit_expiry_is_not_moved_by_a_wall_clock_step(server: FiatServer, tmp_path: Path) -> None:
    """The permit (ttl 30 s, not renewed: the authority is unreachable) expires at exp on the
    monotonic clock anchored at establishment, whatever the wall clock does after."""

    def due(s: Session, established: float) -> float:
        assert 28.0 <= float(s.claims["exp"]) - established <= 32.0, "a 30 s permit"
        return float(s.claims["exp"]) - established  # exp itself is expired (nbf <= now < exp)

    assert_same_halt(server, tmp_path, "permit-expiry", due, staleness=HOUR, unreachable=True)


def test_max_duration_is_not_moved_by_a_wall_clock_step(server: FiatServer, tmp_path: Path) -> None:
    # Halts once it ran longer than maxDuration: the first check after MAX_DURATION.
    assert_same_halt(
        server, tmp_path, "max-duration", lambda _s, _t: MAX_DURATION + TICK / 2, staleness=HOUR, started=True
    )


def test_trust_freshness_is_not_moved_by_a_wall_clock_step(server: FiatServer, tmp_path: Path) -> None:
    """No new trust state arrives: the last one goes stale at the same monotonic moment."""

    def due(s: Session, _established: float) -> float:
        # Stale once its age (its age on arrival, then monotonic time) passes the bound.
        return 3.0 - s.monitor.snapshot().age_at_receipt

    assert_same_halt(server, tmp_path, "trust-fresh", due, staleness=3.0)


def test_a_state_arriving_after_a_step_is_aged_by_the_steady_clock(server: FiatServer, tmp_path: Path) -> None:
    """The monitor ages an arriving state by its own steady clock, not by the stepped wall clock:
    after an hour forward, a state the authority just signed is not an hour old (a spurious
    trust-fresh halt); after an hour back, a state held back for 2 s and then delivered (a
    delaying attacker's replay of the newest state) is 2 s old, not "from the future" and so
    new (which would stretch freshness by the hour)."""
    clocks = FakeClocks()
    session, held = open_session(server, tmp_path, clocks, staleness=3.0)
    try:
        clocks.step(+HOUR)
        session.monitor.accept(a_trust_state(server.url))
        age = session.monitor.snapshot().age_at_receipt
        assert age < 1.0, f"a state just signed looked {age:.0f} s old after a forward step"
        session.check()  # fresh
        assert session.event_counts["clock-step"] == 1
    finally:
        session.client.close()

    clocks = FakeClocks()
    session, held = open_session(server, tmp_path, clocks, staleness=3.0)
    try:
        clocks.tick(2.0)
        clocks.step(-HOUR)
        session.monitor.accept(held)  # delivered again, late
        snap = session.monitor.snapshot()
        assert snap.state_time is not None
        # Its age on arrival by the monitor's (unstepped) clock: 2 s, less the real time that
        # passed between the fake clocks' start and its signing.
        expected = clocks.start_wall + clocks.elapsed - snap.state_time
        assert expected > 1.0 and abs(snap.age_at_receipt - expected) < 1e-6, (snap.age_at_receipt, expected)
        clocks.tick(3.0 - expected - 0.1)
        session.check()  # just fresh
        clocks.tick(0.2)
        with pytest.raises(Halt) as info:  # just stale: 3 s old by now
            session.check()
        assert info.value.step == "trust-fresh", info.value
        assert session.event_counts["clock-step"] == 1
    finally:
        session.client.close()


# -- a real process under libfaketime -------------------------------------------------------------

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))), None)

# libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 makes clock_nanosleep(CLOCK_MONOTONIC,
# TIMER_ABSTIME), which Python's time.sleep uses, fail with EINVAL; the guard (and the command)
# under it sleep with select(2) instead. Everything else is the real `fiat run`.
SLEEP_WITH_SELECT = (
    "import runpy, select, sys, time\n"
    "def _sleep(seconds):\n"
    "    select.select([], [], [], max(0.0, seconds))\n"
    "time.sleep = _sleep\n"
)
FIAT_UNDER_FAKETIME = (
    sys.executable,
    "-c",
    SLEEP_WITH_SELECT + "runpy.run_module('fiat.cli.main', run_name='__main__')",
)

# The command runs on the real clock: only the guard is under test (and a command killed on a
# halt would leave libfaketime's shared state locked for the guard).
UNFAKED = (shutil.which("env") or "/usr/bin/env", "-u", "LD_PRELOAD")

# The command, a shell (it starts in milliseconds, even on a loaded machine): its start and the
# guard's SIGTERM on the machine's uptime clock (monotonic, never faked), read by the test too.
COMMAND = (
    'cat /proc/uptime > "$1/started.tmp" && mv "$1/started.tmp" "$1/started"; '
    "trap 'cat /proc/uptime > \"$1/halted\"; exit 143' TERM; "
    "sleep 30 & wait"
)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def uptime_in(path: Path) -> float:
    return float(path.read_text().split()[0])


def run_under_faketime(server: FiatServer, work: Path, step: str | None) -> tuple[int, dict[str, Any], float, str]:
    """``fiat run`` the command with libfaketime at "+0"; ``step`` (e.g. "-1h") is written to
    the timestamp file one second after the command started. Returns the exit code, the JSON
    result, the command's run time until the guard's SIGTERM, and the guard's stderr."""
    assert LIBFAKETIME is not None
    work.mkdir(parents=True)
    rc = work / "faketime.rc"
    rc.write_text("+0\n")
    env = cli_env(
        LD_PRELOAD=LIBFAKETIME,
        FAKETIME_TIMESTAMP_FILE=str(rc),
        FAKETIME_CACHE_DURATION="1",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        NO_FAKE_STAT="1",  # file times are not what is tested (and faking every stat is slow)
        FIAT_RUNTIME_HEARTBEAT_MS="100",
        FIAT_RUNTIME_STALENESS_MS="5000",  # generous: maximum duration is what is timed here
        FIAT_RUNTIME_HALT_GRACE_MS="1000",
        FIAT_RUNTIME_CONTAINMENT="process",  # as in test_guard.py: bubblewrap under libfaketime is not the point
    )
    args = [
        *(*FIAT_UNDER_FAKETIME, "run", "--json", "--home", str(server.home), "--url", server.url),
        *("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE),
        *("--evidence", str(work / "bundle.json"), "--", *UNFAKED, "sh", "-c", COMMAND, "command", str(work)),
    ]
    proc = subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (work / "started").exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"fiat run exited {proc.returncode} before the command started: {out}\n{err}")
            assert time.monotonic() < deadline, "the command did not start"
            time.sleep(0.02)
        started = uptime_in(work / "started")
        if step is not None:
            time.sleep(max(0.0, started + 1.0 - uptime()))
            rc.write_text(step + "\n")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    halted = work / "halted"
    ran = uptime_in(halted) - started if halted.exists() else float("inf")
    start = out.rfind("{\n")
    assert start >= 0, f"no JSON result: {out}\n{err}"
    return proc.returncode, json.loads(out[start:]), ran, err


@pytest.mark.skipif(
    LIBFAKETIME is None,
    reason="libfaketime is not installed (Debian: apt-get install faketime; scripts/system-deps.sh)",
)
def test_fiat_run_under_a_stepped_wall_clock_halts_on_time(server: FiatServer, tmp_path: Path) -> None:
    """maxDuration 4 s: without a step, an hour back or an hour forward, the guard halts the
    command at max-duration, about 4 s after it started — not an hour later, not at once."""
    root = tmp_path / "trust-root.json"
    ok(fiat_cli("trust-root", "export", "--home", server.home, "-o", root))
    code, result, plain, _ = run_under_faketime(server, tmp_path / "plain", None)
    assert (code, result["outcome"]) == (EXIT_HALTED, "halted"), result
    assert result["reason"].startswith("halted at max-duration"), result
    for step in ("-1h", "+1h"):
        code, result, ran, err = run_under_faketime(server, tmp_path / step, step)
        assert (code, result["outcome"]) == (EXIT_HALTED, "halted"), f"{step}: {result}\n{err}"
        assert result["reason"].startswith("halted at max-duration"), f"{step}: {result}\n{err}"
        print(f"{step}: halted {ran:.2f} s after the command started (without the step: {plain:.2f} s)")
        # At maximum duration, give or take scheduling: not at once (before the fix, +1h halted
        # at trust-fresh right after the step) nor later (-1h let the command run its 30 s).
        # The command's own start comes a moment after the guard's, hence the - 1;
        # libfaketime on a loaded machine delays the guard by seconds (the run without a step
        # too), hence the + 12: still less than half the command's 30 s.
        assert MAX_DURATION - 1 <= ran <= MAX_DURATION + 12, f"{step}: ran {ran:.2f} s (without the step {plain:.2f} s)"
        assert "the wall clock stepped" in err, f"{step}: no clock-step warning: {err}"
        # The receipt's times are the guard's steady times: its bundle verifies offline.
        verified = fiat_cli("verify", tmp_path / step / "bundle.json", "--trust-root", root, "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        bundle = Bundle.parse((tmp_path / step / "bundle.json").read_bytes())
        (receipt,) = [s.statement.predicate for s in bundle.statements if s.statement.predicate_type == RECEIPT]
        assert receipt["haltReason"].startswith("max-duration"), receipt
