"""The governance console in real Chromium against a real ``fiat serve``, with real ``fiat run``s.

The approve flow end to end: a ``fiat run`` of ``deploy service:payments`` waits on an approval
(the example policy's ``critical-needs-approval``); the approver picks their key file in the
page (``set_input_files``), the page signs the approval statement with WebCrypto Ed25519, the
run completes, and the approval in the run's evidence bundle verifies with ``fiat verify``.
The key never leaves the browser: no request carries any of its bytes.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Page, expect

from support.processes import FIAT, FiatServer, cli_env, ok
from support.processes import fiat as fiat_cli

from .conftest import Watched, make_home

pytestmark = pytest.mark.timeout(240)

PRINCIPAL = "agent:release-bot"


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    """A fresh home with an approver ``alice`` of group ops, served."""
    home = make_home(tmp_path_factory.mktemp("console"))
    ok(fiat_cli("keys", "add", "--role", "approver", "--name", "alice", "--group", "ops", "--home", home, "--json"))
    s = FiatServer(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "250"}).start()
    try:
        yield s
    finally:
        s.stop()


def approver_key_file(home: Path) -> Path:
    rings = json.loads((home / "keys" / "keyring.json").read_text())["keys"]
    rec = next(k for k in rings if k["role"] == "approver" and k["name"] == "alice")
    return home / "keys" / rec["file"]


def key_secrets(pem: Path) -> list[str]:
    """Every spelling of the key's private bytes a request could carry."""
    data = pem.read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    der = b"".join(line for line in data.splitlines() if not line.startswith(b"-----"))
    return [
        der.decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(raw).decode().rstrip("="),
        raw.hex(),
    ]


class Run:
    """``fiat run --json`` as ``agent:release-bot`` in the background (its stderr watched)."""

    def __init__(
        self, server: FiatServer, work: Path, action: str, resource: str, code: str, context: str = "{}", **env: str
    ) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.evidence = work / "bundle.json"
        args = [
            *(*FIAT, "run", "--json", "--home", str(server.home), "--url", server.url),
            *("--principal", PRINCIPAL, "--action", action, "--resource", resource),
            *("--context", context),
            *("--evidence", str(self.evidence), "--", sys.executable, "-c", code),
        ]
        env = cli_env(FIAT_RUNTIME_APPROVAL_WAIT_S="90", FIAT_RUNTIME_CONTAINMENT="process", **env)
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr = ""
        self.pending = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line
            if "pending" in line:
                self.pending.set()

    def result(self, timeout: float = 60) -> tuple[int, dict[str, object]]:
        assert self.proc.stdout is not None
        self.proc.wait(timeout)
        out = self.proc.stdout.read()  # --json: the result alone (stderr is the reader's)
        self._reader.join(5)
        return self.proc.returncode, (json.loads(out) if out.strip() else {})

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def deploy(server: FiatServer, work: Path) -> Run:
    """``deploy service:payments``: the example policy's ``critical-needs-approval`` asks ops."""
    context = json.dumps({"version": "2.4.0", "replicas": 4})
    return Run(server, work, "deploy", "service:payments", "print('deployed payments 2.4.0')", context)


def expected_refusals(w: Watched, *needles: str) -> None:
    """Chromium logs every 4xx a page receives as a console error: drop the ones this test provokes."""
    w.console_errors[:] = [
        e for e in w.console_errors if not ("Failed to load resource" in e and any(n in e for n in needles))
    ]


def load_key(page: Page, pem: Path) -> None:
    page.set_input_files("#approver-key", str(pem))
    expect(page.locator("#approver-status")).to_contain_text("approver key of alice", timeout=10_000)
    expect(page.locator("#mode")).to_contain_text("Approver key loaded: alice")


def test_read_only_console_loads_without_credential(
    console_server: FiatServer, open_page: Callable[..., Watched]
) -> None:
    w = open_page(console_server.url, "/ui/console")
    page = w.page
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("#mode")).to_contain_text("Read-only: no credential")
    expect(page.locator("#decoded-note")).to_contain_text("Decoded, not verified")
    expect(page.locator("#error")).to_be_hidden()
    # Policy versions, keys by role, the trust root's fingerprint as the server computes it.
    expect(page.locator("#policies tbody tr")).to_have_count(1)
    expect(page.locator("#keys tbody tr[data-kid]").first).to_be_visible()
    expect(page.locator("#keys")).to_contain_text("approver")
    said = httpx.get(console_server.url + "/v1/trust/root").headers["fiat-trust-root-fingerprint"]
    expect(page.locator("#trust-root-fp")).to_have_text(said)
    # Privileged controls are marked as such, and name what they need.
    assert page.locator("#revoke-form.privileged .tag").inner_text().lower() == "admin"
    assert page.locator("#approver-panel.privileged .tag").inner_text().lower() == "approver"
    # No request carried a credential.
    assert not [r for r in w.requests if "token" in r.lower()]


