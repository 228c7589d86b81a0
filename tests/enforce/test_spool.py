"""No receipt is ever lost: the spool (:mod:`fiat.enforce.spool`) and idempotent receipt upload.

Real ``fiat serve`` and ``fiat run`` child processes on 127.0.0.1. The authority is killed
(SIGKILL) or stopped (SIGTERM) while a governed command runs; the run ends with its true
exit code, its receipt is spooled in the home, the authority comes back on the same home
and port, the receipt is uploaded (by ``fiat receipts flush``, or by the next ``fiat run``),
the bundle ``--evidence`` asked for is written then, and ``fiat verify`` passes with the
receipt in it. The authority logs one receipt per permit: the same envelope twice is one
entry (one index), a different one is refused with 409. The spool's own durability rules
(torn temporaries, unreadable files, bounded retries) are tested in process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import fiat
from fiat.api.client import AuthorityClient
from fiat.config import load_config
from fiat.enforce.spool import ReceiptSpool, SpoolError
from fiat.formats.dsse import Envelope
from fiat.formats.statement import RECEIPT, Statement
from fiat.home import keyring
from fiat.prove import evidence as ev
from fiat.verify.bundle import Bundle
from support.processes import EXIT_ERROR, FIAT, FiatServer, cli_env, free_port, ok, one_line, show
from support.processes import fiat_text as fiat_cli

EXAMPLES = Path(fiat.__file__).resolve().parent / "examples" / "policies"
PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"
EXIT_HALTED = 124
TRUST_ENV = {"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "100"}

# The governed command: says it started, then waits for `release` (or 60 s) and exits 0.
WAITER = (
    "import os, time\n"
    "open('started', 'w').close()\n"
    "deadline = time.time() + 60\n"
    "while not os.path.exists('release') and time.time() < deadline:\n"
    "    time.sleep(0.05)\n"
)


def make_home(home: Path) -> Path:
    ok(fiat_cli("init", "--home", home, "--json"))
    ok(fiat_cli("policy", "publish", EXAMPLES, "--home", home, "--json"))
    return home


def serve(home: Path, port: int | None = None) -> FiatServer:
    """``fiat serve`` pushing a trust state every 100 ms; with ``port``, on that port (a restart)."""
    if port is None:
        return FiatServer(home, env=TRUST_ENV).start()
    env = {**TRUST_ENV, "FIAT_SERVER_HOST": "127.0.0.1", "FIAT_SERVER_PORT": str(port)}
    return FiatServer(home, env=env, port=port).start()


class Run:
    """A ``fiat run --json --evidence`` child governing :data:`WAITER` (or ``command``) in ``work``."""

    def __init__(self, url: str, home: Path, work: Path, *, staleness_ms: int, command: list[str] | None = None):
        work.mkdir(parents=True, exist_ok=True)
        self.work, self.evidence = work, work / "bundle.json"
        argv = [
            *(*FIAT, "run", "--json", "--home", str(home), "--url", url),
            *("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE),
            *("--evidence", str(self.evidence), "--", *(command or [sys.executable, "-c", WAITER])),
        ]
        env = cli_env(
            FIAT_RUNTIME_HEARTBEAT_MS="100",
            FIAT_RUNTIME_STALENESS_MS=str(staleness_ms),
            FIAT_RUNTIME_HALT_GRACE_MS="500",
            FIAT_RUNTIME_RECEIPT_UPLOAD_S="1",
            FIAT_RUNTIME_CONTAINMENT="process",
        )
        self.proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout = self.stderr = ""

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (self.work / "started").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.finish(5)
                raise AssertionError(f"the command did not start: {self.why()}")
            time.sleep(0.02)

    def finish(self, timeout: float = 60) -> tuple[int, dict[str, Any]]:
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.stdout, self.stderr = self.proc.communicate()
            raise AssertionError(f"fiat run did not end within {timeout} s: {self.why()}") from None
        start = self.stdout.rfind("{\n")
        return self.proc.returncode, (json.loads(self.stdout[start:]) if start >= 0 else {})

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def why(self) -> str:
        return f"\nstdout: {self.stdout}\nstderr: {self.stderr}"


def log_size(url: str) -> int:
    return int(httpx.get(url + "/log/checkpoint", timeout=5).text.split("\n")[1])


def receipt_statement(bundle_path: Path) -> tuple[Envelope, dict[str, Any]]:
    bundle = Bundle.parse(bundle_path.read_bytes())
    found = [(s.envelope, s.statement.predicate) for s in bundle.statements if s.statement.predicate_type == RECEIPT]
    assert len(found) == 1, f"expected one receipt in {bundle_path}, got {len(found)}"
    return found[0][0], dict(found[0][1])


def assert_verifies(home: Path, bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "trust-root.json"
    ok(fiat_cli("trust-root", "export", "--home", home, "-o", root))
    verified = fiat_cli("verify", bundle, "--trust-root", root, "--json")
    assert verified.returncode == 0, show(verified)
    doc = json.loads(verified.stdout)
    assert doc["verified"] is True
    assert any(s["step"] == "receipt" and s["status"] == "pass" for s in doc["steps"]), doc


def assert_spooled(run: Run, code: int, result: dict[str, Any], home: Path) -> Path:
    """The run ended with its true code, said where its receipt is, and wrote no bundle lacking it."""
    assert result.get("receiptLogIndex", "absent") is None, run.why()
    spooled = Path(result["receiptSpooled"])
    assert spooled.parent == home / "spool" / "receipts" and spooled.name == f"{result['permitId']}.json"
    assert spooled.is_file(), run.why()
    stderr = one_line(run.stderr)
    assert f"receipt for {result['permitId']} spooled at {spooled}" in stderr, run.why()
    assert "fiat receipts flush" in stderr
    assert not run.evidence.exists(), "a bundle without the receipt was written"
    listed = json.loads(ok(fiat_cli("receipts", "list", "--home", home, "--json")).stdout)
    assert [e["permitId"] for e in listed["pending"]] == [result["permitId"]]
    assert listed["pending"][0]["evidence"] == str(run.evidence.resolve())
    return spooled


# == the authority dies mid-run =========================================================================


def test_authority_killed_mid_run_receipt_spooled_then_flushed_and_bundle_verifies(tmp_path: Path) -> None:
    """SIGKILL: the guard halts at trust-fresh (124); the halted run's receipt is spooled, then
    `fiat receipts flush` uploads it once the authority is back (one new log entry), writes the
    bundle, and it verifies with the receipt."""
    home = make_home(tmp_path / "home")
    server = serve(home)
    run = Run(server.url, home, tmp_path / "run", staleness_ms=800)
    try:
        run.wait_started()
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(30)
        code, result = run.finish()
    finally:
        run.kill()
        server.stop()
    assert code == EXIT_HALTED and result["outcome"] == "halted", run.why()
    assert "trust-fresh" in result["reason"]
    spooled = assert_spooled(run, code, result, home)

    again = serve(home, port=server.port)
    try:
        size = log_size(again.url)
        # Two flushes of one spool at once: both succeed, the receipt is logged once.
        flushes = [
            subprocess.Popen(
                [*FIAT, "receipts", "flush", "--home", str(home), "--json"],
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [f.communicate(timeout=120) for f in flushes]
        assert [f.returncode for f in flushes] == [0, 0], outputs
        reports = [json.loads(stdout) for stdout, _ in outputs]
        indexes = {r["uploaded"].get(result["permitId"]) for r in reports} - {None}
        assert len(indexes) == 1, reports
        (index,) = indexes
        assert all(r["remaining"] == {} for r in reports), reports
        assert str(run.evidence.resolve()) in [r["bundles"].get(result["permitId"]) for r in reports]
        assert log_size(again.url) == size + 1  # the receipt, logged once
        assert not spooled.exists()
        assert json.loads(ok(fiat_cli("receipts", "list", "--home", home, "--json")).stdout)["pending"] == []
        envelope, receipt = receipt_statement(run.evidence)
        assert receipt["outcome"] == "halted" and receipt["haltReason"].startswith("trust-fresh")
        # Uploading the same receipt again (a flush that crashed after the POST) is the same entry.
        again_index = httpx.post(again.url + "/v1/receipts", json={"envelope": envelope.to_json()}, timeout=10)
        assert again_index.status_code == 200 and again_index.json() == {"logIndex": index}
        assert log_size(again.url) == size + 1
    finally:
        again.stop()
    assert_verifies(home, run.evidence, tmp_path)


def test_authority_stopped_mid_run_completed_run_spooled_and_next_run_uploads_it(tmp_path: Path) -> None:
    """SIGTERM: the command then completes (exit 0, its true code) while the authority is gone;
    its receipt is spooled rather than lost (the old code exited 0 with no receipt at all); the
    next `fiat run`, once the authority is back, uploads it and writes the first run's bundle."""
    home = make_home(tmp_path / "home")
    server = serve(home)
    # A long staleness bound: the command ends once the authority no longer takes connections,
    # however long `fiat serve` then takes to finish its shutdown, and still counts as completed.
    run = Run(server.url, home, tmp_path / "run", staleness_ms=60_000)
    try:
        run.wait_started()
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while server.proc.poll() is None and time.monotonic() < deadline:
            try:
                httpx.get(server.url + "/healthz", timeout=1)
            except httpx.TransportError:
                break  # it no longer listens
            time.sleep(0.05)
        (run.work / "release").touch()
        code, result = run.finish()
        server.proc.wait(120)  # generous: however long it drains, it must end before it comes back
    finally:
        run.kill()
        server.stop()
    assert code == 0 and result["outcome"] == "completed", run.why()
    assert_spooled(run, code, result, home)

    again = serve(home, port=server.port)
    try:
        nxt = Run(again.url, home, tmp_path / "next", staleness_ms=5000, command=[sys.executable, "-c", "pass"])
        try:
            next_code, next_result = nxt.finish()
        finally:
            nxt.kill()
        assert next_code == 0 and next_result["receiptLogIndex"] is not None, nxt.why()
        assert next_result["receiptSpooled"] is None
        assert json.loads(ok(fiat_cli("receipts", "list", "--home", home, "--json")).stdout)["pending"] == []
        assert run.evidence.is_file(), "the next run uploaded the receipt but did not write the asked-for bundle"
        _, receipt = receipt_statement(run.evidence)
        assert receipt["outcome"] == "completed" and receipt["exitCode"] == 0
    finally:
        again.stop()
    assert_verifies(home, run.evidence, tmp_path)


