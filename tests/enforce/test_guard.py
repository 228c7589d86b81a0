"""The runtime guard fails closed: every condition halts a real running command, or never starts it.

Each test drives a real ``fiat run`` child process (``python -m fiat.cli.main run``)
against a real ``fiat serve`` child process (a fresh home made with ``fiat init``
and ``fiat policy publish`` of the shipped example bundle). The governed command
is a small Python script (the *victim*) that

* writes ``started`` first thing (so a command that must never start can be caught),
* spawns a grandchild (``time.sleep(60)``) and writes both pids to ``pids.json``,
* on SIGTERM writes the wall-clock time to ``halted`` and dies of the signal.

The ``halted`` timestamp is the moment the guard acted, so every test checks the
halt came within two heartbeats of the moment the condition became detectable
(plus :data:`SLACK` for process scheduling on a loaded machine), that ``fiat run``
exited 124 and named the step in its ``--json`` result, and that a receipt with
predicate outcome ``halted`` and a ``haltReason`` naming the step was logged
(read from the evidence bundle that ``--evidence FILE`` writes, or from the log).

Attacks on the wire use a small HTTP proxy written here (:class:`Proxy`) between
``fiat run --url`` and the real server: it passes everything through untouched
(the trust stream too, streamed) except what a test tampers with, or it serves its
own trust stream (:class:`FakeTrust`) signed with the home's real authority and
log keys.

The last section holds strict xfails: fail-open gaps found in ``src/`` while writing
these tests. Each passes (and so must lose its marker) once the guard fails closed there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import fiat
from fiat.api.client import AuthorityClient, ClientError
from fiat.authorize.permit import Constraints, PermitRequest, PolicyRef, mint_permit
from fiat.config import load_config
from fiat.enforce.guard import GuardSettings, NotEstablished, Runtime, Session, verify_permit_locally
from fiat.enforce.trust import TrustMonitor, TrustSnapshot
from fiat.errors import VerificationError
from fiat.establish.measure import default_measurer
from fiat.formats import jws
from fiat.formats.action import encode_action_request
from fiat.formats.dsse import Envelope
from fiat.formats.encoding import b64url, b64url_decode
from fiat.formats.statement import RECEIPT, Statement
from fiat.home import keyring, log_signer, trust_root
from fiat.prove.audit import HttpFetcher
from fiat.tlog.checkpoint import Checkpoint, sign_checkpoint
from fiat.tlog.tiles import entry_bundles_for_size, parse_bundle
from fiat.verify import TrustedKey, TrustRoot
from fiat.verify import permit as permit_rules
from fiat.verify.bundle import Bundle
from fiat.verify.trust_state import TRUST_STATE_TYP, verify_trust_state
from support.processes import FIAT, FiatServer, cli_env, free_port, ok
from support.processes import fiat_text as fiat_cli

EXAMPLES = Path(fiat.__file__).resolve().parent / "examples" / "policies"
PERMIT_RE = re.compile(r"permit (pmt_[A-Za-z0-9_-]+)")

HEARTBEAT = 0.1  # FIAT_RUNTIME_HEARTBEAT_MS=100 for every guard here
TRUST_INTERVAL = 0.1  # the server signs and pushes a trust state this often
STALENESS = 2.0  # a generous bound where staleness is not what is tested
SHORT_STALENESS = 0.8  # the bound of the trust-fresh test
# Scheduling allowance on top of "two heartbeats": signal delivery, a Python handler writing a
# file, a loopback HTTP hop, on a 2-core machine running the server, the guard and pytest.
SLACK = 0.3
EXIT_HALTED, EXIT_NOT_ESTABLISHED = 124, 126
PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"

VICTIM = r"""
import json, os, signal, subprocess, sys, time

work, seconds = sys.argv[1], float(sys.argv[2])
open(os.path.join(work, "started"), "w").close()


def on_term(signum, frame):
    with open(os.path.join(work, "halted"), "w") as f:
        f.write(repr(time.time()))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


signal.signal(signal.SIGTERM, on_term)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
tmp = os.path.join(work, "pids.tmp")
with open(tmp, "w") as f:
    json.dump({"pid": os.getpid(), "grandchild": child.pid, "started": time.time()}, f)
os.replace(tmp, os.path.join(work, "pids.json"))
time.sleep(seconds)
child.kill()
child.wait()
"""


# -- processes ------------------------------------------------------------------------------------


def serve_authority(home: Path) -> FiatServer:
    """``fiat serve`` on a free port of 127.0.0.1, pushing a trust state every 100 ms."""
    return FiatServer(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": str(int(TRUST_INTERVAL * 1000))}).start()


def make_home(home: Path) -> Path:
    ok(fiat_cli("init", "--home", home, "--json"))
    ok(fiat_cli("policy", "publish", EXAMPLES, "--home", home, "--json"))
    return home


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    """One authority for the module (tests that kill or repolicy it restore it or use their own)."""
    s = serve_authority(make_home(tmp_path_factory.mktemp("authority") / "home"))
    try:
        yield s
    finally:
        s.stop()


#: The port every :class:`Proxy` of this module listens on: the ``proxied`` server's public URL.
PROXY_PORT = free_port()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    """An authority reached through a :class:`Proxy`: its ``server.public_url`` is the proxy's URL."""
    s = FiatServer(
        make_home(tmp_path_factory.mktemp("proxied") / "home"),
        env={
            "FIAT_AUTHORITY_TRUST_INTERVAL_MS": str(int(TRUST_INTERVAL * 1000)),
            "FIAT_SERVER_PUBLIC_URL": f"http://127.0.0.1:{PROXY_PORT}",
        },
    ).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("victim") / "victim.py"
    path.write_text(VICTIM)
    return path


def process_gone(pid: int, timeout: float = 3.0) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie waiting for init to reap it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


