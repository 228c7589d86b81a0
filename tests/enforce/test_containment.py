"""Containment: a governed command cannot escape, outlive or silence its guard, nor read the home.

Every test drives real processes: a real ``fiat serve`` (a fresh home from ``fiat init`` and
``fiat policy publish`` of the shipped example bundle) and real ``fiat run`` child processes
whose commands try, as an attacker would, to outlive a halt (``setsid``, a daemon's double
fork, ``nohup``), to kill their guard, or to read the home's keys and database.

Each process of a governed tree carries a per-test *marker* in its command line (``sleep
MARKER``, a script named after it), so the tree is found on the host by scanning ``/proc`` —
inside the sandbox's PID namespace the command's own pids mean nothing to the host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fiat
from fiat.enforce.guard import GuardSettings
from fiat.formats.statement import RECEIPT
from fiat.verify import Bundle, verify
from support.evidence import make_execution
from support.processes import FiatServer, cli_env, fiat_text, ok

EXAMPLES = Path(fiat.__file__).resolve().parent / "examples" / "policies"
PERMIT_RE = re.compile(r"permit (pmt_[A-Za-z0-9_-]+)")
PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"
EXIT_HALTED, EXIT_NOT_ESTABLISHED = 124, 126
HEARTBEAT = 0.1
BWRAP = "/usr/bin/bwrap"

pytestmark = pytest.mark.skipif(
    not os.path.exists(BWRAP), reason="bubblewrap is not installed (scripts/system-deps.sh installs it)"
)


# -- processes ------------------------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    return cli_env(extra)


def fiat_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return fiat_text(*args, env=env, timeout=60)


class Server(FiatServer):
    """``fiat serve`` for a fresh home with the example policies, trust states every 100 ms."""

    def __init__(self, home: Path) -> None:
        ok(fiat_cli("init", "--home", home, "--json"))
        ok(fiat_cli("policy", "publish", EXAMPLES, "--home", home, "--json"))
        super().__init__(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "100"})
        self.start()

    def revoke(self, permit_id: str) -> None:
        home, url = self.home, self.url
        ok(fiat_cli("revoke", "--permit", permit_id, "--reason", "test: contain", "--home", home, "--url", url))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("authority") / "home")
    try:
        yield s
    finally:
        s.stop()


def marked(marker: str) -> list[int]:
    """The live (non-zombie) processes of the host whose command line contains ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(name))
    return found


def _cmdlines(marker: str) -> list[bytes]:
    out = []
    for pid in marked(marker):
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            continue
    return out


def assert_tree_gone(marker: str, since: float, what: str) -> None:
    """No process of the tree is alive 1 s after ``since`` (time.monotonic())."""
    while marked(marker) and time.monotonic() < since + 1.0:
        time.sleep(0.02)
    left = marked(marker)
    for pid in left:  # never leave them behind for the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{what}: {len(left)} process(es) of the governed tree alive 1 s later"