# == the authority logs one receipt per permit ===============================================================


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = make_home(tmp_path_factory.mktemp("authority") / "home")
    with serve(home) as server:
        yield server


def test_same_receipt_twice_is_one_entry_and_a_different_one_is_refused(served: FiatServer, tmp_path: Path) -> None:
    run = Run(served.url, served.home, tmp_path / "run", staleness_ms=5000, command=[sys.executable, "-c", "pass"])
    try:
        code, result = run.finish()
    finally:
        run.kill()
    assert code == 0 and result["receiptLogIndex"] is not None, run.why()
    envelope, receipt = receipt_statement(run.evidence)
    size = log_size(served.url)
    for _ in range(2):
        r = httpx.post(served.url + "/v1/receipts", json={"envelope": envelope.to_json()}, timeout=10)
        assert r.status_code == 200 and r.json() == {"logIndex": result["receiptLogIndex"]}, r.text
    assert log_size(served.url) == size
    # A different receipt for the same permit, properly signed by the permit's runtime key.
    rec, key = keyring(load_config(served.home)).signing_key("runtime")
    statement = Statement.from_envelope(envelope)
    forged = Statement(statement.subjects, RECEIPT, {**receipt, "outcome": "failed", "exitCode": 3})
    other = ev.sign_statement(forged, [(rec.kid, key)])
    r = httpx.post(served.url + "/v1/receipts", json={"envelope": other.to_json()}, timeout=10)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert f"already logged at index {result['receiptLogIndex']}" in r.json()["detail"]
    assert log_size(served.url) == size