def test_approve_in_the_browser_end_to_end(
    console_server: FiatServer, open_page: Callable[..., Watched], tmp_path: Path
) -> None:
    w = open_page(console_server.url, "/ui/console")
    page = w.page
    sent: list[str] = []
    page.on("request", lambda r: sent.append(json.dumps(r.headers) + (r.post_data or "")))
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    pem = approver_key_file(console_server.home)
    run = deploy(console_server, tmp_path / "approve")
    try:
        assert run.pending.wait(60), run.stderr
        load_key(page, pem)
        row = page.locator("#approvals tbody tr[data-approval]")
        expect(row).to_have_count(1, timeout=15_000)
        expect(row).to_contain_text("service:payments")
        expect(row).to_contain_text('"replicas":4')  # the queue, read with the key (DPoP)
        approval_id = row.get_attribute("data-approval")
        page.fill("#approval-reason", "reviewed in the console")
        row.get_by_role("button", name=f"Approve {approval_id}").click()
        expect(page.locator("#approval-result")).to_contain_text("approved by alice", timeout=15_000)
        code, result = run.result()
    finally:
        run.kill()
    assert code == 0 and result["outcome"] == "completed", run.stderr
    # The decided approval shows from the log; the queue is empty.
    expect(page.locator(f"#approvals-done tr[data-approval='{approval_id}']")).to_contain_text("approved")
    expect(page.locator("#approvals tbody tr[data-approval]")).to_have_count(0)
    # The evidence verifies, the browser-signed approval statement in it.
    root = tmp_path / "trust-root.json"
    root.write_bytes(httpx.get(console_server.url + "/v1/trust/root").content)
    verified = ok(fiat_cli("verify", run.evidence, "--trust-root", root, "--json"))
    assert json.loads(verified.stdout)["verified"] is True
    bundle = json.loads(run.evidence.read_text())
    approvals = [
        json.loads(base64.b64decode(s["envelope"]["payload"]))
        for s in bundle["statements"]
        if "approval/v1" in json.loads(base64.b64decode(s["envelope"]["payload"]))["predicateType"]
    ]
    assert [a["predicate"]["reason"] for a in approvals] == ["reviewed in the console"]
    assert approvals[0]["predicate"]["approver"] == "alice"
    # The private key never left the browser: no request's headers or body hold any of its bytes.
    secrets = key_secrets(pem)
    assert sent and not [s for s in sent if any(x in s for x in secrets)]


def test_deny_in_the_browser(console_server: FiatServer, open_page: Callable[..., Watched], tmp_path: Path) -> None:
    page = open_page(console_server.url, "/ui/console").page
    run = deploy(console_server, tmp_path / "deny")
    try:
        assert run.pending.wait(60), run.stderr
        load_key(page, approver_key_file(console_server.home))
        row = page.locator("#approvals tbody tr[data-approval]")
        expect(row).to_have_count(1, timeout=15_000)
        approval_id = row.get_attribute("data-approval")
        row.get_by_role("button", name=f"Deny {approval_id}").click()
        expect(page.locator("#approval-result")).to_contain_text("denied by alice", timeout=15_000)
        code, result = run.result()
    finally:
        run.kill()
    assert code == 125, run.stderr
    assert "was denied" in str(result.get("reason")), result
    expect(page.locator(f"#approvals-done tr[data-approval='{approval_id}']")).to_contain_text("denied")
    expect(page.locator("#approvals tbody tr[data-approval]")).to_have_count(0)


def test_a_wrong_key_file_is_refused_by_the_authority(
    console_server: FiatServer, open_page: Callable[..., Watched], tmp_path: Path
) -> None:
    """A key that is no enrolled approver's: the page says so, and the authority refuses its signature."""
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    w = open_page(console_server.url, "/ui/console")
    page = w.page
    run = deploy(console_server, tmp_path / "wrong")
    try:
        assert run.pending.wait(60), run.stderr
        page.set_input_files("#approver-key", str(stranger))
        expect(page.locator("#approver-status")).to_contain_text("not an active approver key", timeout=10_000)
        row = page.locator("#approvals tbody tr[data-approval]")
        expect(row).to_have_count(1, timeout=15_000)  # from the log: the key may not list the queue
        approval_id = row.get_attribute("data-approval")
        row.get_by_role("button", name=f"Approve {approval_id}").click()
        result = page.locator("#approval-result")
        expect(result).to_contain_text("the authority refused", timeout=15_000)
        expect(result).to_contain_text("not signed by an enrolled, active approver key")
        # A file that is no key at all is refused in the page, with what to pick instead.
        junk = tmp_path / "notes.txt"
        junk.write_text("not a key\n")
        page.set_input_files("#approver-key", str(junk))
        expect(page.locator("#approver-status")).to_contain_text("not a PKCS#8 PEM private key")
        # A passphrase-protected key cannot be opened here: the page says to use `fiat approve`.
        locked = tmp_path / "locked.pem"
        locked.write_bytes(
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"correct horse"),
            )
        )
        page.set_input_files("#approver-key", str(locked))
        expect(page.locator("#approver-status")).to_contain_text("passphrase-protected")
        expect(row.get_by_role("button", name=f"Approve {approval_id}")).to_be_disabled()
    finally:
        run.kill()
    expected_refusals(w, "403")
    state = httpx.get(
        console_server.url + f"/v1/approvals/{approval_id}",
        headers={"Authorization": "Bearer " + (console_server.home / "keys" / "admin.token").read_text().strip()},
    ).json()
    assert state["status"] in ("pending", "expired")  # never approved by the stranger


