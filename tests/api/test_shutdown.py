"""A clean server shutdown: SIGTERM/SIGINT drain ``fiat serve``, then it exits (:mod:`fiat.serving`).

Every test starts a real ``fiat serve`` child process (a fresh home: ``fiat init`` and
``fiat policy publish`` of the shipped example bundle) with a short ``server.drain_s``,
signals it, and watches what its clients see over real HTTP on 127.0.0.1:

* with guards attached (``fiat run``), it exits within ``drain_s`` + 2 s, a command that ends
  during the drain gets its receipt logged (and its bundle verifies offline), and a guard
  still running is told ``going-away`` and then halts fail-closed at ``trust-fresh``, never
  taking the notice for an attack (before the drain it would never have exited at all);
* a raw trust-stream client reads ``event: going-away``, then more trust states, and the
  server ends the stream before the process exits;
* during the drain no permit is granted or consumed and no new stream is opened (503
  problem details with ``Retry-After``); receipts and reads still are served;
* with nothing attached it exits at once; a second signal ends the drain at once;
  ``fiat log serve`` drains too.

Bounds are generous for a loaded machine, yet each one proves its point: the old server
did not exit at all while a trust stream was open.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import fiat
from fiat.config import load_config
from fiat.enforce.trust import TrustMonitor
from fiat.errors import ConfigError
from fiat.home import trust_root
from support.processes import FIAT, FiatServer, clean_env, cli_env, ok
from support.processes import fiat_text as fiat_cli

EXAMPLES = Path(fiat.__file__).resolve().parent / "examples" / "policies"
PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"
PERMIT_RE = re.compile(r"permit (pmt_[A-Za-z0-9_-]+)")
DRAIN_S = 3.0
#: ``drain_s`` + 2 s is the promise; the extra half second is for noticing the exit on a loaded machine.
EXIT_BOUND = DRAIN_S + 2.5
STALENESS_S = 2.0
EXIT_HALTED = 124


# -- processes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home with the example policy (each test starts its own server on it)."""
    path = tmp_path_factory.mktemp("shutdown") / "home"
    ok(fiat_cli("init", "--home", path, "--json"))
    ok(fiat_cli("policy", "publish", EXAMPLES, "--home", path, "--json"))
    return path


@pytest.fixture
def servers() -> Iterator[list[FiatServer]]:
    """Every server a test starts is stopped (SIGKILL after 10 s) when the test ends."""
    started: list[FiatServer] = []
    yield started
    for s in started:
        if s.running():
            s.proc.kill()
            s.proc.wait(10)


def serve(servers: list[FiatServer], home: Path, drain_s: float = DRAIN_S, *, log: bool = False) -> FiatServer:
    env = {"FIAT_SERVER_DRAIN_S": str(drain_s), "FIAT_AUTHORITY_TRUST_INTERVAL_MS": "200"}
    s = FiatServer(home, env=env, log=log)
    servers.append(s)
    return s.start()


def exit_within(server: FiatServer, signalled_at: float, bound: float) -> float:
    """Wait (up to ``bound`` + 10 s) for the signalled server to exit; the seconds it took."""
    try:
        server.proc.wait(timeout=bound + 10)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"fiat serve did not exit {bound + 10:.0f} s after SIGTERM:\n{server.text()[-3000:]}"
        ) from None
    took = time.monotonic() - signalled_at
    assert took < bound, f"fiat serve took {took:.2f} s to exit (bound {bound} s):\n{server.text()[-3000:]}"
    assert server.proc.returncode == 0, f"exit {server.proc.returncode}:\n{server.text()[-3000:]}"
    return took