# == the spool itself ======================================================================================


def test_spool_write_is_durable_and_private(tmp_path: Path) -> None:
    spool = ReceiptSpool(tmp_path)
    entry = spool.put({"payload": "e30", "payloadType": "x", "signatures": []}, "pmt_abc-1", "http://127.0.0.1:1/")
    assert entry.path == tmp_path / "spool" / "receipts" / "pmt_abc-1.json"
    assert (entry.path.parent.stat().st_mode & 0o777) == 0o700
    assert (entry.path.stat().st_mode & 0o777) == 0o600
    doc = json.loads(entry.path.read_text())
    assert doc["permitId"] == "pmt_abc-1" and doc["authority"] == "http://127.0.0.1:1" and doc["attempts"] == 0
    assert [p.name for p in entry.path.parent.iterdir()] == ["pmt_abc-1.json"]  # no temporary left
    for unsafe in ("../x", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(SpoolError):
            spool.put({}, unsafe, "http://127.0.0.1:1")


def test_torn_temporary_is_removed_and_unreadable_file_is_reported_never_deleted(tmp_path: Path) -> None:
    spool = ReceiptSpool(tmp_path)
    spool.put({"payload": "e30", "payloadType": "x", "signatures": []}, "pmt_good", "http://127.0.0.1:1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    torn = spool.dir / f".pmt_torn.{int(dead.stdout)}.tmp"  # its writer died mid-write
    torn.write_text('{"version": 1, "perm')
    live = spool.dir / f".pmt_live.{os.getpid()}.tmp"  # being written right now
    live.write_text("{")
    bad = spool.dir / "pmt_bad.json"
    bad.write_text("{not json")
    good, unreadable = spool.entries()
    assert [e.permit_id for e in good] == ["pmt_good"]
    assert [u.path for u in unreadable] == [bad] and "not JSON" in unreadable[0].error
    assert not torn.exists() and live.exists() and bad.exists()
    listed = fiat_cli("receipts", "list", "--home", _home_with(tmp_path), "--json")
    doc = json.loads(ok(listed).stdout)
    assert [e["permitId"] for e in doc["pending"]] == ["pmt_good"]
    assert doc["unreadable"] == [{"path": str(bad), "error": unreadable[0].error}]
    # A flush reports it, fails, and still keeps it.
    flushed = fiat_cli(
        "receipts", "flush", "--home", tmp_path, "--timeout", "1", "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert flushed.returncode == EXIT_ERROR, show(flushed)
    assert "pmt_bad.json" in one_line(flushed.stderr) and "pmt_good" in one_line(flushed.stderr)
    assert bad.exists() and (spool.dir / "pmt_good.json").exists()


def _home_with(path: Path) -> Path:
    """``path`` as a Fiat home (a fiat.toml), keeping what is already in it."""
    if not (path / "fiat.toml").exists():
        ok(fiat_cli("init", "--home", path, "--json"))
    return path


def test_upload_to_a_dead_authority_is_bounded_and_keeps_the_receipt(tmp_path: Path) -> None:
    spool = ReceiptSpool(tmp_path)
    entry = spool.put(
        {"payload": "e30", "payloadType": "x", "signatures": []}, "pmt_x", f"http://127.0.0.1:{free_port()}"
    )
    t0 = time.monotonic()
    done = spool.upload(entry, 1.0)
    elapsed = time.monotonic() - t0
    assert done.index is None and done.error is not None and "cannot reach the authority" in done.error
    assert elapsed < 5, f"a 1 s upload bound took {elapsed:.1f} s"
    (kept,), _ = spool.entries()
    assert kept.attempts >= 2 and kept.last_error == done.error  # retried, with backoff, then kept


def test_receipts_list_json_shape(tmp_path: Path) -> None:
    home = _home_with(tmp_path / "home")
    empty = json.loads(ok(fiat_cli("receipts", "list", "--home", home, "--json")).stdout)
    assert empty == {"spool": str(home / "spool" / "receipts"), "pending": [], "unreadable": []}
    ReceiptSpool(home).put({"payload": "e30", "payloadType": "x", "signatures": []}, "pmt_1", "http://127.0.0.1:9")
    doc = json.loads(ok(fiat_cli("receipts", "list", "--home", home, "--json")).stdout)
    (entry,) = doc["pending"]
    assert set(entry) == {"permitId", "path", "authority", "spooledAt", "attempts", "lastError", "evidence"}
    assert entry["permitId"] == "pmt_1" and entry["attempts"] == 0 and entry["lastError"] is None
    text = ok(fiat_cli("receipts", "list", "--home", home)).stdout
    assert "pmt_1" in text and "attempts 0" in text and "http://127.0.0.1:9" in text


def test_governed_block_spools_its_receipt_when_the_authority_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A `fiat.governed` block halted because the authority is gone still gets its receipt:
    spooled at block exit, said on stderr, uploaded after the authority is back."""
    from fiat.enforce.guard import GuardSettings

    monkeypatch.setenv("FIAT_RUNTIME_RECEIPT_UPLOAD_S", "1")
    home = make_home(tmp_path / "home")
    server = serve(home)
    guard = fiat.governed(
        principal=PRINCIPAL,
        action=ACTION,
        resource=RESOURCE,
        context={"command": {"argv": [sys.executable, *sys.argv], "cwd": str(tmp_path)}},
        home=home,
        url=server.url,
        settings=GuardSettings(heartbeat=0.1, staleness=0.8, grace=0.5),
    )
    try:
        with pytest.raises(fiat.Halt) as info, guard as g:
            handle = g
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                g.check()
                time.sleep(0.02)
    finally:
        server.stop()
    assert info.value.step == "trust-fresh"
    assert handle.receipt_index is None and handle.receipt_spooled is not None
    assert handle.receipt_spooled == home / "spool" / "receipts" / f"{handle.permit_id}.json"
    assert f"receipt for {handle.permit_id} spooled at {handle.receipt_spooled}" in capfd.readouterr().err
    again = serve(home, port=server.port)
    try:
        report = ReceiptSpool(home).flush(30)
        assert list(report.uploaded) == [handle.permit_id] and report.remaining == {}
        _, key = keyring(load_config(home)).signing_key("runtime")
        with AuthorityClient(again.url) as client:
            bundle = Bundle.parse(json.dumps(client.bundle(key, handle.permit_id)).encode())
    finally:
        again.stop()
    receipts = [s.statement.predicate for s in bundle.statements if s.statement.predicate_type == RECEIPT]
    assert [r["outcome"] for r in receipts] == ["halted"]


def test_a_bundle_is_never_written_through_a_planted_symlink(tmp_path: Path) -> None:
    """The bundle goes through a fresh temporary file (``mkstemp``): a symbolic link planted at the
    name the writer used to choose (``.NAME.PID.tmp``) redirects nothing, and the target ends as a
    regular file of its own."""
    from fiat.enforce.spool import write_atomically

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = tmp_path / "out.json"
    os.symlink(victim, tmp_path / f".out.json.{os.getpid()}.tmp")
    write_atomically(target, '{"bundle": 1}\n')
    assert victim.read_text() == "precious\n"
    assert not target.is_symlink() and target.read_text() == '{"bundle": 1}\n'
    assert os.stat(target).st_mode & 0o077 == 0  # private, as everything a run writes for its runtime
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()] == []