class TrustObserver:
    """Follows a server's trust stream alongside the guard and remembers the newest state's signed time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last_time: float | None = None
        self.states = 0
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            timeout = httpx.Timeout(5.0, read=None)
            with httpx.stream("GET", self.url + "/v1/trust/stream", timeout=timeout) as r:
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        self.last_time = float(jws.parse(line[5:].strip()).claims["time"])
                        self.states += 1


class FiatRun:
    """A ``fiat run --json`` child process governing the victim; stderr/stdout pumped, exit timed."""

    def __init__(
        self,
        server_url: str,
        home: Path,
        victim: Path,
        work: Path,
        *,
        seconds: float = 60,
        staleness: float = STALENESS,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        principal: str = PRINCIPAL,
        extra: tuple[str, ...] = (),
    ) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        self.evidence = work / "bundle.json"
        command = command or [sys.executable, str(victim), str(work), str(seconds)]
        args = [
            *(*FIAT, "run", "--json", "--home", str(home), "--url", server_url),
            *("--principal", principal, "--action", ACTION, "--resource", RESOURCE, *extra),
            *("--evidence", str(self.evidence), "--", *command),
        ]
        run_env = cli_env(
            FIAT_RUNTIME_HEARTBEAT_MS=str(int(HEARTBEAT * 1000)),
            FIAT_RUNTIME_STALENESS_MS=str(int(staleness * 1000)),
            FIAT_RUNTIME_HALT_GRACE_MS="1000",
            # The victim reports its pids, which mean something on this host only outside a PID
            # namespace; tests/test_containment.py covers the default, namespace containment.
            FIAT_RUNTIME_CONTAINMENT="process",
            # A run whose authority is gone retries its receipt's upload this long before it exits
            # (the receipt stays spooled); short here, where exit timing bounds some tests.
            FIAT_RUNTIME_RECEIPT_UPLOAD_S="0.5",
            **(env or {}),
        )
        self.proc = subprocess.Popen(
            args, cwd=work, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout = ""
        self.stderr: list[str] = []
        self.permit_id: str | None = None
        self.permit_seen = threading.Event()
        self.exited_at: float | None = None
        self._exited = threading.Event()
        self._threads = [
            threading.Thread(target=self._pump_out, daemon=True),
            threading.Thread(target=self._pump_err, daemon=True),
            threading.Thread(target=self._wait, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            m = PERMIT_RE.search(line)
            if m and self.permit_id is None:
                self.permit_id = m.group(1)
                self.permit_seen.set()

    def _wait(self) -> None:
        self.proc.wait()
        self.exited_at = time.time()
        self._exited.set()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        pids = self.pids()
        if pids:
            for pid in (pids["pid"], pids["grandchild"]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    # -- observations
    def wait_started(self, timeout: float = 30) -> dict[str, Any]:
        """Wait until the victim wrote its pids (so it and its grandchild run under the guard)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.pids()
            if pids is not None:
                return pids
            if self._exited.is_set():
                raise AssertionError(f"fiat run exited {self.proc.returncode} before the command started: {self.why()}")
            time.sleep(0.01)
        raise AssertionError(f"the command did not start: {self.why()}")

    def pids(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.work / "pids.json").read_text()))
        except (OSError, ValueError):
            return None

    @property
    def started(self) -> bool:
        return (self.work / "started").exists()

    @property
    def halted_at(self) -> float:
        """When the victim received SIGTERM from the guard (wall clock)."""
        return float((self.work / "halted").read_text())

    def finish(self, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        if not self._exited.wait(timeout):
            self.kill()
            raise AssertionError(f"fiat run did not exit within {timeout} s: {self.why()}")
        for t in self._threads:
            t.join(5)
        return self.proc.returncode, self.result()

    def result(self) -> dict[str, Any]:
        start = self.stdout.rfind("{\n")
        assert start >= 0, f"no JSON result on stdout: {self.why()}"
        return dict(json.loads(self.stdout[start:]))

    def why(self) -> str:
        return f"\nstdout: {self.stdout}\nstderr: {''.join(self.stderr)}"


@pytest.fixture
def runs() -> Iterator[list[FiatRun]]:
    """Every FiatRun a test starts is killed (with its command) when the test ends."""
    started: list[FiatRun] = []
    yield started
    for r in started:
        r.kill()


def start_run(runs: list[FiatRun], *args: Any, **kw: Any) -> FiatRun:
    r = FiatRun(*args, **kw)
    runs.append(r)
    return r


# -- evidence -------------------------------------------------------------------------------------


def receipt_from_bundle(path: Path) -> dict[str, Any]:
    bundle = Bundle.parse(path.read_bytes())
    receipts = [s.statement.predicate for s in bundle.statements if s.statement.predicate_type == RECEIPT]
    assert len(receipts) == 1, f"expected one receipt in {path}, got {len(receipts)}"
    return dict(receipts[0])


def receipts_in_log(url: str, since: int = 0) -> list[tuple[int, dict[str, Any]]]:
    """Every receipt in the served log at index >= ``since`` (read from the tlog-tiles entry bundles)."""
    fetcher = HttpFetcher(url + "/log", timeout=10)
    try:
        size = int(fetcher.get("checkpoint").decode().split("\n")[1])
        found = []
        for tile in entry_bundles_for_size(size):
            first = tile.index * 256
            if first + 256 <= since:
                continue
            for i, entry in enumerate(parse_bundle(fetcher.get(tile.path()), tile.width)):
                if first + i < since or not entry.startswith(b"{"):
                    continue
                try:
                    statement = Statement.from_envelope(Envelope.parse(entry))
                except Exception:
                    continue  # a permit token or another kind of entry
                if statement.predicate_type == RECEIPT:
                    found.append((first + i, dict(statement.predicate)))
        return found
    finally:
        fetcher.close()


def log_size(url: str) -> int:
    return int(httpx.get(url + "/log/checkpoint", timeout=5).text.split("\n")[1])


def assert_halted(code: int, result: dict[str, Any], step: str | tuple[str, ...]) -> str:
    steps = (step,) if isinstance(step, str) else step
    assert code == EXIT_HALTED, result
    assert result["exitCode"] == EXIT_HALTED and result["outcome"] == "halted", result
    named = [s for s in steps if result["reason"].startswith(f"halted at {s}:")]
    assert named, f"the --json reason does not name {steps}: {result['reason']!r}"
    return named[0]


def assert_halt_receipt(receipt: dict[str, Any], step: str, permit_id: str | None = None) -> None:
    assert receipt["outcome"] == "halted", receipt
    assert isinstance(receipt["haltReason"], str) and receipt["haltReason"].startswith(f"{step}: "), receipt
    assert receipt["verifications"]["count"] > 0
    if permit_id is not None:
        assert permit_id in (receipt["permit"]["jti"], *receipt.get("renewedFrom", []))


def assert_within_two_heartbeats(latency: float, what: str) -> None:
    print(f"{what}: halted {latency * 1000:.0f} ms after the condition became detectable")
    assert latency <= 2 * HEARTBEAT + SLACK, f"{what}: halted {latency * 1000:.0f} ms after it became detectable"


def flip_signature(token: str) -> str:
    """The same compact JWS with one byte of its signature flipped."""
    head, payload, sig = token.split(".")
    raw = bytearray(b64url_decode(sig, "signature"))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(raw))}"


# -- a tampering proxy ----------------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "upgrade"}


class Proxy:
    """An HTTP proxy on 127.0.0.1 in front of the real server.

    Everything passes through untouched — the ``Host`` header too; DPoP proofs made for the
    proxy's URL verify at the ``proxied`` server, whose ``server.public_url`` is the proxy's
    (as behind a real reverse proxy; any other server refuses them, RFC 9449 §4.3), and
    ``/v1/trust/stream`` is streamed as it comes — except a ``/v1/authorize`` answer that
    ``on_authorize(request, answer)`` rewrites, the trust stream when ``stream`` (a FakeTrust
    or a DeltaTrust) serves it instead, and the request path (and query) when ``rewrite``
    changes it on the way to the server.
    """

    def __init__(
        self,
        upstream: str,
        on_authorize: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
        stream: FakeTrust | DeltaTrust | None = None,
        rewrite: Callable[[str], str] | None = None,
        port: int = 0,
    ) -> None:
        self.upstream, self.on_authorize, self.stream = upstream, on_authorize, stream
        self.rewrite = rewrite
        self.closing = threading.Event()
        self.tampered = 0
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    proxy: Proxy
    protocol_version = "HTTP/1.0"  # one exchange per connection; a stream ends when it closes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}

    def _handle(self) -> None:
        p = self.proxy
        try:
            if self.command == "GET" and self.path.split("?")[0] == "/v1/trust/stream":
                if p.stream is not None:
                    self._fake_stream(p.stream)
                else:
                    self._pass_stream()
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path if p.rewrite is None else p.rewrite(self.path)
            r = httpx.request(self.command, p.upstream + path, headers=self._headers(), content=body, timeout=30)
            data = r.content
            if self.path == "/v1/authorize" and r.status_code == 200 and p.on_authorize is not None:
                data = json.dumps(p.on_authorize(json.loads(body), r.json())).encode()
                p.tampered += 1
            self.send_response(r.status_code)
            for k, v in r.headers.items():
                if k.lower() not in HOP_BY_HOP and k.lower() not in ("date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _pass_stream(self) -> None:
        p = self.proxy
        timeout = httpx.Timeout(5.0, read=None)
        with httpx.stream("GET", p.upstream + self.path, headers=self._headers(), timeout=timeout) as r:
            self.send_response(r.status_code)
            self.send_header("Content-Type", r.headers.get("content-type", "text/event-stream"))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            for chunk in r.iter_raw():
                if p.closing.is_set():
                    return
                self.wfile.write(chunk)
                self.wfile.flush()

    def _fake_stream(self, fake: FakeTrust | DeltaTrust) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        while not self.proxy.closing.is_set():
            token = fake.next_state()
            self.wfile.write(f"event: trust-state\ndata: {token}\n\n".encode())
            self.wfile.flush()
            time.sleep(TRUST_INTERVAL)


class FakeTrust:
    """A trust stream signed with the home's real authority key, carrying checkpoints signed
    with its real log key: valid states (the real current checkpoint, time now, the real
    policy digest, no revocations) until ``turn(bad)`` makes every later state ``bad(self)``."""

    def __init__(self, server: FiatServer) -> None:
        cfg = load_config(server.home, require=True)
        self.rec, self.key = keyring(cfg).signing_key("authority")
        self.signer = log_signer(cfg)
        real = httpx.get(server.url + "/v1/trust/state", timeout=5).json()["state"]
        self.base = dict(jws.parse(real).claims)
        self.note = httpx.get(server.url + "/log/checkpoint", timeout=5).text
        lines = self.note.split("\n")
        self.origin, self.size, self.root = lines[0], int(lines[1]), base64.b64decode(lines[2])
        self.epoch = int(self.base.get("epoch", 0))
        self.bad: Callable[[FakeTrust], str] | None = None
        self.emitted_bad_at: float | None = None
        self.emitted_bad = threading.Event()
        self._lock = threading.Lock()

    def sign(self, **overrides: Any) -> str:
        now = time.time()
        with self._lock:
            self.epoch += 1
            epoch = self.epoch
        claims = {**self.base, "iat": int(now), "time": round(now, 3), "epoch": epoch, "revocations": []}
        claims["checkpoint"] = self.note
        claims.update(overrides)
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.rec.kid, "typ": TRUST_STATE_TYP})

    def checkpoint(self, size: int, root: bytes) -> str:
        return sign_checkpoint(Checkpoint(self.origin, size, root), self.signer).note_bytes.decode()

    def turn(self, bad: Callable[[FakeTrust], str]) -> None:
        self.bad = bad

    def next_state(self) -> str:
        bad = self.bad
        if bad is None:
            return self.sign()
        token = bad(self)
        if self.emitted_bad_at is None:
            self.emitted_bad_at = time.time()
            self.emitted_bad.set()
        return token


class DeltaTrust:
    """The trust stream of a man-in-the-middle (issue 11) that holds no key: states the server
    itself signed, fetched from its public ``GET /v1/trust/state`` — complete ones
    (``?since=0``, as the server's own stream sends) until ``attack`` is set, then deltas
    from a huge revocation epoch (``?since=2**62``), fresh and validly signed but listing no
    revocation at all."""

    HUGE = 2**62

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.attack = threading.Event()
        self.attacked = threading.Event()  # a delta went out

    def next_state(self) -> str:
        since = self.HUGE if self.attack.is_set() else 0
        state = str(httpx.get(f"{self.upstream}/v1/trust/state?since={since}", timeout=5).json()["state"])
        if since:
            self.attacked.set()
        return state


