"""The console's reads over HTTP against a real ``fiat serve``: ``/v1/activity``, the live
``/v1/events/stream``, ``/v1/policies`` (versions, text, diff), ``/v1/keys`` and ``/v1/trust/root``;
and :func:`fiat.prove.activity.describe_entry` on every kind of log entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.formats import jws
from fiat.formats.jcs import canonicalize
from fiat.prove import evidence as ev
from fiat.prove.activity import describe_entry
from support import EXAMPLES
from support.processes import FIAT, FiatServer, cli_env, ok
from support.processes import fiat as fiat_cli

PRINCIPAL = "agent:release-bot"


# -- describe_entry, in process ------------------------------------------------------------------


def _sign(statement: Any) -> bytes:
    return ev.sign_statement(statement, [("kid-1", Ed25519PrivateKey.generate())]).encode()


def test_describe_every_kind_of_entry() -> None:
    key = Ed25519PrivateKey.generate()
    claims = {
        "iss": "fiat.local",
        "sub": "agent:release-bot",
        "iat": 1000,
        "exp": 1030,
        "jti": "pmt_b",
        "cnf": {"jwk": jws.jwk(key.public_key().public_bytes_raw())},
        "action": {"name": "deploy", "resource": "service:payments", "digest": {"sha256": "0" * 64}},
        "policy": {"digest": {"sha256": "1" * 64}, "version": 3, "determining": ["platform-deploys"]},
        "parent": None,
        "renews": "pmt_a",
        "approvals": ["apr_x"],
    }
    token = jws.sign_compact(canonicalize(claims), key, kid="auth-kid", typ="fiat-permit+jwt")
    permit = describe_entry(0, token.encode())
    assert permit["kind"] == "permit" and permit["permitId"] == "pmt_b" and permit["renewedFrom"] == "pmt_a"
    assert permit["principal"] == PRINCIPAL and permit["principalKey"] == 'Agent::"release-bot"'
    assert (permit["action"], permit["resource"], permit["exp"], permit["time"]) == (
        "deploy",
        "service:payments",
        1030.0,
        1000.0,
    )
    assert permit["determiningPolicies"] == ["platform-deploys"] and permit["policyVersion"] == 3
    assert permit["runtime"] == jws.jwk_thumbprint(key.public_key().public_bytes_raw())
    assert permit["signers"] == ["auth-kid"] and permit["digest"] == hashlib.sha256(token.encode()).hexdigest()

    request = {"principal": PRINCIPAL, "action": "deploy", "resource": "service:payments", "parent": None}
    decision = describe_entry(
        1,
        _sign(
            ev.decision_statement(
                decision="pending",
                reason="approval by ops required",
                request=request,
                request_digest="2" * 64,
                policy={"digest": {"sha256": "1" * 64}, "version": 3, "determining": ["critical-needs-approval"]},
                at=1001,
                approval_id="apr_x",
                approval_group="ops",
                shadow=[{"scope": "next", "decision": "deny", "determining": ["strict"]}],
            )
        ),
    )
    assert decision["kind"] == "decision" and decision["decision"] == "pending"
    assert decision["approvalId"] == "apr_x" and decision["approvalGroup"] == "ops"
    assert decision["actionDigest"] == "2" * 64 and decision["reasons"] == ["approval by ops required"]
    assert decision["determiningPolicies"] == ["critical-needs-approval"] and decision["time"] == 1001.0
    assert decision["shadow"] == [{"scope": "next", "decision": "deny", "determining": ["strict"]}]
    assert decision["signers"] == ["kid-1"] and decision["permitId"] is None

    approval = describe_entry(
        2,
        _sign(
            ev.approval_statement(
                approval_id="apr_x", decision="approve", approver="alice", request_digest="2" * 64, at=1002, reason="ok"
            )
        ),
    )
    assert (approval["kind"], approval["approvalId"], approval["decision"], approval["approver"]) == (
        "approval",
        "apr_x",
        "approve",
        "alice",
    )
    assert approval["reasons"] == ["ok"] and approval["actionDigest"] == "2" * 64

    revocation = describe_entry(
        3, _sign(ev.revocation_statement(kind="permit", target="pmt_b", reason="stop", epoch=4, at=1003))
    )
    assert (revocation["revocationKind"], revocation["target"], revocation["epoch"]) == ("permit", "pmt_b", 4)

    receipt = describe_entry(
        4,
        _sign(
            ev.receipt_statement(
                permit_id="pmt_b",
                permit_digest="3" * 64,
                start=1000,
                end=1010,
                outcome="halted",
                exit_code=None,
                halt_reason="permit revoked",
                verifications=7,
                verification_chain="4" * 64,
                measurement_start={},
                measurement_end={},
                renewed_from=["pmt_a"],
            )
        ),
    )
    assert (receipt["kind"], receipt["outcome"], receipt["haltReason"], receipt["verifications"]) == (
        "receipt",
        "halted",
        "permit revoked",
        7,
    )
    assert receipt["renewedFrom"] == ["pmt_a"] and receipt["time"] == 1010.0 and receipt["permitId"] == "pmt_b"

    policy = describe_entry(
        5, _sign(ev.policy_statement(digest="5" * 64, version=2, files={"a.cedar": "6" * 64}, at=9))
    )
    assert (policy["kind"], policy["policyVersion"], policy["policyDigest"], policy["files"]) == (
        "policy",
        2,
        "5" * 64,
        ["a.cedar"],
    )

    rotation = describe_entry(
        6,
        _sign(
            ev.key_rotation_statement(
                role="approver", name="alice", old_kid="old", new_kid="new", new_public_key=b"\x01" * 32, at=9
            )
        ),
    )
    assert (rotation["kind"], rotation["role"], rotation["oldKid"], rotation["newKid"]) == (
        "key-rotation",
        "approver",
        "old",
        "new",
    )


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe not text", b"{not json", b"a.b.c", b'{"payload":"e30=","payloadType":"text/plain","signatures":[]}'],
)
def test_an_entry_that_does_not_decode_is_shown_as_unknown(raw: bytes) -> None:
    out = describe_entry(9, raw)
    assert out["kind"] == "unknown" and out["index"] == 9 and out["error"]
    assert out["digest"] == hashlib.sha256(raw).hexdigest()


def test_a_statement_of_a_foreign_predicate_type_is_unknown() -> None:
    from fiat.formats.statement import Statement, Subject

    raw = _sign(Statement((Subject("x", "7" * 64),), "https://example.com/other/v1", {"time": "2026-01-01T00:00:00Z"}))
    out = describe_entry(0, raw)
    assert out["kind"] == "unknown" and "example.com/other" in out["error"] and out["time"] is not None


# -- over HTTP -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    home = tmp_path_factory.mktemp("activity") / "home"
    ok(fiat_cli("init", "--home", home, "--json"))
    ok(fiat_cli("policy", "publish", EXAMPLES, "--home", home, "--json"))
    s = FiatServer(home).start()
    try:
        yield s
    finally:
        s.stop()


def admin(server: FiatServer) -> dict[str, str]:
    return {"Authorization": "Bearer " + (server.home / "keys" / "admin.token").read_text().strip()}


def run(server: FiatServer, principal: str, action: str, resource: str) -> dict[str, Any]:
    p = subprocess.run(
        [
            *(*FIAT, "run", "--json", "--home", str(server.home), "--url", server.url),
            *("--principal", principal, "--action", action, "--resource", resource),
            *("--", sys.executable, "-c", "pass"),
        ],
        env=cli_env(FIAT_RUNTIME_CONTAINMENT="process"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return dict(json.loads(p.stdout))


def revoke(server: FiatServer, kind: str, target: str) -> int:
    r = httpx.post(
        server.url + "/v1/revocations", json={"kind": kind, "target": target, "reason": "test"}, headers=admin(server)
    )
    assert r.status_code == 200, r.text
    return int(r.json()["logIndex"])


def test_activity_decodes_a_real_log(server: FiatServer) -> None:
    allowed = run(server, PRINCIPAL, "shell:run", "repo:fiat")
    run(server, "agent:support-assistant", "shell:run", "repo:fiat")
    revoked_at = revoke(server, "principal", "agent:someone")
    page = httpx.get(server.url + "/v1/activity", params={"after": -1, "limit": 1000}).json()
    entries = page["entries"]
    assert page["treeSize"] == len(entries) and [e["index"] for e in entries] == list(range(len(entries)))
    kinds = [e["kind"] for e in entries]
    assert {"policy", "permit", "decision", "receipt", "revocation"} <= set(kinds), kinds
    permit = next(e for e in entries if e["kind"] == "permit" and e["permitId"] == allowed["permitId"])
    assert (permit["principal"], permit["action"], permit["resource"]) == (PRINCIPAL, "shell:run", "repo:fiat")
    receipt = next(e for e in entries if e["kind"] == "receipt" and e["permitId"] == allowed["permitId"])
    assert receipt["outcome"] == "completed" and receipt["index"] == allowed["receiptLogIndex"]
    denied = [e for e in entries if e["kind"] == "decision" and e["decision"] == "deny"]
    assert denied and denied[-1]["principal"] == "agent:support-assistant" and denied[-1]["reasons"]
    allow = next(e for e in entries if e["kind"] == "decision" and e["permitId"] == allowed["permitId"])
    assert allow["decision"] == "allow" and allow["determiningPolicies"]
    assert entries[revoked_at]["target"] == 'Agent::"someone"'
    # Paging: after= and limit= cut the same list.
    part = httpx.get(server.url + "/v1/activity", params={"after": 1, "limit": 2}).json()["entries"]
    assert part == entries[2:4]
    assert httpx.get(server.url + "/v1/activity", params={"after": 10**6}).json()["entries"] == []
    for bad in ({"limit": 0}, {"limit": 1001}, {"after": -2}):
        r = httpx.get(server.url + "/v1/activity", params=bad)
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json"), bad


class Sse:
    """Reads one ``/v1/events/stream`` in a thread: (event, id, data) triples in order."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[str, str | None, Any]] = []
        self.ended = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=30))
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                name, ident, data = "message", None, ""
                for line in r.iter_lines():
                    if line == "":
                        if data:
                            self.events.append((name, ident, json.loads(data)))
                        name, ident, data = "message", None, ""
                    elif line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("id: "):
                        ident = line[4:]
                    elif line.startswith("data: "):
                        data += line[6:]
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def wait(self, pred: Any, timeout: float = 10) -> list[tuple[str, str | None, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [e for e in self.events if pred(e)]
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError(f"no such event within {timeout} s; got {self.events[-5:]}")

    def close(self) -> None:
        self._client.close()


def test_the_stream_replays_then_pushes_live_entries(server: FiatServer) -> None:
    size = httpx.get(server.url + "/v1/activity", params={"limit": 1}).json()["treeSize"]
    stream = Sse(server.url + "/v1/events/stream?after=0")
    try:
        replayed = stream.wait(lambda e: e[0] == "entry" and e[1] == str(size - 1))
        ids = [int(e[1]) for e in stream.events if e[0] == "entry" and e[1] is not None]
        assert ids[: size - 1] == list(range(1, size)), ids  # every entry after 0, in order, once
        assert replayed[0][2]["index"] == size - 1
        started = time.monotonic()
        index = revoke(server, "permit", "pmt_live")
        live = stream.wait(lambda e: e[0] == "entry" and e[1] == str(index))
        took = time.monotonic() - started
        assert live[0][2]["kind"] == "revocation" and live[0][2]["target"] == "pmt_live"
        assert took < 3, f"a new entry took {took:.2f} s to reach the stream"
        ids = [int(e[1]) for e in stream.events if e[0] == "entry" and e[1] is not None]
        assert ids == sorted(set(ids)), "an entry was sent twice or out of order"
    finally:
        stream.close()


def test_the_stream_resumes_from_last_event_id_and_starts_at_the_end_without_either(server: FiatServer) -> None:
    size = httpx.get(server.url + "/v1/activity", params={"limit": 1}).json()["treeSize"]
    resumed = Sse(server.url + "/v1/events/stream", {"Last-Event-ID": str(size - 2)})
    fresh = Sse(server.url + "/v1/events/stream")
    try:
        got = resumed.wait(lambda e: e[0] == "entry")
        assert got[0][1] == str(size - 1)
        time.sleep(0.5)
        assert not [e for e in fresh.events if e[0] == "entry"]  # nothing old
        index = revoke(server, "permit", "pmt_fresh")
        assert fresh.wait(lambda e: e[0] == "entry")[0][1] == str(index)
    finally:
        resumed.close()
        fresh.close()
    for bad in ("/v1/events/stream?after=-5", "/v1/events/stream?after=x"):
        assert httpx.get(server.url + bad).status_code in (400, 422)
    r = httpx.get(server.url + "/v1/events/stream", headers={"Last-Event-ID": "nope"})
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["detail"]


def test_the_stream_says_going_away_and_ends_on_shutdown(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(fiat_cli("init", "--home", home, "--json"))
    s = FiatServer(home).start()
    stream = Sse(s.url + "/v1/events/stream")
    try:
        time.sleep(0.5)
        s.proc.send_signal(signal.SIGTERM)
        stream.wait(lambda e: e[0] == "going-away")
        assert stream.ended.wait(10), "the stream did not end after going-away"
        s.proc.wait(15)
        assert s.proc.returncode == 0
    finally:
        stream.close()
        s.stop()


def test_policy_versions_text_and_diff(server: FiatServer, tmp_path: Path) -> None:
    files = {p.name: p.read_bytes() for p in EXAMPLES.iterdir() if p.is_file()}
    files["shell.cedar"] = files["shell.cedar"] + b"\n// reviewed by the console test\n"
    body = {"files": {n: base64.b64encode(c).decode() for n, c in files.items()}}
    assert httpx.post(server.url + "/v1/policies", json=body).status_code == 401  # still admin
    published = httpx.post(server.url + "/v1/policies", json=body, headers=admin(server))
    assert published.status_code == 200, published.text
    v2 = published.json()["version"]
    listing = httpx.get(server.url + "/v1/policies").json()
    assert [v["version"] for v in listing["versions"]] == list(range(1, v2 + 1)) and listing["active"] == v2
    assert listing["versions"][-1]["digest"] == published.json()["digest"]
    assert listing["versions"][-1]["logIndex"] == published.json()["logIndex"]
    text = httpx.get(server.url + f"/v1/policies/{v2}").json()
    assert text["files"]["shell.cedar"].endswith("// reviewed by the console test\n")
    diff = httpx.get(server.url + "/v1/policies/diff", params={"from": 1, "to": v2}).json()["diff"]
    assert f"--- v1/shell.cedar\n+++ v{v2}/shell.cedar\n" in diff
    assert "+// reviewed by the console test\n" in diff and "deploy.cedar" not in diff
    assert httpx.get(server.url + "/v1/policies/diff", params={"from": 1, "to": 1}).json()["diff"] == ""
    assert httpx.get(server.url + "/v1/policies/99").status_code == 404
    assert httpx.get(server.url + "/v1/policies/diff", params={"from": 1, "to": 99}).status_code == 404
    # The decision log names the version that decided: the activity feed shows it.
    entries = httpx.get(server.url + "/v1/activity", params={"limit": 1000}).json()["entries"]
    assert [e for e in entries if e["kind"] == "policy"][-1]["policyVersion"] == v2


def test_trust_root_is_the_export_with_its_fingerprint(server: FiatServer) -> None:
    r = httpx.get(server.url + "/v1/trust/root")
    exported = ok(fiat_cli("trust-root", "export", "--home", server.home)).stdout
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.content == exported
    assert r.headers["fiat-trust-root-fingerprint"] == "sha256:" + hashlib.sha256(exported).hexdigest()
    keys = httpx.get(server.url + "/v1/keys").json()
    assert keys["fingerprint"] == r.headers["fiat-trust-root-fingerprint"]
    roles = {k["role"] for k in keys["keys"]}
    assert {"authority", "log", "runtime"} <= roles
    assert all(k["active"] and "validFrom" in k and "publicKey" in k for k in keys["keys"])
    assert not [k for k in keys["keys"] if "file" in k]  # the keyring's file names stay private
    # A key added while serving shows at once, and the trust root (and its fingerprint) with it.
    ok(fiat_cli("keys", "add", "--role", "approver", "--name", "zoe", "--group", "ops", "--home", server.home))
    again = httpx.get(server.url + "/v1/trust/root")
    assert again.content == ok(fiat_cli("trust-root", "export", "--home", server.home)).stdout != exported
    assert "zoe" in {k["name"] for k in httpx.get(server.url + "/v1/keys").json()["keys"]}


# -- what other producers publish, in process ---------------------------------------------------------


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """``create_app`` served by uvicorn in a thread of this process: (URL, the app's event hub)."""
    import uvicorn

    from fiat.api.app import create_app
    from fiat.config import load_config
    from support.processes import clean_env, free_port

    home = tmp_path / "home"
    ok(fiat_cli("init", "--home", home, "--json"))
    with clean_env():
        app = create_app(load_config(home, require=True))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield url, app.state.events
    finally:
        server.should_exit = True
        thread.join(15)


def test_producer_events_are_forwarded_and_a_slow_page_is_told_overflow(in_process: tuple[str, Any]) -> None:
    from fiat.api.events import QUEUE_SIZE

    url, events = in_process
    stream = Sse(url + "/v1/events/stream")
    try:
        deadline = time.monotonic() + 10
        while events.subscribers == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        events.publish("run", {"scenario": 3, "step": "started"}, id="run-1")
        got = stream.wait(lambda e: e[0] == "run")
        assert got == [("run", "run-1", {"scenario": 3, "step": "started"})]  # forwarded as published
        for n in range(QUEUE_SIZE * 2):  # faster than any page reads: the subscriber's queue overflows
            events.publish("run", {"n": n})
        stream.wait(lambda e: e[0] == "overflow")
        assert len([e for e in stream.events if e[0] == "run"]) < QUEUE_SIZE * 2 + 1
    finally:
        stream.close()


@pytest.mark.parametrize("path", ["/v1/events/stream", "/v1/demo/stream"])
def test_past_the_cap_a_new_stream_is_refused_at_once(in_process: tuple[str, Any], path: str) -> None:
    # Attack: idle connections that never read, opened by anyone (the streams are public). Past the
    # cap a new one is a 503 with Retry-After at once, so the server's memory and its event loop stay
    # with the trust stream the guards depend on.
    from fiat.api.events import MAX_SUBSCRIBERS

    url, events = in_process
    held = [events.subscribe() for _ in range(MAX_SUBSCRIBERS)]
    try:
        r = httpx.get(url + path, timeout=5)
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        assert "live event streams are open" in r.json()["detail"]
    finally:
        for q in held:
            events.unsubscribe(q)
    with httpx.stream("GET", url + path, timeout=5) as ok_again:
        assert ok_again.status_code == 200