class Run:
    """``fiat run --json`` of a shell script in ``work``; stderr to a file, exit code timed."""

    def __init__(self, server: Server, work: Path, script: str, *, marker: str, **env: str) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.work, self.marker = work, marker
        self.evidence = work / "bundle.json"
        path = work / f"escape-{marker}.sh"
        path.write_text(script.replace("MARKER", marker))
        self.err = work / "stderr.txt"
        args = [
            *(sys.executable, "-m", "fiat.cli.main", "run", "--json", "--home", str(server.home), "--url", server.url),
            *("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE),
            *("--evidence", str(self.evidence), "--", "sh", str(path)),
        ]
        run_env = base_env(
            FIAT_RUNTIME_HEARTBEAT_MS=str(int(HEARTBEAT * 1000)),
            FIAT_RUNTIME_STALENESS_MS="2000",
            FIAT_RUNTIME_HALT_GRACE_MS="500",
            **env,
        )
        with self.err.open("w") as err:
            self.proc = subprocess.Popen(args, cwd=work, env=run_env, stdout=subprocess.PIPE, stderr=err, text=True)

    def wait_ready(self) -> str:
        """Wait until the script touched ``ready``; returns the permit id."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (self.work / "ready").exists():
                m = PERMIT_RE.search(self.err.read_text())
                assert m, self.why()
                time.sleep(0.2)  # let the background processes exec
                return m.group(1)
            assert self.proc.poll() is None, f"fiat run exited {self.proc.returncode} early: {self.why()}"
            time.sleep(0.02)
        raise AssertionError(f"the command did not get ready: {self.why()}")

    def finish(self) -> tuple[int, dict[str, Any]]:
        out, _ = self.proc.communicate(timeout=30)
        start = out.rfind("{\n")
        return self.proc.returncode, (json.loads(out[start:]) if start >= 0 else {})

    def receipt(self) -> dict[str, Any]:
        bundle = Bundle.parse(self.evidence.read_bytes())
        (receipt,) = [s.statement.predicate for s in bundle.statements if s.statement.predicate_type == RECEIPT]
        return dict(receipt)

    def why(self) -> str:
        return f"\nstderr: {self.err.read_text()}"

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in marked(self.marker):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for r in started:
        r.cleanup()


def start(runs: list[Run], server: Server, work: Path, script: str, **env: str) -> Run:
    r = Run(server, work, script, marker=str(secrets.randbelow(10**8) + 10**8), **env)
    runs.append(r)
    return r


# -- escapes from a halt ------------------------------------------------------------------------------

SETSID = "setsid sleep MARKER &\n"
DAEMON = (  # the classic daemon: fork, setsid, fork again; the middle process exits
    f"{sys.executable} -c 'import os, sys\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    '        os.execvp("sleep", ["sleep", sys.argv[1]])\n'
    "' MARKER\n"
)
NOHUP = "nohup sleep MARKER.5 >/dev/null 2>&1 &\n"
READY = "touch ready\nexec sleep MARKER\n"


@pytest.mark.parametrize("escape", [SETSID, DAEMON], ids=["setsid-daemon", "double-fork"])
def test_nothing_outlives_a_halt(server: Server, runs: list[Run], tmp_path: Path, escape: str) -> None:
    r = start(runs, server, tmp_path / "run", escape + READY)
    permit = r.wait_ready()
    assert len(marked(r.marker)) >= 3, "the escapees did not start"  # the script, the escapee, the main sleep
    server.revoke(permit)
    code, result = r.finish()
    halted = time.monotonic()
    assert code == EXIT_HALTED and result["reason"].startswith("halted at revocation:"), result
    assert_tree_gone(r.marker, halted, "after the halt")
    assert r.receipt()["containment"] == "namespace"


@pytest.mark.parametrize("containment", ["namespace", "process"])
def test_a_nohup_sleeper_dies_with_a_killed_guard(
    server: Server, runs: list[Run], tmp_path: Path, containment: str
) -> None:
    r = start(runs, server, tmp_path / "run", NOHUP + READY, FIAT_RUNTIME_CONTAINMENT=containment)
    r.wait_ready()
    assert len(marked(r.marker)) >= 2
    r.proc.kill()  # SIGKILL: the guard can do nothing
    r.proc.wait()
    if containment == "process":
        # Documented as weaker: the command itself dies with its guard (PDEATHSIG); what it left
        # behind is swept only by a live guard.
        command = b"sleep\0" + r.marker.encode() + b"\0"
        killed = time.monotonic()
        while command in _cmdlines(r.marker) and time.monotonic() < killed + 1.0:
            time.sleep(0.02)
        assert command not in _cmdlines(r.marker), "the command outlived its SIGKILLed guard"
        return
    assert_tree_gone(r.marker, time.monotonic(), "after the guard's SIGKILL")


def test_the_command_cannot_kill_its_guard(server: Server, runs: list[Run], tmp_path: Path) -> None:
    r = start(runs, server, tmp_path / "run", "kill -9 $PPID\nsleep 0.3\n" + READY)
    permit = r.wait_ready()
    assert r.proc.poll() is None, f"the command killed its guard: {r.why()}"
    server.revoke(permit)
    code, result = r.finish()
    halted = time.monotonic()
    assert code == EXIT_HALTED, result
    assert_tree_gone(r.marker, halted, "after the halt")
    assert r.receipt()["haltReason"].startswith("revocation: ")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_to_the_guard_ends_the_tree(
    server: Server, runs: list[Run], tmp_path: Path, sig: signal.Signals
) -> None:
    r = start(runs, server, tmp_path / "run", SETSID + "sleep MARKER &\n" + READY)
    r.wait_ready()
    r.proc.send_signal(sig)
    code, result = r.finish()
    assert_tree_gone(r.marker, time.monotonic(), f"after {sig.name} to fiat run")
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        return
    assert code == EXIT_HALTED, (result, r.why())
    assert result["reason"] == f"halted at signal: the guard received {sig.name}", result
    receipt = r.receipt()
    assert receipt["outcome"] == "halted" and receipt["haltReason"] == f"signal: the guard received {sig.name}"


# -- the home is hidden --------------------------------------------------------------------------------


def test_the_command_cannot_read_the_home(server: Server, runs: list[Run], tmp_path: Path) -> None:
    home = server.home
    keys = sorted(str(p) for p in (home / "keys").glob("*.pem"))
    assert keys and (home / "keys" / "admin.token").exists() and (home / "fiat.db").exists()
    targets = [str(home / "keys" / "admin.token"), *keys, str(home / "fiat.db")]
    script = "".join(f"cat {t} && echo READ-OK\n" for t in targets) + "ls -A " + str(home) + " | wc -l\n"
    r = start(runs, server, tmp_path / "run", script + "touch ready\n")
    code, _ = r.finish()
    output = r.err.read_text()
    assert code == 0, output  # `wc -l` is the last command: the run itself completed
    assert "READ-OK" not in output
    assert (home / "keys" / "admin.token").read_text().strip() not in output
    assert "SQLite format 3" not in output and "PRIVATE KEY" not in output
    assert output.count("No such file or directory") == len(targets), output
    assert "\n0\n" in output, "the home is not empty inside the sandbox"


def test_hidden_and_readonly_paths(server: Server, runs: list[Run], tmp_path: Path) -> None:
    secret, frozen = tmp_path / "secret", tmp_path / "frozen"
    secret.mkdir()
    (secret / "token").write_text("hunter2")
    frozen.mkdir()
    script = f"ls -A {secret} | wc -l\ncat {secret}/token\necho changed > {frozen}/file && echo WROTE\ntouch ready\n"
    env = {"FIAT_RUNTIME_HIDDEN_PATHS": str(secret), "FIAT_RUNTIME_READONLY_PATHS": str(frozen)}
    r = start(runs, server, tmp_path / "run", script, **env)
    code, _ = r.finish()
    output = r.err.read_text()
    assert code == 0, output  # `touch ready` is the last command: the run itself completed
    assert "\n0\n" in output and "hunter2" not in output and "WROTE" not in output, output
    assert "Read-only file system" in output, output
    assert not (frozen / "file").exists() and (secret / "token").read_text() == "hunter2"


# -- unavailable containment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bwrap", "says"),
    [
        ("/nonexistent/bwrap", "apt-get install bubblewrap"),
        ("/bin/false", "could not set up the sandbox"),
    ],
    ids=["missing", "fails"],
)
def test_unavailable_namespace_containment_refuses_to_start(
    server: Server, runs: list[Run], tmp_path: Path, bwrap: str, says: str
) -> None:
    r = start(runs, server, tmp_path / "run", "touch started\n", FIAT_RUNTIME_BWRAP_PATH=bwrap)
    code, result = r.finish()
    assert code == EXIT_NOT_ESTABLISHED, result
    assert result["outcome"] == "not-established" and says in result["reason"], result
    assert 'runtime.containment = "process"' in result["reason"]
    assert result["permitId"] is None  # refused before any permit was asked for
    assert not (r.work / "started").exists(), "the command ran without its containment"


# -- ordinary commands run unchanged ---------------------------------------------------------------------


@pytest.mark.parametrize("containment", ["namespace", "process"])
def test_ordinary_commands_run_unchanged(server: Server, tmp_path: Path, containment: str) -> None:
    env = base_env(FIAT_RUNTIME_CONTAINMENT=containment)
    common = [
        *("run", "--home", str(server.home), "--url", server.url),
        *("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE),
    ]
    bundle = tmp_path / "bundle.json"
    py = fiat_cli(*common, "--evidence", bundle, "--", sys.executable, "-c", "print('ok from python')", env=env)
    assert py.returncode == 0 and py.stdout == "ok from python\n", py.stdout + py.stderr
    sh = fiat_cli(*common, "--", "sh", "-c", "echo ok; exit 3", env=env)
    assert sh.returncode == 3 and sh.stdout == "ok\n", sh.stdout + sh.stderr
    missing = fiat_cli(*common, "--", "no-such-command-anywhere", env=env)
    assert missing.returncode == 127, missing.stdout + missing.stderr
    trust_root = tmp_path / "trust-root.json"
    ok(fiat_cli("trust-root", "export", "--home", server.home, "-o", trust_root))
    verdict = ok(fiat_cli("verify", bundle, "--trust-root", trust_root))
    assert "verified: execution" in verdict.stdout and f"(containment: {containment})" in verdict.stdout
    assert f"containment: {containment}" in verdict.stdout.split("receipt", 1)[1].splitlines()[0]


def test_a_bundle_from_before_shows_containment_not_recorded(tmp_path: Path) -> None:
    execution = make_execution(tmp_path / "home")
    result = verify(execution.bundle, execution.trust_root())
    assert result.verified and result.containment is None
    receipt = next(s for s in result.steps if s.name == "receipt")
    assert receipt.detail.endswith("containment: not recorded"), receipt.detail
    assert result.to_json()["containment"] is None


# -- fiat.governed(isolate=True) ---------------------------------------------------------------------------


def test_isolated_grandchild_dies_on_a_halt(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watched = tmp_path / "weights.bin"
    watched.write_bytes(b"v1")
    monkeypatch.setenv("FIAT_RUNTIME_FILES", str(watched))
    marker = str(secrets.randbelow(10**8) + 10**8)
    ready = tmp_path / "ready"

    @fiat.governed(
        principal=PRINCIPAL,
        action=ACTION,
        resource=RESOURCE,
        context={"command": {"argv": [sys.executable, *sys.argv], "cwd": str(tmp_path)}},
        home=server.home,
        url=server.url,
        settings=GuardSettings(heartbeat=HEARTBEAT, staleness=2.0, grace=0.3),
        isolate=True,
    )
    def crunch() -> int:
        subprocess.Popen(["sleep", marker])  # a grandchild
        subprocess.Popen(["setsid", "sleep", marker])  # one in its own session
        ready.touch()
        time.sleep(60)
        return 42

    def drift() -> None:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        watched.write_bytes(b"v2")

    threading.Thread(target=drift, daemon=True).start()
    try:
        with pytest.raises(fiat.Halt) as info:
            crunch()
        halted = time.monotonic()
        assert info.value.step == "environment", info.value
        assert_tree_gone(marker, halted, "after the isolated function's halt")
    finally:
        for pid in marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_isolated_function_leaves_nothing_behind_when_it_returns(server: Server, tmp_path: Path) -> None:
    marker = str(secrets.randbelow(10**8) + 10**8)

    @fiat.governed(
        principal=PRINCIPAL,
        action=ACTION,
        resource=RESOURCE,
        context={"command": {"argv": [sys.executable, *sys.argv], "cwd": str(tmp_path)}},
        home=server.home,
        url=server.url,
        isolate=True,
    )
    def spawn() -> str:
        subprocess.Popen(["setsid", "sleep", marker])
        time.sleep(0.2)
        return "returned"

    assert spawn() == "returned"
    assert_tree_gone(marker, time.monotonic(), "after the isolated function returned")


def test_a_governed_block_records_that_it_ran_in_process(server: Server, tmp_path: Path) -> None:
    with fiat.governed(
        principal=PRINCIPAL,
        action=ACTION,
        resource=RESOURCE,
        context={"command": {"argv": [sys.executable, *sys.argv], "cwd": str(tmp_path)}},
        home=server.home,
        url=server.url,
    ) as g:
        g.check()
    bundle = tmp_path / "bundle.json"
    ok(fiat_cli("bundle", g.permit_id, "--home", server.home, "-o", bundle))
    (receipt,) = [
        s.statement for s in Bundle.parse(bundle.read_bytes()).statements if s.statement.predicate_type == RECEIPT
    ]
    assert receipt.predicate["containment"] == "none"


# -- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("FIAT_RUNTIME_CONTAINMENT", "chroot", "runtime.containment 'chroot' is not a containment"),
        ("FIAT_RUNTIME_HIDDEN_PATHS", "relative/dir", "runtime.hidden_paths: 'relative/dir' is not an absolute path"),
        ("FIAT_RUNTIME_READONLY_PATHS", "/ok,rel", "runtime.readonly_paths: 'rel' is not an absolute path"),
    ],
)
def test_containment_settings_are_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    from fiat.config import load_config
    from fiat.errors import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(tmp_path)


def test_containment_settings_have_defaults_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fiat.config import load_config

    cfg = load_config(tmp_path)
    assert (cfg.runtime.containment, cfg.runtime.bwrap_path) == ("namespace", "bwrap")
    assert cfg.runtime.hidden_paths == [] and cfg.runtime.readonly_paths == []
    monkeypatch.setenv("FIAT_RUNTIME_CONTAINMENT", "process")
    monkeypatch.setenv("FIAT_RUNTIME_HIDDEN_PATHS", "/a,/b")
    cfg = load_config(tmp_path)
    assert cfg.runtime.containment == "process" and cfg.runtime.hidden_paths == ["/a", "/b"]
    assert cfg.sources["runtime.containment"] == "env FIAT_RUNTIME_CONTAINMENT"


# -- the process tree walk ------------------------------------------------------------------------


def test_children_are_found_from_every_thread_as_a_full_table_scan_finds_them() -> None:
    """``children()`` reads each thread's ``children`` file: a child forked by another thread of
    the parent is still its child (a walk of the main thread's file alone would miss it)."""
    from fiat.enforce import containment

    procs: list[subprocess.Popen[bytes]] = []

    def spawn() -> None:
        procs.append(subprocess.Popen(["sleep", "30"]))

    try:
        spawn()
        threads = [threading.Thread(target=spawn) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        me = os.getpid()
        by_table = {p for p, (pp, _) in containment._table().items() if pp == me}
        mine = {p.pid for p in procs}
        assert mine <= set(containment.children(me))
        assert set(containment.children(me)) == by_table
        assert mine <= set(containment.descendants([me]))
    finally:
        for p in procs:
            p.kill()
            p.wait()