# == the tests ==========================================================================================


def test_completed_run_bundle_verifies(server: FiatServer, victim: Path, runs: list[FiatRun], tmp_path: Path) -> None:
    """The positive case: a command that ends on its own exits 0; its bundle verifies offline."""
    r = start_run(runs, server.url, server.home, victim, tmp_path / "run", seconds=0.5)
    code, result = r.finish()
    assert code == 0 and result["outcome"] == "completed", r.why()
    assert not (r.work / "halted").exists()
    receipt = receipt_from_bundle(r.evidence)
    assert receipt["outcome"] == "completed" and receipt["exitCode"] == 0 and receipt["haltReason"] is None
    assert receipt["verifications"]["count"] > 0
    assert receipt["permit"]["jti"] == result["permitId"] == r.permit_id
    root = tmp_path / "trust-root.json"
    ok(fiat_cli("trust-root", "export", "--home", server.home, "-o", root))
    verified = fiat_cli("verify", r.evidence, "--trust-root", root, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["verified"] is True


# -- 1. trust becomes unverifiable -------------------------------------------------------------------------


def test_authority_killed_halts_at_trust_fresh(victim: Path, runs: list[FiatRun], tmp_path: Path) -> None:
    own = serve_authority(make_home(tmp_path / "home"))  # this test kills its authority
    try:
        observer = TrustObserver(own.url)
        r = start_run(runs, own.url, own.home, victim, tmp_path / "run", staleness=SHORT_STALENESS)
        pids = r.wait_started()
        time.sleep(3 * HEARTBEAT)  # a few verified rounds first
        assert r.proc.poll() is None
        own.proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        own.proc.wait()
        code, result = r.finish()
        observer.thread.join(5)
    finally:
        own.stop()
    assert_halted(code, result, "trust-fresh")
    assert "trust is unverifiable" in result["reason"]
    # The authority is gone, so the receipt is not logged yet — it is spooled, and fiat run says so
    # (tests/enforce/test_spool.py uploads it once the authority is back).
    assert "the receipt is not logged yet" in result["reason"]
    assert result["receiptLogIndex"] is None and not r.evidence.exists()
    assert Path(result["receiptSpooled"]).is_file()
    # Trust became unverifiable when the newest state (signed before the kill) grew older than the
    # bound: the guard must not halt before that, and must halt within two heartbeats after it.
    assert observer.states > 0 and observer.last_time is not None
    assert observer.last_time <= killed_at
    stale_at = observer.last_time + SHORT_STALENESS
    assert r.halted_at >= stale_at - 0.02, f"halted {stale_at - r.halted_at:.3f} s before trust was stale"
    assert_within_two_heartbeats(r.halted_at - stale_at, "trust-fresh")
    assert r.halted_at - killed_at <= SHORT_STALENESS + 2 * HEARTBEAT + SLACK
    # The whole process group is gone: the command and the grandchild it spawned.
    assert process_gone(pids["pid"]), "the command survived the halt"
    assert process_gone(pids["grandchild"]), "the command's grandchild survived the halt"


# -- 2. authorization integrity breaks: the command never starts -------------------------------------------


@pytest.fixture(scope="module")
def other_runtime(proxied: FiatServer) -> tuple[str, Ed25519PrivateKey]:
    """A second runtime key, enrolled with the real authority through `fiat enroll` (POST /v1/enrollments)."""
    key = Ed25519PrivateKey.generate()
    public = b64url(key.public_key().public_bytes_raw())
    p = ok(
        fiat_cli(
            "enroll",
            "--role",
            "runtime",
            "--name",
            "other",
            "--public-key",
            public,
            "--home",
            proxied.home,
            "--url",
            proxied.url,
        )
    )
    kid = jws.jwk_thumbprint(key.public_key().public_bytes_raw())
    assert kid in p.stdout
    return kid, key


def _without_kid(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "runtimeKid"}


def _swap_permit(answer: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    assert decision["decision"] == "allow", decision
    return {**answer, "permit": decision["permit"], "permitId": decision["permitId"]}


class _PublicUrlClient(AuthorityClient):
    """The attacker's own client of the ``proxied`` server, straight to its port (not through the
    proxy, which would tamper with its answers too), with proofs for the server's public URL."""

    def __init__(self, server: FiatServer) -> None:
        super().__init__(server.url)
        self.public = server.env["FIAT_SERVER_PUBLIC_URL"]

    def _proof(self, key: Ed25519PrivateKey, method: str, url: str) -> str:
        return super()._proof(key, method, self.public + url[len(self.url) :])


def _tampers(server: FiatServer, other: tuple[str, Ed25519PrivateKey]) -> dict[str, tuple[str, Callable[..., Any]]]:
    cfg = load_config(server.home, require=True)
    rec, runtime_key = keyring(cfg).signing_key("runtime")

    def flipped(_: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "permit": flip_signature(answer["permit"])}

    def other_runtime_permit(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        # A real permit from the real server, for this very action and environment, bound to another runtime.
        kid, key = other
        with _PublicUrlClient(server) as client:
            return _swap_permit(answer, client.authorize(key, kid, _without_kid(request)))

    def other_command_permit(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        # A real permit for the same principal, action and resource, but another command line.
        body = _without_kid(request)
        body["context"] = {**body["context"], "command": {**body["context"]["command"], "argv": ["true"]}}
        with _PublicUrlClient(server) as client:
            return _swap_permit(answer, client.authorize(runtime_key, rec.kid, body))

    def other_resource_permit(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        # A real permit for another action on another resource (a deploy of service:docs).
        body = {**_without_kid(request), "action": "deploy", "resource": "service:docs"}
        body["context"] = {**body["context"], "version": "1.0.0", "replicas": 2}
        with _PublicUrlClient(server) as client:
            return _swap_permit(answer, client.authorize(runtime_key, rec.kid, body))

    return {
        "flipped-signature": ("permit-signature", flipped),
        "other-runtime": ("permit-cnf", other_runtime_permit),
        "other-command": ("permit-action", other_command_permit),
        "other-resource": ("permit-action", other_resource_permit),
    }


def test_untampered_proxy_is_transparent(
    proxied: FiatServer, victim: Path, runs: list[FiatRun], tmp_path: Path
) -> None:
    """The control for the attacks below: through the proxy, untouched, a run completes (DPoP, the
    streamed trust state, the receipt and the bundle all pass through)."""
    proxy = Proxy(proxied.url, port=PROXY_PORT, on_authorize=lambda _request, answer: answer)
    try:
        r = start_run(runs, proxy.url, proxied.home, victim, tmp_path / "run", seconds=0.3)
        code, result = r.finish()
    finally:
        proxy.close()
    assert proxy.tampered == 1
    assert code == 0 and result["outcome"] == "completed", r.why()
    assert receipt_from_bundle(r.evidence)["outcome"] == "completed"


@pytest.mark.parametrize("tamper", ["flipped-signature", "other-runtime", "other-command", "other-resource"])
def test_tampered_permit_never_starts(
    proxied: FiatServer,
    victim: Path,
    runs: list[FiatRun],
    tmp_path: Path,
    other_runtime: tuple[str, Ed25519PrivateKey],
    tamper: str,
) -> None:
    step, rewrite = _tampers(proxied, other_runtime)[tamper]
    proxy = Proxy(proxied.url, port=PROXY_PORT, on_authorize=rewrite)
    try:
        r = start_run(runs, proxy.url, proxied.home, victim, tmp_path / "run")
        code, result = r.finish()
    finally:
        proxy.close()
    assert proxy.tampered == 1
    assert code == EXIT_NOT_ESTABLISHED, r.why()
    assert result["outcome"] == "not-established", result
    assert result["reason"].startswith(f"{step}: "), result
    assert not r.started, "the command started although its permit failed local verification"
    assert not r.evidence.exists()


@pytest.fixture(scope="module")
def local_permit(server: FiatServer) -> dict[str, Any]:
    """What verify_permit_locally needs, with a minting function using the home's real authority key."""
    cfg = load_config(server.home, require=True)
    ring = keyring(cfg)
    auth_rec, auth_key = ring.signing_key("authority")
    run_rec, run_key = ring.signing_key("runtime")
    enc = encode_action_request(PRINCIPAL, ACTION, RESOURCE, {}, None)
    request, digest = enc.request, enc.digest
    env = "e" * 64

    def mint(
        *, runtime: bytes | None = None, env_digest: str = env, action: str = digest, now: int | None = None, **kw: Any
    ) -> str:
        spec = PermitRequest(
            request,
            runtime or run_key.public_key().public_bytes_raw(),
            PolicyRef("a" * 64, 1, ("bot-shell-in-repo",)),
            env_digest,
            ttl=30,
            constraints=Constraints(120),
            action_digest=action,
        )
        token, _ = mint_permit(
            spec,
            key=kw.get("key", auth_key),
            kid=kw.get("kid", auth_rec.kid),
            issuer=kw.get("issuer", cfg.authority.issuer),
            audience=cfg.authority.audience,
            now=int(time.time()) if now is None else now,
        )
        return token

    return {
        "mint": mint,
        "root": trust_root(cfg),
        "runtime": run_key.public_key().public_bytes_raw(),
        "action": digest,
        "env": env,
        "auth_kid": auth_rec.kid,
        "run_key": run_key,
        "run_kid": run_rec.kid,
    }


def test_verify_permit_locally_rejects_each_tamper(local_permit: dict[str, Any]) -> None:
    lp = local_permit
    mint = lp["mint"]
    now = time.time()

    other_key = Ed25519PrivateKey.generate()
    other_public = other_key.public_key().public_bytes_raw()
    # A second runtime enrolled in the trust root: its permits are valid, but not for this runtime.
    root = dataclasses.replace(
        lp["root"],
        keys=(*lp["root"].keys, TrustedKey(jws.jwk_thumbprint(other_public), "runtime", "other", other_public, 0.0)),
    )

    def check(token: str, at: float = now) -> dict[str, Any]:
        return verify_permit_locally(token, root, lp["runtime"], lp["action"], lp["env"], at, 2.0)

    good = mint()
    assert check(good)["action"]["digest"] == {"sha256": lp["action"]}
    head, payload, _ = good.split(".")
    typ_header = b64url(json.dumps({"alg": "EdDSA", "kid": lp["auth_kid"], "typ": "JWT"}).encode())
    cases = {
        "flipped signature": ("permit-signature", flip_signature(good)),
        "not a JWS": ("permit-signature", "not-a-permit"),
        "unsigned payload swap": (
            "permit-signature",
            f"{head}.{mint(action='b' * 64).split('.')[1]}.{good.split('.')[2]}",
        ),
        "wrong typ": ("permit-signature", f"{typ_header}.{payload}.{good.split('.')[2]}"),
        "signed by a runtime key": ("permit-signature", mint(key=lp["run_key"], kid=lp["run_kid"])),
        "forged under the authority kid": ("permit-signature", mint(key=other_key)),
        "another issuer": ("permit-claims", mint(issuer="evil.example")),
        # A permit minted 60 s ago may predate this home's authority key: that is refused
        # earlier (permit-key-validity); expiry proper is the late check below.
        "minted in the past": (("permit-window", "permit-key-validity"), mint(now=int(now) - 60)),
        "not yet valid": ("permit-window", mint(now=int(now) + 60)),
        "another runtime": ("permit-cnf", mint(runtime=other_public)),
        "a runtime unknown to the trust root": (
            "runtime-key",
            mint(runtime=Ed25519PrivateKey.generate().public_key().public_bytes_raw()),
        ),
        "another action": ("permit-action", mint(action="b" * 64)),
        "another environment": ("permit-environment", mint(env_digest="f" * 64)),
    }
    for name, (step, token) in cases.items():
        with pytest.raises(NotEstablished) as info:
            check(token)
        assert info.value.step in ((step,) if isinstance(step, str) else step), f"{name}: rejected at {info.value.step}"
    # The window is checked against the guard's clock, with the configured skew.
    with pytest.raises(NotEstablished) as info:
        check(good, at=now + 31)
    assert info.value.step == "permit-window"


def test_guard_refuses_a_permit_from_a_retired_authority_key(local_permit: dict[str, Any]) -> None:
    """The guard and the verifier share one set of permit rules: a key retired before ``iat`` signs nothing.

    Before the rules were shared, the guard checked only that ``kid`` named an authority key
    of the trust root, so a permit minted with a retired key was accepted at start.
    """
    lp = local_permit
    now = time.time()
    root: TrustRoot = lp["root"]
    retired = dataclasses.replace(
        root,
        keys=tuple(
            dataclasses.replace(k, valid_until=float(int(now) - 60)) if k.kid == lp["auth_kid"] else k
            for k in root.keys
        ),
    )
    token = lp["mint"]()
    verify_permit_locally(token, root, lp["runtime"], lp["action"], lp["env"], now, 2.0)
    with pytest.raises(NotEstablished) as info:
        verify_permit_locally(token, retired, lp["runtime"], lp["action"], lp["env"], now, 2.0)
    assert info.value.step == "permit-key-validity", info.value


def test_guard_refuses_a_runtime_key_unknown_to_the_trust_root(local_permit: dict[str, Any]) -> None:
    """The cnf key must be a runtime key of the trust root (the verifier's ``runtime-key`` step)."""
    lp = local_permit
    now = time.time()
    root: TrustRoot = lp["root"]
    without_runtime = dataclasses.replace(root, keys=tuple(k for k in root.keys if k.kid != lp["run_kid"]))
    token = lp["mint"]()
    with pytest.raises(NotEstablished) as info:
        verify_permit_locally(token, without_runtime, lp["runtime"], lp["action"], lp["env"], now, 2.0)
    assert info.value.step == "runtime-key", info.value


# -- 3. governance continuity fails (split view), 6. cryptographic verification fails -------------------------


def _two_roots(fake: FakeTrust) -> str:
    return fake.sign(checkpoint=fake.checkpoint(fake.size, bytes(b ^ 0xFF for b in fake.root)))


def _rollback(fake: FakeTrust) -> str:
    assert fake.size > 1
    return fake.sign(checkpoint=fake.checkpoint(fake.size - 1, fake.root))


def _bad_signature(fake: FakeTrust) -> str:
    return flip_signature(fake.sign())


@pytest.mark.parametrize(
    ("bad", "step"),
    [(_two_roots, "log-continuity"), (_rollback, "log-continuity"), (_bad_signature, "trust-signature")],
    ids=["split-view-two-roots", "split-view-rollback", "trust-state-bad-signature"],
)
def test_fake_trust_stream_halts(
    proxied: FiatServer,
    victim: Path,
    runs: list[FiatRun],
    tmp_path: Path,
    bad: Callable[[FakeTrust], str],
    step: str,
) -> None:
    fake = FakeTrust(proxied)
    proxy = Proxy(proxied.url, port=PROXY_PORT, stream=fake)
    try:
        r = start_run(runs, proxy.url, proxied.home, victim, tmp_path / "run")
        pids = r.wait_started()
        time.sleep(3 * TRUST_INTERVAL)  # valid states keep arriving and verifying
        assert r.proc.poll() is None, r.why()
        fake.turn(bad)
        assert fake.emitted_bad.wait(5)
        code, result = r.finish()
    finally:
        proxy.close()
    assert fake.emitted_bad_at is not None
    assert_halted(code, result, step)
    assert_within_two_heartbeats(r.halted_at - fake.emitted_bad_at, step)
    assert process_gone(pids["pid"]) and process_gone(pids["grandchild"])
    assert_halt_receipt(receipt_from_bundle(r.evidence), step, r.permit_id)


# -- 4. the permit expires ---------------------------------------------------------------------------------------


def test_permit_expiry_renewal_refused_halts(
    server: FiatServer, victim: Path, runs: list[FiatRun], tmp_path: Path
) -> None:
    ttl = 2
    short = tmp_path / "short-ttl"
    shutil.copytree(EXAMPLES, short)
    shell = (short / "shell.cedar").read_text()
    assert '@ttl("30")' in shell
    (short / "shell.cedar").write_text(shell.replace('@ttl("30")', f'@ttl("{ttl}")'))
    refusing = tmp_path / "no-shell"
    shutil.copytree(EXAMPLES, refusing)
    # Keep only the forbid rule: no policy permits shell:run any more.
    (refusing / "shell.cedar").write_text(shell[shell.index('@id("lineage-limit")') :])
    (refusing / "tests.json").unlink()  # its cases expect shell:run to be allowed; publish would refuse

    def publish(directory: Path) -> None:
        ok(fiat_cli("policy", "publish", directory, "--home", server.home, "--url", server.url, "--json"))

    publish(short)
    try:
        r = start_run(runs, server.url, server.home, victim, tmp_path / "run")
        r.wait_started()
        time.sleep(ttl + 0.5)  # outlive the first permit: renewals keep it governed
        assert r.proc.poll() is None, f"the command did not outlive its first permit: {r.why()}"
        publish(refusing)
        refused_at = time.time()
        code, result = r.finish()
    finally:
        publish(EXAMPLES)  # the module's server goes back to the example bundle
    step = assert_halted(code, result, ("permit-expiry", "policy-current"))
    print(f"{step}: halted {(r.halted_at - refused_at) * 1000:.0f} ms after the refusing policy was published")
    assert r.halted_at - refused_at < ttl + 2 * HEARTBEAT, f"ran {r.halted_at - refused_at:.2f} s past the refusal"
    receipt = receipt_from_bundle(r.evidence)
    assert_halt_receipt(receipt, step, r.permit_id)
    assert receipt["renewedFrom"], "the permit should have been renewed while the policy allowed it"


class _FreshMonitor:
    """A monitor whose latest trust state is always fresh by the session's (fake) clock."""

    def __init__(self, clock: Callable[[], float], policy: Callable[[], str | None]) -> None:
        self.clock, self.policy = clock, policy

    def snapshot(self) -> TrustSnapshot:
        return TrustSnapshot(state_time=self.clock(), received=self.clock(), policy_digest=self.policy())


def test_session_halts_at_permit_expiry_when_clock_passes_exp(server: FiatServer, tmp_path: Path) -> None:
    cfg = load_config(server.home, require=True)
    rec, key = keyring(cfg).signing_key("runtime")
    fake_now = [time.time()]
    argv = [sys.executable, "-c", "pass"]

    def clock() -> float:
        return fake_now[0]

    session: Session
    monitor = _FreshMonitor(clock, lambda: session.claims.get("policy", {}).get("digest", {}).get("sha256"))
    with AuthorityClient(server.url) as client:
        session = Session(
            client,
            trust_root(cfg),
            Runtime(rec.kid, key),
            monitor,  # type: ignore[arg-type]
            default_measurer(argv, str(tmp_path), [], ["PATH"]),
            PRINCIPAL,
            ACTION,
            RESOURCE,
            {"command": {"argv": argv, "cwd": str(tmp_path)}},
            settings=GuardSettings(heartbeat=HEARTBEAT, staleness=STALENESS),
            # Time passes on both clocks (a step of the wall clock alone changes nothing:
            # tests/enforce/test_clock.py).
            clock=clock,
            mono=clock,
        )
        session.establish()
        exp = float(session.claims["exp"])
        session.check()  # valid now
        fake_now[0] = exp - 15  # still valid, and not yet in the renewal window (ttl/3 = 10 s)
        session.check()
        fake_now[0] = exp  # exp itself is already expired (nbf <= now < exp)
        with pytest.raises(fiat.Halt) as info:
            session.check()
        assert info.value.step == "permit-expiry"
        assert session.halted is info.value
        with pytest.raises(fiat.Halt):  # a halted session stays halted
            session.check()
        # The authority refuses a receipt that ends in its future: this one ends now, by its clock.
        index = session.receipt(time.time() - 15, time.time(), "halted", None)
        receipts = dict(receipts_in_log(server.url, index))
    assert_halt_receipt(receipts[index], "permit-expiry", session.permit_id)


# -- 5. runtime integrity degrades --------------------------------------------------------------------------------


def test_measured_file_changed_halts_at_environment(
    server: FiatServer, victim: Path, runs: list[FiatRun], tmp_path: Path
) -> None:
    watched = tmp_path / "deploy.toml"
    watched.write_text("replicas = 3\n")
    r = start_run(runs, server.url, server.home, victim, tmp_path / "run", env={"FIAT_RUNTIME_FILES": str(watched)})
    pids = r.wait_started()
    time.sleep(3 * HEARTBEAT)
    assert r.proc.poll() is None, r.why()
    watched.write_text("replicas = 300  # changed while running\n")
    changed_at = time.time()
    code, result = r.finish()
    assert_halted(code, result, "environment")
    assert "runtime integrity degraded" in result["reason"]
    assert_within_two_heartbeats(r.halted_at - changed_at, "environment")
    assert process_gone(pids["pid"]) and process_gone(pids["grandchild"])
    receipt = receipt_from_bundle(r.evidence)
    assert_halt_receipt(receipt, "environment", r.permit_id)
    assert receipt["measurements"]["start"] != receipt["measurements"]["end"]


# -- 7. revocation mid-run -----------------------------------------------------------------------------------------


def test_revoking_a_principal_of_the_act_chain_halts_its_delegate(
    victim: Path, runs: list[FiatRun], tmp_path: Path
) -> None:
    """Attack: a sub-agent acts for user:alice (its permit's ``sub``; its own principal is ``act.sub``).
    Revoking alice must halt it at once, though the run's own principal is not revoked: a guard that
    checked only its own principal would run on until its permit expired."""
    home = make_home(tmp_path / "home")
    bundle = tmp_path / "bundle"
    shutil.copytree(EXAMPLES, bundle)
    shell = (bundle / "shell.cedar").read_text()
    (bundle / "shell.cedar").write_text(
        shell.replace('principal == Agent::"release-bot"', 'principal in Team::"platform"')
    )
    ok(fiat_cli("policy", "publish", bundle, "--home", home, "--json"))
    with serve_authority(home) as own:
        context = json.dumps({"command": {"argv": ["plan"], "cwd": str(tmp_path)}})
        root = json.loads(
            ok(
                fiat_cli(
                    *("authorize", "--principal", "user:alice", "--action", ACTION, "--resource", RESOURCE),
                    *("--context", context, "--scope", f"{ACTION}@{RESOURCE}", "--home", home, "--url", own.url),
                    "--json",
                )
            ).stdout
        )
        assert root["decision"] == "allow", root
        r = start_run(runs, own.url, home, victim, tmp_path / "run", extra=("--parent", root["permitId"]))
        r.wait_started()
        assert r.permit_seen.wait(5) and r.permit_id
        time.sleep(3 * HEARTBEAT)
        assert r.proc.poll() is None, r.why()
        ok(fiat_cli("revoke", "--principal", "user:alice", "--reason", "test: left", "--home", home, "--url", own.url))
        returned_at = time.time()
        code, result = r.finish()
        assert_halted(code, result, "revocation")
        assert 'User::"alice"' in result["reason"] and "test: left" in result["reason"], result
        assert_within_two_heartbeats(r.halted_at - returned_at, "revocation of an ancestor principal")
        bundle_doc = json.loads(r.evidence.read_text())
        claims = jws.parse(bundle_doc["permit"]["token"]).claims
        assert claims["sub"] == "user:alice" and claims["act"] == {"sub": PRINCIPAL}, claims
        assert claims["exp"] <= jws.parse(root["permit"]).claims["exp"]


def test_a_child_of_a_renewed_parent_named_by_its_first_permit_verifies_offline(
    victim: Path, runs: list[FiatRun], tmp_path: Path
) -> None:
    """A long-running agent renewed every few seconds starts a sub-agent with the permit id it
    knows (its first, long expired): the authority allows it while the parent chain is live, and
    the child's bundle verifies offline through the parent's renewals it carries (docs/formats.md,
    "Delegation": parentHead). The bundle used to carry the first permit alone, so the child
    failed at lineage ("a child needs a live parent")."""
    ttl = 2
    home = make_home(tmp_path / "home")
    short = tmp_path / "short-ttl"
    shutil.copytree(EXAMPLES, short)
    shell = (short / "shell.cedar").read_text()
    assert '@ttl("30")' in shell
    (short / "shell.cedar").write_text(shell.replace('@ttl("30")', f'@ttl("{ttl}")'))
    ok(fiat_cli("policy", "publish", short, "--home", home, "--json"))
    root = tmp_path / "trust-root.json"
    ok(fiat_cli("trust-root", "export", "--home", home, "-o", root))
    with serve_authority(home) as own:
        parent = start_run(runs, own.url, home, victim, tmp_path / "parent", seconds=12)
        parent.wait_started()
        assert parent.permit_seen.wait(5) and parent.permit_id
        first = parent.permit_id
        time.sleep(2 * ttl + 1.5)  # the first permit expired; the guard renewed it at least twice
        assert parent.proc.poll() is None, f"the parent did not outlive its first permits: {parent.why()}"
        child = start_run(runs, own.url, home, victim, tmp_path / "child", seconds=0.5, extra=("--parent", first))
        code, result = child.finish()
        assert code == 0 and result["outcome"] == "completed", child.why()
        verified = fiat_cli("verify", child.evidence, "--trust-root", root, "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json.loads(verified.stdout)["verified"] is True
        code, result = parent.finish()
        assert code == 0 and result["outcome"] == "completed", parent.why()
    bundle = json.loads(child.evidence.read_text())
    claims = jws.parse(bundle["permit"]["token"]).claims
    (anc,) = bundle["ancestors"]
    first_claims = jws.parse(anc["permit"]["token"]).claims
    renewals = [jws.parse(r["token"]).claims for r in anc["renewals"]]
    assert claims["parent"] == first_claims["jti"] == first
    assert claims["iat"] >= first_claims["exp"], "the child was issued after the parent's first permit expired"
    assert len(renewals) >= 2 and renewals[0]["renews"] == first, renewals
    head = renewals[-1]
    assert claims["delegation"]["parentHead"] == head["jti"] and claims["delegation"]["parentExp"] == head["exp"]
    assert head["nbf"] <= claims["iat"] < head["exp"] and claims["exp"] <= head["exp"]
    # The parent's own evidence (its chain's last permit) verifies too, and names the same chain.
    parent_receipt = receipt_from_bundle(parent.evidence)
    chain = [*parent_receipt["renewedFrom"], parent_receipt["permit"]["jti"]]
    assert chain[: len(renewals) + 1] == [first, *(r["jti"] for r in renewals)], chain
    verified = fiat_cli("verify", parent.evidence, "--trust-root", root, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_revocation_via_cli_halts_within_a_second(
    server: FiatServer, victim: Path, runs: list[FiatRun], tmp_path: Path
) -> None:
    r = start_run(runs, server.url, server.home, victim, tmp_path / "run")
    pids = r.wait_started()
    assert r.permit_seen.wait(5) and r.permit_id
    time.sleep(3 * HEARTBEAT)
    assert r.proc.poll() is None, r.why()
    revoked = fiat_cli(
        "revoke",
        "--permit",
        r.permit_id,
        "--reason",
        "test: operator revoked",
        "--home",
        server.home,
        "--url",
        server.url,
    )
    returned_at = time.time()
    ok(revoked)
    code, result = r.finish()
    assert r.exited_at is not None
    assert_halted(code, result, "revocation")
    assert "test: operator revoked" in result["reason"]
    print(f"revocation: fiat run exited {(r.exited_at - returned_at) * 1000:.0f} ms after `fiat revoke` returned")
    assert r.exited_at - returned_at < 1.0, (
        f"fiat run exited {r.exited_at - returned_at:.3f} s after `fiat revoke` returned"
    )
    assert_within_two_heartbeats(r.halted_at - returned_at, "revocation")
    assert isinstance(result["haltLatencyMs"], float | int)
    assert process_gone(pids["pid"]) and process_gone(pids["grandchild"])
    assert_halt_receipt(receipt_from_bundle(r.evidence), "revocation", r.permit_id)


# -- issue 11: the trust state a guard depends on -----------------------------------------------------------


def _state_claims(token: str) -> dict[str, Any]:
    return dict(jws.parse(token).claims)


@pytest.fixture(scope="module")
def mitm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FiatServer, Proxy]]:
    """An authority whose public URL is a proxy's (its DPoP proofs name the URL the guard uses),
    and that proxy, passing everything through until a test gives it a stream and a rewrite."""
    proxy = Proxy("")
    home = make_home(tmp_path_factory.mktemp("mitm") / "home")
    env = {"FIAT_AUTHORITY_TRUST_INTERVAL_MS": str(int(TRUST_INTERVAL * 1000)), "FIAT_SERVER_PUBLIC_URL": proxy.url}
    s = FiatServer(home, env=env).start()
    proxy.upstream = s.url
    try:
        yield s, proxy
    finally:
        proxy.close()
        s.stop()


@pytest.mark.parametrize(
    ("rewrite_state", "step"),
    [(False, "revocation"), (True, "trust-continuity")],
    ids=["mitm-stream", "mitm-stream-and-state"],
)
def test_mitm_delta_states_cannot_hide_a_revocation(
    mitm_server: tuple[FiatServer, Proxy],
    victim: Path,
    runs: list[FiatRun],
    tmp_path: Path,
    rewrite_state: bool,
    step: str,
) -> None:
    """Issue 11: a man-in-the-middle on plain HTTP fed the guard fresh states the server signed,
    fetched from ``GET /v1/trust/state?since=<huge>`` — deltas that list no revocation — and
    the revoked run kept going and exited 0. Now such a delta leaves a gap in the guard's
    revocations (trust-continuity): the guard fetches a complete state, which names the
    revocation (halt at ``revocation``); when the MITM answers that fetch with a delta too,
    the gap stays open and the guard halts at ``trust-continuity``."""
    server, proxy = mitm_server
    mitm = DeltaTrust(server.url)

    def rewrite(path: str) -> str:
        if rewrite_state and mitm.attack.is_set() and path.split("?")[0] == "/v1/trust/state":
            return f"/v1/trust/state?since={DeltaTrust.HUGE}"
        return path

    proxy.stream, proxy.rewrite = mitm, rewrite
    try:
        # Long enough that the revocation below comes well before the command's end on a loaded machine.
        r = start_run(runs, proxy.url, server.home, victim, tmp_path / "run", seconds=25)
        pids = r.wait_started()
        assert r.permit_seen.wait(5) and r.permit_id
        mitm.attack.set()
        assert mitm.attacked.wait(5)
        time.sleep(3 * TRUST_INTERVAL)
        reason = "test: revoked behind a man-in-the-middle"
        ok(fiat_cli("revoke", "--permit", r.permit_id, "--reason", reason, "--home", server.home, "--url", server.url))
        code, result = r.finish(timeout=40)
    finally:
        mitm.attack.clear()
        proxy.stream, proxy.rewrite = None, None
    assert_halted(code, result, step)
    if step == "revocation":
        assert reason in result["reason"], result
    else:
        assert "only the revocations after epoch" in result["reason"], result
    assert process_gone(pids["pid"]) and process_gone(pids["grandchild"])
    assert_halt_receipt(receipt_from_bundle(r.evidence), step, r.permit_id)


def test_trust_monitor_folds_a_delta_only_without_a_gap(server: FiatServer) -> None:
    """trust-continuity on the monitor itself: a complete state is always folded; a delta from
    an epoch the monitor has reached is folded without a fetch; a delta from a later epoch is
    not folded, and when no complete state can be fetched instead the gap halts guards until
    a complete state closes it. An older state is ignored (trust-order): it never refreshes."""
    target = f"pmt_trust_continuity_{time.time_ns()}"
    home, url = server.home, server.url
    ok(fiat_cli("revoke", "--permit", target, "--reason", "test: continuity", "--home", home, "--url", url))
    cfg = load_config(server.home, require=True)
    root = trust_root(cfg)
    with AuthorityClient(server.url) as client:
        older = client.trust_state(0)
        time.sleep(0.05)
        complete = client.trust_state(0)
        covered = _state_claims(complete)["revocationEpoch"]
        assert covered >= 1 and _state_claims(complete)["revocationsSince"] == 0
        assert all(r["epoch"] <= covered for r in _state_claims(complete)["revocations"])
        assert ("permit", target) in {(r["kind"], r["target"]) for r in _state_claims(complete)["revocations"]}
        time.sleep(0.05)
        delta = client.trust_state(covered)
        time.sleep(0.05)
        gap = client.trust_state(covered + 1000)
        time.sleep(0.05)
        latest = client.trust_state(0)

    # Against the real server: the gap is closed by fetching a complete state.
    live = TrustMonitor(server.url, root)  # fed by hand, never started
    live.accept(gap)
    snap = live.snapshot()
    assert snap.continuity_failure is None and snap.state_time is not None, snap
    assert snap.revocation_epoch >= covered and ("permit", target) in snap.revocations

    # Against an unreachable authority: no complete state can be had, so the gap stays open.
    dead = TrustMonitor(f"http://127.0.0.1:{free_port()}", root)
    dead.accept(gap)
    snap = dead.snapshot()
    assert snap.state_time is None and snap.continuity_failure is not None, snap
    assert snap.continuity_failure.startswith("trust-continuity:"), snap
    dead.accept(complete)
    first = dead.snapshot()
    assert first.continuity_failure is None and first.revocation_epoch == covered
    dead.accept(older)  # older than the newest seen: ignored
    assert dead.snapshot().state_time == first.state_time and dead.snapshot().received == first.received
    dead.accept(delta)  # from the monitor's own epoch: folded, no fetch needed
    assert dead.snapshot().state_time == _state_claims(delta)["time"] and dead.snapshot().continuity_failure is None
    dead.accept(gap)
    snap = dead.snapshot()
    assert snap.continuity_failure is not None and snap.state_time == _state_claims(delta)["time"], snap
    dead.accept(latest)  # a complete state closes the gap
    assert dead.snapshot().continuity_failure is None


def test_a_retired_authority_key_signs_no_trust_state_and_no_permit(tmp_path: Path) -> None:
    """Issue 11: guards accepted permits and trust states from a retired authority key. After
    ``fiat keys rotate --role authority``, the retired key's validity ends at the rotation:

    * a state it signs that claims an ``iat`` inside that period but is dated (``time``, what
      freshness is measured from) after it is refused at ``trust-signature`` — a cryptographic
      failure: only a holder of the retired key signs that;
    * a state it signed before the rotation, arriving after it, is refused at
      ``trust-key-validity``: it gives no freshness, but is no forgery, so it halts nothing;
    * a permit it signed before the rotation (``iat`` inside its period) is not used after:
      ``permit-key-validity`` at the guard's clock; the offline verifier judges it at the
      receipt's start, so an execution from before the rotation still verifies."""
    home = make_home(tmp_path / "home")
    cfg = load_config(home, require=True)
    ring = keyring(cfg)
    old_rec, old_key = ring.signing_key("authority")
    _, run_key = ring.signing_key("runtime")
    while time.time() < old_rec.valid_from + 2.5:  # room for an iat inside the retiring key's period
        time.sleep(0.1)
    ok(fiat_cli("keys", "rotate", "--role", "authority", "--home", home, "--json"))
    root = trust_root(cfg)
    old = root.find(old_rec.kid, "authority")
    assert old is not None and old.valid_until is not None, root
    before = int(old.valid_until) - 1  # a second inside its period
    assert old.valid_at(before)
    now = time.time()

    def state(iat: int, at: float) -> str:
        claims = {
            "iss": cfg.authority.issuer,
            "iat": iat,
            "time": round(at, 3),
            "epoch": 1,
            "policy": None,
            "revocationEpoch": 0,
            "revocationsSince": 0,
            "revocations": [],
        }
        return jwt.encode(claims, old_key, algorithm="EdDSA", headers={"kid": old_rec.kid, "typ": TRUST_STATE_TYP})

    forged = state(before, now)  # an old iat, dated now
    with pytest.raises(VerificationError) as info:
        verify_trust_state(forged, root)
    assert info.value.step == "trust-signature", info.value
    monitor = TrustMonitor(f"http://127.0.0.1:{free_port()}", root)
    monitor.accept(forged)
    snap = monitor.snapshot()
    assert snap.state_time is None and (snap.crypto_failure or "").startswith("trust-signature:"), snap

    superseded = state(before, before + 0.5)
    verify_trust_state(superseded, root)  # valid when it was signed
    with pytest.raises(VerificationError) as info:
        verify_trust_state(superseded, root, now=now)
    assert info.value.step == "trust-key-validity", info.value
    monitor = TrustMonitor(f"http://127.0.0.1:{free_port()}", root)
    monitor.accept(superseded)
    snap = monitor.snapshot()
    assert snap.state_time is None and snap.crypto_failure is None, snap
    assert (snap.last_error or "").startswith("trust-key-validity:"), snap

    enc = encode_action_request(PRINCIPAL, ACTION, RESOURCE, {}, None)
    runtime = run_key.public_key().public_bytes_raw()
    spec = PermitRequest(
        enc.request, runtime, PolicyRef("a" * 64, 1, ("p",)), "e" * 64, ttl=60, action_digest=enc.digest
    )
    token, _ = mint_permit(
        spec, key=old_key, kid=old_rec.kid, issuer=cfg.authority.issuer, audience=cfg.authority.audience, now=before
    )
    with pytest.raises(NotEstablished) as refused:
        verify_permit_locally(token, root, runtime, enc.digest, "e" * 64, now, 2.0)
    assert refused.value.step == "permit-key-validity" and "when the permit is used" in refused.value.reason
    parsed = jws.parse(token)
    permit_rules.check_permit(parsed, root, used_at=float(before))  # the verifier: a run before the rotation
    with pytest.raises(VerificationError) as info:
        permit_rules.check_permit(parsed, root, used_at=now)  # ... and one after it
    assert info.value.step == "permit-key-validity"


# -- 8. fiat.governed ---------------------------------------------------------------------------------------------

GOVERNED_SETTINGS = GuardSettings(heartbeat=HEARTBEAT, staleness=STALENESS, grace=0.5)


def _governed(server: FiatServer, tmp_path: Path, **kw: Any) -> fiat.governed:
    context = {"command": {"argv": [sys.executable, *sys.argv], "cwd": str(tmp_path)}}
    return fiat.governed(
        principal=PRINCIPAL,
        action=ACTION,
        resource=RESOURCE,
        context=context,
        home=server.home,
        url=server.url,
        settings=GOVERNED_SETTINGS,
        **kw,
    )


def test_revoking_the_first_permit_halts_a_renewed_run_and_its_chain_is_never_renewed(
    server: FiatServer, victim: Path, runs: list[FiatRun], tmp_path: Path
) -> None:
    """Issue 11: revoking the permit id `fiat run` printed did nothing once the guard had renewed it
    (the guard checked only its current permit, and the authority renewed the revoked chain)."""
    ttl = 2
    short = tmp_path / "short-ttl"
    shutil.copytree(EXAMPLES, short)
    shell = (short / "shell.cedar").read_text()
    assert '@ttl("30")' in shell
    (short / "shell.cedar").write_text(shell.replace('@ttl("30")', f'@ttl("{ttl}")'))
    ok(fiat_cli("policy", "publish", short, "--home", server.home, "--url", server.url, "--json"))
    try:
        r = start_run(runs, server.url, server.home, victim, tmp_path / "run")
        r.wait_started()
        assert r.permit_seen.wait(5) and r.permit_id
        time.sleep(ttl + 1.0)  # outlive the first permit: the guard renewed it at least once
        assert r.proc.poll() is None, f"the command did not outlive its first permit: {r.why()}"
        revoked = fiat_cli(
            "revoke", "--permit", r.permit_id, "--reason", "test: first of the chain",
            "--home", server.home, "--url", server.url,
        )  # fmt: skip
        returned_at = time.time()
        ok(revoked)
        code, result = r.finish()
    finally:
        ok(fiat_cli("policy", "publish", EXAMPLES, "--home", server.home, "--url", server.url, "--json"))
    assert_halted(code, result, "revocation")
    assert "test: first of the chain" in result["reason"]
    print(f"revocation of the chain's first permit: halted {(r.halted_at - returned_at) * 1000:.0f} ms after it")
    assert r.halted_at - returned_at < 3.0, f"halted {r.halted_at - returned_at:.2f} s after `fiat revoke` returned"
    receipt = receipt_from_bundle(r.evidence)
    assert_halt_receipt(receipt, "revocation", r.permit_id)
    assert receipt["renewedFrom"] and receipt["renewedFrom"][0] == r.permit_id, receipt
    last = receipt["permit"]["jti"]
    assert last != r.permit_id
    # The authority refuses to extend the revoked chain from its last permit.
    bundle = Bundle.parse(r.evidence.read_bytes())
    cfg = load_config(server.home, require=True)
    rec, key = keyring(cfg).signing_key("runtime")
    body = {
        **{k: bundle.action_request[k] for k in ("principal", "action", "resource", "context", "parent")},
        "renews": last,
    }
    with AuthorityClient(server.url) as client, pytest.raises(ClientError) as refused:
        client.authorize(key, rec.kid, body)
    assert refused.value.status == 403 and f"the revocation of {r.permit_id} covers" in str(refused.value), (
        refused.value
    )


def test_governed_sync_block_halted_by_revocation(server: FiatServer, tmp_path: Path) -> None:
    revoked_at: list[float] = []

    def revoke(permit_id: str) -> None:
        p = fiat_cli(
            "revoke", "--permit", permit_id, "--reason", "test: governed", "--home", server.home, "--url", server.url
        )
        revoked_at.append(time.time())
        ok(p)

    handle = None
    rounds = 0
    revoker = None
    with pytest.raises(fiat.Halt) as info, _governed(server, tmp_path) as g:
        handle = g
        revoker = threading.Thread(target=revoke, args=(g.permit_id,), daemon=True)
        revoker.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            g.check()
            rounds += 1
            time.sleep(0.01)
    halted_at = time.time()
    assert revoker is not None
    revoker.join(30)
    assert info.value.step == "revocation", info.value
    assert "test: governed" in info.value.reason
    assert rounds > 0 and revoked_at
    # `fiat revoke` returns after the server pushed the revocation: the block is halted by then, or
    # within two heartbeats of it.
    assert_within_two_heartbeats(halted_at - revoked_at[0], "governed revocation")
    assert handle is not None and handle.halted is info.value
    assert handle.receipt_index is not None
    receipts = dict(receipts_in_log(server.url, handle.receipt_index))
    assert_halt_receipt(receipts[handle.receipt_index], "revocation", handle.permit_id)


def test_governed_async_function_cancelled(server: FiatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watched = tmp_path / "model.bin"
    watched.write_bytes(b"v1")
    monkeypatch.setenv("FIAT_RUNTIME_FILES", str(watched))
    since = log_size(server.url)
    events: dict[str, float] = {}

    @_governed(server, tmp_path)
    async def job() -> str:
        await asyncio.sleep(3 * HEARTBEAT)
        watched.write_bytes(b"v2: swapped under the running job")
        events["changed"] = time.time()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events["cancelled"] = time.time()
            raise
        return "finished"

    started = time.monotonic()
    with pytest.raises(fiat.Halt) as info:
        asyncio.run(job())
    assert time.monotonic() - started < 10
    assert info.value.step == "environment", info.value
    assert "cancelled" in events, "the coroutine was not cancelled"
    assert_within_two_heartbeats(events["cancelled"] - events["changed"], "governed async")
    receipts = receipts_in_log(server.url, since)
    assert len(receipts) == 1, receipts
    assert_halt_receipt(receipts[0][1], "environment")


def test_governed_isolated_child_killed_hard(
    server: FiatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = tmp_path / "weights.bin"
    watched.write_bytes(b"v1")
    monkeypatch.setenv("FIAT_RUNTIME_FILES", str(watched))
    pidfile = tmp_path / "child.pid"
    since = log_size(server.url)
    changed: list[float] = []

    @_governed(server, tmp_path, isolate=True)
    def crunch() -> int:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn child: only SIGKILL stops it
        pidfile.write_text(str(os.getpid()))
        time.sleep(60)
        return 42

    def drift() -> None:
        deadline = time.monotonic() + 20
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(3 * HEARTBEAT)
        watched.write_bytes(b"v2")
        changed.append(time.time())

    threading.Thread(target=drift, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(fiat.Halt) as info:
        crunch()
    raised_at = time.time()
    assert time.monotonic() - started < 15
    assert info.value.step == "environment", info.value
    assert changed
    # Detection within two heartbeats, then SIGTERM (ignored), the grace period, SIGKILL.
    assert raised_at - changed[0] <= 2 * HEARTBEAT + GOVERNED_SETTINGS.grace + SLACK + 0.5
    assert process_gone(int(pidfile.read_text()), timeout=1), "the isolated child survived the halt"
    receipts = receipts_in_log(server.url, since)
    assert len(receipts) == 1, receipts
    assert_halt_receipt(receipts[0][1], "environment")


def test_governed_names_this_process_as_the_command_so_shell_run_is_permitted(server: FiatServer) -> None:
    # The schema asks shell:run for context.input.command; as `fiat run`, governed now supplies it.
    ran: list[str] = []

    @fiat.governed(
        principal=PRINCIPAL, action=ACTION, resource=RESOURCE, home=server.home, url=server.url, isolate=True
    )
    def rebuild() -> str:
        return "rebuilt"

    with fiat.governed(principal=PRINCIPAL, action=ACTION, resource=RESOURCE, home=server.home, url=server.url) as g:
        ran.append(g.permit_id)
    assert ran and ran[0].startswith("pmt_")
    assert rebuild() == "rebuilt"


def test_governed_denial_says_why(server: FiatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def deploy(replicas: int, principal: str | None = None) -> None:
        context = {"version": "1.2", "replicas": replicas}
        kw: dict[str, Any] = {"home": server.home, "url": server.url, "context": context}
        with fiat.governed(principal=principal, action="deploy", resource="service:docs", **kw):
            raise AssertionError("a denied block must not run")

    # The default principal is the OS user (getpass reads LOGNAME first), here unknown to the entities.
    monkeypatch.delenv("FIAT_PRINCIPAL", raising=False)
    monkeypatch.setenv("LOGNAME", "mallory")
    with pytest.raises(fiat.Denied) as info:
        deploy(3)
    assert 'principal User::"mallory" is unknown to the entities' in info.value.reason, info.value
    with pytest.raises(fiat.Denied) as info:
        deploy(60, PRINCIPAL)
    assert info.value.reason == "forbidden by policy replica-ceiling (deploy.cedar:15)"


# == known src bugs: strict xfails that pass once the guard fails closed here too ===========================


def _publish(server: FiatServer, directory: Path) -> None:
    ok(fiat_cli("policy", "publish", directory, "--home", server.home, "--url", server.url, "--json"))


def test_trust_lost_before_start_never_starts(proxied: FiatServer, runs: list[FiatRun], tmp_path: Path) -> None:
    fake = FakeTrust(proxied)

    def lose_trust_during_authorization(_: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        fake.turn(_bad_signature)
        assert fake.emitted_bad.wait(5)
        time.sleep(2 * TRUST_INTERVAL)  # the guard has received (and rejected) it before the permit arrives
        return answer

    marker = tmp_path / "marker"
    proxy = Proxy(proxied.url, port=PROXY_PORT, on_authorize=lose_trust_during_authorization, stream=fake)
    try:
        r = start_run(runs, proxy.url, proxied.home, Path(), tmp_path / "run", command=["touch", str(marker)])
        code, result = r.finish()
    finally:
        proxy.close()
    assert not marker.exists(), f"the command ran although trust was already lost (exit {code}: {result['reason']})"
    assert code == EXIT_NOT_ESTABLISHED and result["reason"].startswith("trust-signature"), result


def test_unprovable_checkpoint_halts(proxied: FiatServer, victim: Path, runs: list[FiatRun], tmp_path: Path) -> None:
    fake = FakeTrust(proxied)
    proxy = Proxy(proxied.url, port=PROXY_PORT, stream=fake)
    try:
        r = start_run(runs, proxy.url, proxied.home, victim, tmp_path / "run", staleness=SHORT_STALENESS)
        r.wait_started()
        # A larger tree with an arbitrary root: the log serves no tiles for it, so it can never be proven.
        fake.turn(lambda f: f.sign(checkpoint=f.checkpoint(f.size + 1000, bytes(32))))
        code, result = r.finish(timeout=SHORT_STALENESS + 2 * HEARTBEAT + 1.5)
    finally:
        proxy.close()
    assert_halted(code, result, "log-continuity")


def test_future_dated_state_does_not_extend_freshness(
    proxied: FiatServer, victim: Path, runs: list[FiatRun], tmp_path: Path
) -> None:
    fake = FakeTrust(proxied)
    proxy = Proxy(proxied.url, port=PROXY_PORT, stream=fake)
    try:
        r = start_run(runs, proxy.url, proxied.home, victim, tmp_path / "run", staleness=SHORT_STALENESS)
        r.wait_started()
        fake.turn(lambda f: f.sign(time=round(time.time() + 30, 3)))
        assert fake.emitted_bad.wait(5)
        time.sleep(2 * TRUST_INTERVAL)
    finally:
        proxy.close()  # the authority goes silent
    code, result = r.finish(timeout=SHORT_STALENESS + 2 * HEARTBEAT + 1.5)
    assert_halted(code, result, "trust-fresh")


def test_max_duration_halts(server: FiatServer, victim: Path, runs: list[FiatRun], tmp_path: Path) -> None:
    bounded = tmp_path / "bounded"
    shutil.copytree(EXAMPLES, bounded)
    shell = (bounded / "shell.cedar").read_text()
    (bounded / "shell.cedar").write_text(shell.replace('@max_duration("120")', '@max_duration("1")'))
    _publish(server, bounded)
    try:
        r = start_run(runs, server.url, server.home, victim, tmp_path / "run", seconds=4)
        pids = r.wait_started()
        code, result = r.finish()
    finally:
        _publish(server, EXAMPLES)
    assert code == EXIT_HALTED, f"ran {(r.exited_at or 0) - pids['started']:.1f} s with maxDuration 1 s: {result}"
    assert r.halted_at - pids["started"] <= 1 + 2 * HEARTBEAT + SLACK


def test_background_children_do_not_outlive_the_run(server: FiatServer, runs: list[FiatRun], tmp_path: Path) -> None:
    pidfile = tmp_path / "background.pid"
    script = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'],"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
    )
    r = start_run(runs, server.url, server.home, Path(), tmp_path / "run", command=[sys.executable, "-c", script])
    code, result = r.finish()
    pid = int(pidfile.read_text())
    try:
        assert code == 0, result
        assert process_gone(pid, timeout=1), "a background process of the command outlived `fiat run`"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- fiat run's own output ------------------------------------------------------------------------


def _run_args(server: FiatServer, *extra: str) -> list[str]:
    return [
        *("run", "--home", str(server.home), "--url", server.url),
        *("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE, *extra),
    ]


def test_run_json_is_the_only_thing_on_stdout(server: FiatServer, tmp_path: Path) -> None:
    loud = [sys.executable, "-c", 'print(\'{"not": "fiat"}\'); print("more output")']
    p = fiat_cli(*_run_args(server, "--json"), "--", *loud)
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads(p.stdout)  # the whole of stdout is fiat's result
    assert result["outcome"] == "completed" and result["exitCode"] == 0, result
    assert '{"not": "fiat"}\nmore output\n' in p.stderr, p.stderr  # the command's stdout went to stderr


def test_run_json_out_leaves_the_commands_stdout_alone(server: FiatServer, tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    loud = [sys.executable, "-c", 'print(\'{"not": "fiat"}\')']
    p = fiat_cli(*_run_args(server, "--json-out", str(result_file)), "--", *loud)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout == '{"not": "fiat"}\n', p.stdout
    result = json.loads(result_file.read_text())
    assert result["outcome"] == "completed" and result["permitId"].startswith("pmt_"), result
    missing = fiat_cli(*_run_args(server, "--json-out", str(tmp_path / "no" / "dir.json")), "--", "true")
    assert missing.returncode == 2 and "--json-out" in missing.stderr, missing.stderr


def test_run_command_not_found_is_127(server: FiatServer) -> None:
    p = fiat_cli(*_run_args(server, "--json"), "--", "no-such-command-anywhere")
    assert p.returncode == 127, p.stdout + p.stderr
    assert json.loads(p.stdout)["outcome"] == "failed"


def test_no_approve_hint_after_the_approval_was_denied(server: FiatServer, tmp_path: Path) -> None:
    ok(fiat_cli("keys", "add", "--role", "approver", "--name", "bob", "--group", "ops", "--home", server.home))
    deploy = [
        *("run", "--home", str(server.home), "--url", server.url),
        *("--principal", PRINCIPAL, "--action", "deploy", "--resource", "service:payments"),
        *("--context", json.dumps({"version": "2.0.0", "replicas": 4}), "--", "true"),
    ]
    # Still pending when the wait ends: an approver can still decide it, so the hint stays.
    waited = fiat_cli(*deploy, env={"FIAT_RUNTIME_APPROVAL_WAIT_S": "0"})
    assert waited.returncode == 125, waited.stderr
    assert "an approver runs `fiat approve`" in waited.stderr, waited.stderr
    proc = subprocess.Popen(
        [*FIAT, *deploy],
        env=cli_env(FIAT_RUNTIME_APPROVAL_WAIT_S="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        said: list[str] = []
        for line in proc.stderr:
            said.append(line)
            m = re.search(r"approval (apr_[A-Za-z0-9_-]+) pending", line)
            if m:
                ok(fiat_cli("deny", m.group(1), "--home", server.home, "--url", server.url, "--reason", "no"))
                break
        _, rest = proc.communicate(timeout=60)
        stderr = "".join(said) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 125, stderr
    assert "was denied" in stderr, stderr
    assert "an approver runs" not in stderr, stderr


def test_a_malformed_request_leaves_no_trust_subscription_open(tmp_path: Path) -> None:
    """open_session builds the session last: a bad principal releases the subscription and the client."""
    from fiat.enforce.bootstrap import open_session
    from fiat.enforce.trust import TrustMonitor
    from fiat.errors import MalformedError
    from fiat.home import init_home

    init_home(tmp_path / "home")
    cfg = load_config(tmp_path / "home", require=True)
    url = "http://127.0.0.1:9"  # nothing listens: the subscription would retry in the background
    with pytest.raises(MalformedError):
        open_session(
            cfg,
            argv=["true"],
            cwd=str(tmp_path),
            principal="no principal",
            action="a",
            resource="r:x",
            context={},
            url=url,
        )
    assert url not in TrustMonitor._shared