def test_admin_revocation_from_the_page(console_server: FiatServer, open_page: Callable[..., Watched]) -> None:
    w = open_page(console_server.url, "/ui/console")
    page = w.page
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    page.fill("#revoke-target", "agent:intruder")
    page.select_option("#revoke-kind", "principal")
    page.fill("#revoke-reason", "console test")
    page.click("#revoke-submit")  # no token yet: refused, and said why
    expect(page.locator("#revoke-result")).to_contain_text("admin token")
    page.fill("#admin-token", "wrong-" * 8)
    page.click("#revoke-submit")
    expect(page.locator("#revoke-result")).to_contain_text("Refused")
    token = (console_server.home / "keys" / "admin.token").read_text().strip()
    page.fill("#admin-token", token)
    page.click("#revoke-submit")
    expect(page.locator("#revoke-result")).to_contain_text("Revoked principal", timeout=10_000)
    expect(page.locator("#mode")).to_contain_text("Admin token entered")
    # The revocation arrives over the live stream.
    expect(page.locator("#revocations tbody")).to_contain_text('Agent::"intruder"', timeout=10_000)
    expected_refusals(w, "401")


def test_stream_reconnects_after_a_restart(tmp_path: Path, open_page: Callable[..., Watched]) -> None:
    """The server goes away: the stale marker shows; it comes back on the same port: live again,
    and an entry logged meanwhile arrives."""
    home = make_home(tmp_path)
    server = FiatServer(home).start()
    try:
        w = open_page(server.url, "/ui/console")
        page = w.page
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
        port = server.port
        server.stop()
        expect(page.locator("#conn")).to_have_attribute("data-state", "stale", timeout=15_000)
        server = FiatServer(home, env={"FIAT_SERVER_HOST": "127.0.0.1", "FIAT_SERVER_PORT": str(port)}, port=port)
        server.start()
        token = (home / "keys" / "admin.token").read_text().strip()
        r = httpx.post(
            server.url + "/v1/revocations",
            json={"kind": "permit", "target": "pmt_gone", "reason": "while the page was away"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=30_000)
        expect(page.locator("#revocations tbody")).to_contain_text("pmt_gone", timeout=15_000)
        expected_refusals(w, "/v1/events/stream")  # refused while down (and 503 while draining)
    finally:
        server.stop()


def test_revoke_a_running_permit_from_the_page(
    console_server: FiatServer, open_page: Callable[..., Watched], tmp_path: Path
) -> None:
    """A live permit in the permits table; the admin revokes it from its row; the run halts and the
    row says revoked."""
    w = open_page(console_server.url, "/ui/console")
    page = w.page
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    run = Run(
        console_server, tmp_path / "long", "shell:run", "repo:fiat", "import time; time.sleep(60)",
        FIAT_RUNTIME_HEARTBEAT_MS="200",
    )  # fmt: skip
    try:
        row = page.locator("#permits tbody tr[data-state='live']", has_text="shell:run").first
        expect(row).to_be_visible(timeout=30_000)  # the permit, as the log shows it
        permit_id = row.get_attribute("data-permit")
        page.fill("#admin-token", (console_server.home / "keys" / "admin.token").read_text().strip())
        row.get_by_role("button", name=f"Revoke permit {permit_id}…").click()
        expect(page.locator("#revoke-target")).to_have_value(str(permit_id))
        page.fill("#revoke-reason", "stopped from the console")
        page.click("#revoke-submit")
        expect(page.locator("#revoke-result")).to_contain_text(f"Revoked permit {permit_id}", timeout=10_000)
        code, result = run.result(timeout=60)
    finally:
        run.kill()
    assert result.get("outcome") == "halted", (code, result, run.stderr)
    expect(page.locator(f"#permits tbody tr[data-permit='{permit_id}']")).to_have_attribute(
        "data-state", "revoked", timeout=15_000
    )