class Run:
    """A ``fiat run --json`` child process; its command is ``python -c CODE``."""

    def __init__(self, server: FiatServer, work: Path, code: str) -> None:
        work.mkdir(parents=True)
        self.evidence = work / "bundle.json"
        args = [
            *(*FIAT, "run", "--json", "--home", str(server.home), "--url", server.url),
            *("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE),
            *("--evidence", str(self.evidence), "--", sys.executable, "-c", code),
        ]
        env = cli_env(
            FIAT_RUNTIME_HEARTBEAT_MS="100",
            FIAT_RUNTIME_STALENESS_MS=str(int(STALENESS_S * 1000)),
            FIAT_RUNTIME_HALT_GRACE_MS="1000",
            FIAT_RUNTIME_CONTAINMENT="process",  # the containment is not what is tested here
        )
        self.proc = subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout, self.stderr = "", ""
        self.permit = threading.Event()
        self._threads = [
            threading.Thread(target=self._out, daemon=True),
            threading.Thread(target=self._err, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _out(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def _err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line
            if PERMIT_RE.search(line):
                self.permit.set()

    def wait_permit(self, timeout: float = 30) -> None:
        assert self.permit.wait(timeout), f"fiat run got no permit: {self.why()}"

    def finish(self, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"fiat run did not exit within {timeout} s: {self.why()}") from None
        for t in self._threads:
            t.join(5)
        start = self.stdout.rfind("{\n")
        assert start >= 0, f"no JSON result: {self.why()}"
        return self.proc.returncode, dict(json.loads(self.stdout[start:]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def why(self) -> str:
        return f"\nstdout: {self.stdout}\nstderr: {self.stderr}"


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for r in started:
        r.kill()


class Stream:
    """A raw ``GET /v1/trust/stream`` client in a thread: the events it read, and when the stream ended."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[tuple[str, str]] = []  # (event type, data)
        self.status: int | None = None
        self.ended_at: float | None = None
        self.error: str | None = None
        self.going_away = threading.Event()
        self.first = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        kind = ""
        try:
            with httpx.stream("GET", self.url + "/v1/trust/stream", timeout=httpx.Timeout(5.0, read=30.0)) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        self.events.append((kind, line[5:].strip()))
                        self.first.set()
                        if kind == "going-away":
                            self.going_away.set()
        except httpx.HTTPError as exc:
            self.error = repr(exc)
        finally:
            self.ended_at = time.monotonic()
            self.first.set()

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


def sigterm(server: FiatServer) -> float:
    server.proc.send_signal(signal.SIGTERM)
    return time.monotonic()


# == the tests ======================================================================================


def test_sigterm_with_guards_attached_drains_lands_receipts_and_exits(
    home: Path, servers: list[FiatServer], runs: list[Run], tmp_path: Path
) -> None:
    server = serve(servers, home)
    go = tmp_path / "go"
    # The short command ends when the test says so (during the drain); the long one never does.
    short = Run(server, tmp_path / "short", f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)")
    long = Run(server, tmp_path / "long", "import time; time.sleep(60)")
    runs += [short, long]
    short.wait_permit()
    long.wait_permit()
    time.sleep(0.5)  # both guards verified a few rounds and follow the trust stream
    signalled = sigterm(server)
    time.sleep(1.0)
    go.touch()  # the short command ends one second into the drain; its receipt is posted then
    code, result = short.finish()
    assert code == 0 and result["outcome"] == "completed", short.why()
    assert result["receiptLogIndex"] is not None, f"the receipt did not land: {result}"
    took = exit_within(server, signalled, EXIT_BOUND)
    # The long guard stayed attached, so the drain lasted its full length, no less.
    assert took >= DRAIN_S - 0.2, f"exited after {took:.2f} s, before the drain was over"
    text = server.text()
    assert f"draining for {DRAIN_S:g} s: no new permits; receipts still accepted" in text
    assert "drain over after" in text
    # The long guard: told the authority is going away, not fooled into a crypto halt, halted
    # fail-closed once no fresh trust state came.
    code, result = long.finish()
    assert code == EXIT_HALTED and result["reason"].startswith("halted at trust-fresh:"), long.why()
    assert "the authority is shutting down (going-away)" in result["reason"], long.why()
    # The short run's evidence bundle (fetched during the drain) verifies offline.
    root = tmp_path / "trust-root.json"
    ok(fiat_cli("trust-root", "export", "--home", home, "-o", root))
    verified = fiat_cli("verify", short.evidence, "--trust-root", root, "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["verified"] is True, verified.stdout


def test_trust_stream_is_told_going_away_and_closed_before_exit(
    home: Path, servers: list[FiatServer], tmp_path: Path
) -> None:
    server = serve(servers, home)
    stream = Stream(server.url)
    assert stream.first.wait(10) and stream.kinds()[:1] == ["trust-state"], (stream.events, stream.error)
    signalled = sigterm(server)
    assert stream.going_away.wait(5), f"no going-away event: {stream.kinds()}"
    data = json.loads(next(d for k, d in stream.events if k == "going-away"))
    assert data == {"drainS": DRAIN_S, "reason": "shutdown"}
    # What a draining server refuses: a permit, a renewal, a consume, a new stream — 503 with Retry-After.
    body = {"principal": PRINCIPAL, "action": ACTION, "resource": RESOURCE, "runtimeKid": "k", "renews": "pmt_x"}
    for method, path, kw in (
        ("POST", "/v1/authorize", {"json": body}),
        ("POST", "/v1/authorize", {"json": {k: v for k, v in body.items() if k != "renews"}}),
        ("POST", "/v1/permits/pmt_x/consume", {}),
        ("GET", "/v1/trust/stream", {}),
    ):
        r = httpx.request(method, server.url + path, timeout=5, **kw)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert "shutting down" in r.json()["detail"] and int(r.headers["retry-after"]) >= 1, r.text
    # What it still serves: receipts (this one is malformed, so refused as such — not for the drain) and reads.
    r = httpx.post(server.url + "/v1/receipts", json={"envelope": {"payload": "x"}}, timeout=5)
    assert r.status_code == 400, r.text
    for path in ("/v1/trust/state", "/log/checkpoint", "/healthz"):
        assert httpx.get(server.url + path, timeout=5).status_code == 200, path
    exit_within(server, signalled, EXIT_BOUND)
    stream.thread.join(5)
    # Ended by the server (the chunked body's last chunk), not cut off by the process dying:
    # a cut-off stream is an incomplete chunked read (httpx.RemoteProtocolError).
    assert stream.ended_at is not None and stream.error is None, stream.error
    assert stream.ended_at - signalled >= DRAIN_S - 0.2, "the stream ended before the drain was over"
    # The trust state was still pushed after going-away (revocations must still reach guards).
    after = stream.kinds()[stream.kinds().index("going-away") + 1 :]
    assert after.count("trust-state") >= 3, stream.kinds()


def test_sigterm_with_nothing_attached_exits_at_once(home: Path, servers: list[FiatServer]) -> None:
    server = serve(servers, home, drain_s=30)
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    took = exit_within(server, sigterm(server), 5.0)  # well under the 30 s drain
    assert "draining for 30 s" in server.text(), server.text()
    assert took < 5.0


def test_second_signal_ends_the_drain_at_once(home: Path, servers: list[FiatServer]) -> None:
    server = serve(servers, home, drain_s=60)
    stream = Stream(server.url)
    assert stream.first.wait(10), stream.error
    sigterm(server)
    assert stream.going_away.wait(5), stream.kinds()
    time.sleep(0.3)
    assert server.running()
    server.proc.send_signal(signal.SIGINT)  # Ctrl-C, the second time
    exit_within(server, time.monotonic(), 4.0)  # not the 60 s drain
    stream.thread.join(5)
    assert stream.ended_at is not None and stream.error is None, stream.error


def test_log_serve_drains_and_exits(home: Path, servers: list[FiatServer]) -> None:
    server = serve(servers, home, drain_s=30, log=True)
    assert httpx.get(server.url + "/checkpoint", timeout=5).status_code == 200
    exit_within(server, sigterm(server), 5.0)


def test_forged_going_away_neither_halts_nor_extends_trust(home: Path) -> None:
    """``going-away`` is unsigned: a guard's monitor records it, but it is no trust state — not a
    crypto failure (as an unparsed data line would be), and no freshness either."""
    body = (
        b"event: going-away\ndata: " + json.dumps({"drainS": 3, "reason": "shutdown"}).encode() + b"\n\n"
        b"event: some-future-event\ndata: not a JWS\n\n"
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            time.sleep(2)  # then the stream ends, as a drained server's does

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with clean_env():
        root = trust_root(load_config(home, require=True))
    monitor = TrustMonitor(f"http://127.0.0.1:{httpd.server_address[1]}", root)
    try:
        monitor.start()
        deadline = time.monotonic() + 10
        while monitor.snapshot().going_away is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # the event after it is read too
        snap = monitor.snapshot()
    finally:
        monitor.stop()
        httpd.shutdown()
    assert snap.going_away is not None and "shutting down (going-away)" in snap.going_away, snap
    assert "within 3 s" in snap.going_away
    assert snap.crypto_failure is None and snap.split_view is None, snap
    assert snap.state_time is None and snap.received is None, "an unsigned notice made trust fresh"


@pytest.mark.parametrize("value", ["-1", "601", "nan", "soon"])
def test_drain_s_is_validated(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with clean_env():
        monkeypatch.setenv("FIAT_SERVER_DRAIN_S", value)
        with pytest.raises(ConfigError, match=r"server\.drain_s|FIAT_SERVER_DRAIN_S"):
            load_config(tmp_path)


def test_drain_s_default(tmp_path: Path) -> None:
    with clean_env():
        assert load_config(tmp_path).server.drain_s == 10.0
