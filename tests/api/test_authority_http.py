"""End-to-end tests of the authority's HTTP API against a real ``fiat serve`` child process.

Every test talks to ``fiat serve --home H --host 127.0.0.1 --port P`` over HTTP, with
:class:`fiat.api.client.AuthorityClient` (DPoP-proven runtime calls, signed approvals) or raw
httpx, and drives the real CLI (``fiat approve``, ``fiat deny``, ``fiat revoke``,
``fiat enroll``, ``fiat policy publish``) as child processes. Homes are made with
``fiat init`` in tmp_path; the approver key with ``fiat keys add --role approver``.

One server on the example bundle (examples/policies) is shared by the tests that do not
interfere with one another; tests that need other settings, another bundle, a restart or
a locked database get their own home and server.

What is checked independently of Fiat's own code: permits and trust states are verified
with PyJWT under the authority key of ``fiat trust-root export``; the action digest is
recomputed with the ``rfc8785`` package; log entries are read over C2SP tlog-tiles
(``/log/tile/entries/...``) and their DSSE signatures checked by hand (PAE + Ed25519).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import queue
import re
import shutil
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fiat.api.client import AuthorityClient, ClientError
from fiat.authorize.dpop import make_proof
from fiat.formats.encoding import json_digest
from fiat.formats.statement import REVOCATION
from fiat.keys.keyring import KeyRing
from fiat.prove import evidence as ev
from fiat.verify.bundle import Bundle
from support import EXAMPLES, copy_bundle, edit
from support.processes import FiatServer, free_port, ok, one_line
from support.processes import fiat as fiat_bytes
from support.processes import fiat_text as fiat

DECISION_V1 = "https://fiat.local/predicate/decision/v1"
APPROVAL_V1 = "https://fiat.local/predicate/approval/v1"
IN_TOTO = "application/vnd.in-toto+json"
PROBLEM = "application/problem+json"
ISSUER, AUDIENCE = "fiat.local", "fiat-runtime"


# -- homes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    runtime_kid: str
    runtime_key: Ed25519PrivateKey
    approver_kid: str
    approver_key: Ed25519PrivateKey
    authority_kid: str
    authority_pub: Ed25519PublicKey


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Keys]:
    """One home made with `fiat init` + an approver key; tests copy it (same keys, empty log)."""
    home = tmp_path_factory.mktemp("template") / "home"
    ok(fiat("init", "--home", home))
    ok(fiat("keys", "add", "--role", "approver", "--name", "alice", "--group", "ops", "--home", home))
    root = json.loads(ok(fiat("trust-root", "export", "--home", home)).stdout)
    (authority,) = [k for k in root["keys"] if k["role"] == "authority"]
    ring = KeyRing(home / "keys")
    rt, rt_key = ring.signing_key("runtime")
    ap, ap_key = ring.signing_key("approver", "alice")
    keys = Keys(
        rt.kid,
        rt_key,
        ap.kid,
        ap_key,
        authority["kid"],
        Ed25519PublicKey.from_public_bytes(b64url_decode(authority["publicKey"])),
    )
    return home, keys


def new_home(template: tuple[Path, Keys], where: Path, bundle: Path | None = EXAMPLES) -> Path:
    home = where / "home"
    shutil.copytree(template[0], home)
    if bundle is not None:
        ok(fiat("policy", "publish", bundle, "--home", home))
    return home


@dataclass
class Authority:
    """A running server with the keys of its home and a client."""

    home: Path
    server: FiatServer
    keys: Keys
    client: AuthorityClient

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def admin(self) -> str:
        return (self.home / "keys" / "admin.token").read_text(encoding="utf-8").strip()

    def authorize(self, body: dict[str, Any], key: Ed25519PrivateKey | None = None, kid: str | None = None) -> Any:
        return self.client.authorize(key or self.keys.runtime_key, kid or self.keys.runtime_kid, body)

    def approval(self, approval_id: str) -> dict[str, Any]:
        return self.client.approval(None, approval_id, admin_token=self.admin)


StartFn = Callable[..., Authority]


@contextlib.contextmanager
def serving(home: Path, keys: Keys, env: dict[str, str] | None = None) -> Iterator[Authority]:
    """``fiat serve`` of ``home`` and a client of it; both closed at the end."""
    with FiatServer(home, env=env) as server:
        a = Authority(home, server, keys, AuthorityClient(server.url, timeout=30))
        try:
            yield a
        finally:
            a.client.close()


@pytest.fixture
def start(template: tuple[Path, Keys], tmp_path: Path) -> Iterator[StartFn]:
    """Start servers for one test (its own home unless given one); stopped at the end."""
    with contextlib.ExitStack() as started:

        def _start(
            home: Path | None = None, env: dict[str, str] | None = None, bundle: Path | None = EXAMPLES
        ) -> Authority:
            if home is None:
                home = new_home(template, tmp_path, bundle)
            return started.enter_context(serving(home, template[1], env))

        yield _start


@pytest.fixture(scope="module")
def shared(template: tuple[Path, Keys], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    """The example bundle, served for the tests that do not interfere (trust ticks every 5 s)."""
    home = new_home(template, tmp_path_factory.mktemp("shared"))
    with serving(home, template[1], {"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "5000"}) as a:
        yield a


# -- requests ----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def thumbprint(key: Ed25519PrivateKey) -> str:
    """RFC 7638 JWK thumbprint of an Ed25519 key (members in lexicographic order, no spaces)."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url(public_bytes(key))}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


CLAIMS = {"image": "registry.example/agent@sha256:" + "ab" * 32, "host": "ci-7"}
EVIDENCE = {"claims": CLAIMS, "digest": json_digest(CLAIMS)}


def deploy(
    resource: str = "service:docs", replicas: int = 3, principal: str = "agent:release-bot", **extra: Any
) -> dict[str, Any]:
    return {
        "principal": principal,
        "action": "deploy",
        "resource": resource,
        "context": {"version": "1.2.0", "replicas": replicas},
        "evidence": EVIDENCE,
        **extra,
    }


def refund(amount: int = 2500, currency: str = "EUR", principal: str = "agent:support-assistant") -> dict[str, Any]:
    return {
        "principal": principal,
        "action": "tool:refund",
        "resource": "order:48213",
        "context": {"amount_cents": amount, "currency": currency},
    }


def expected_digest(body: dict[str, Any]) -> str:
    """SHA-256 over the RFC 8785 form of the action request, computed with the rfc8785 package."""
    request = {
        "principal": body["principal"],
        "action": body["action"],
        "resource": body["resource"],
        "context": body.get("context", {}),
        "parent": body.get("parent"),
    }
    return hashlib.sha256(rfc8785.dumps(request)).hexdigest()


def metrics(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def metric(url: str, name: str) -> float:
    return metrics(url).get(name, 0.0)


def assert_problem(r: httpx.Response, status: int, needle: str = "") -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status
    assert needle.lower() in body["detail"].lower(), body
    return dict(body)


def authorize_raw(a: Authority, body: dict[str, Any], proof: str | None, kid: str | None = None) -> httpx.Response:
    headers = {} if proof is None else {"DPoP": proof}
    return httpx.post(
        a.url + "/v1/authorize", json={**body, "runtimeKid": kid or a.keys.runtime_kid}, headers=headers, timeout=30
    )


# -- the log, read over C2SP tlog-tiles --------------------------------------------------------


def log_size(url: str) -> int:
    note = httpx.get(url + "/log/checkpoint").text
    return int(note.split("\n")[1])


def _tile_index(n: int) -> str:
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def log_entries(url: str, start: int = 0, end: int | None = None) -> list[bytes]:
    size = log_size(url)
    end = size if end is None else end
    assert 0 <= start <= end <= size, (start, end, size)
    entries: list[bytes] = []
    for n in range(start // 256, (end + 255) // 256):
        width = min(256, size - n * 256)
        path = _tile_index(n) + ("" if width == 256 else f".p/{width}")
        r = httpx.get(f"{url}/log/tile/entries/{path}")
        assert r.status_code == 200, (path, r.text)
        data, pos, bundle = r.content, 0, []
        while pos < len(data):
            (length,) = struct.unpack_from(">H", data, pos)
            bundle.append(data[pos + 2 : pos + 2 + length])
            pos += 2 + length
        assert len(bundle) == width
        entries.extend(bundle)
    return entries[start - (start // 256) * 256 : end - (start // 256) * 256]


def log_entry(url: str, index: int) -> bytes:
    return log_entries(url, index, index + 1)[0]


def open_envelope(entry: bytes, signer: Ed25519PublicKey, keyid: str) -> dict[str, Any]:
    """Check a DSSE envelope's signature by hand (PAE, Ed25519); return its in-toto statement."""
    env = json.loads(entry)
    assert env["payloadType"] == IN_TOTO
    payload = base64.b64decode(env["payload"])
    t = env["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)
    verified = False
    for sig in env["signatures"]:
        if sig["keyid"] != keyid:
            continue
        try:
            signer.verify(base64.b64decode(sig["sig"]), pae)
            verified = True
        except InvalidSignature:
            pass
    assert verified, f"no valid signature by {keyid}"
    statement = json.loads(payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    return dict(statement)


def assert_decision_logged(a: Authority, result: dict[str, Any]) -> dict[str, Any]:
    """The decision's log entry is an authority-signed DSSE decision/v1 statement with the same decision."""
    index = result["decisionLogIndex"]
    assert isinstance(index, int), result
    statement = open_envelope(log_entry(a.url, index), a.keys.authority_pub, a.keys.authority_kid)
    assert statement["predicateType"] == DECISION_V1
    p = statement["predicate"]
    assert p["decision"] == result["decision"]
    assert p["reason"] == result["reason"]
    assert statement["subject"] == [{"name": "action-request", "digest": {"sha256": result["actionDigest"]}}]
    assert p["inputs"]["actionRequest"] == {"sha256": result["actionDigest"]}
    if result["decision"] == "allow":
        assert p["permit"]["jti"] == result["permitId"]
        assert p["permit"]["digest"]["sha256"] == hashlib.sha256(result["permit"].encode()).hexdigest()
        assert log_entry(a.url, result["permitLogIndex"]) == result["permit"].encode()
    else:
        assert p["permit"] is None
    if result["decision"] == "pending":  # the approval it opened (or names again) and the group it needs
        assert p["approval"] == {"id": result["approvalId"], "group": "ops"}
    return statement


def decode_permit(a: Authority, token: str) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "fiat-permit+jwt"
    assert header["kid"] == a.keys.authority_kid
    claims = jwt.decode(token, a.keys.authority_pub, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
    return dict(claims)


def decode_trust_state(a: Authority, token: str) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "fiat-trust-state+jwt"
    assert header["kid"] == a.keys.authority_kid
    return dict(jwt.decode(token, a.keys.authority_pub, algorithms=["EdDSA"], options={"verify_aud": False}))


def approve_cli(a: Authority, approval_id: str, approve: bool = True) -> subprocess.CompletedProcess[str]:
    return fiat("approve" if approve else "deny", approval_id, "--home", a.home, "--url", a.url, "--reason", "test")


def cli_log_index(p: subprocess.CompletedProcess[str]) -> int:
    m = re.search(r"\(log index (\d+)\)", p.stdout)
    assert m, p.stdout
    return int(m.group(1))


def signed_approval(
    approval_id: str,
    digest: str,
    key: Ed25519PrivateKey,
    kid: str,
    decision: str = "approve",
    approver: str = "alice",
) -> dict[str, Any]:
    statement = ev.approval_statement(
        approval_id=approval_id, decision=decision, approver=approver, request_digest=digest, at=time.time()
    )
    return {"envelope": ev.sign_statement(statement, [(kid, key)]).to_json()}


def pending(a: Authority, body: dict[str, Any]) -> dict[str, Any]:
    r = a.authorize(body)
    assert r["decision"] == "pending", r
    assert r["approvalId"] and r["permit"] is None
    assert_decision_logged(a, r)
    return dict(r)


# -- decisions ------------------------------------------------------------------------------------


def test_allow_returns_a_permit_that_verifies_under_the_trust_root(shared: Authority) -> None:
    body = deploy()
    r = shared.authorize(body)
    assert r["decision"] == "allow", r
    assert r["determiningPolicies"] == ["platform-deploys"]
    digest = expected_digest(body)
    assert r["actionDigest"] == digest
    claims = decode_permit(shared, r["permit"])
    assert claims["jti"] == r["permitId"]
    assert claims["sub"] == "agent:release-bot"
    assert claims["cnf"] == {
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_bytes(shared.keys.runtime_key))}
    }
    assert claims["action"] == {"name": "deploy", "resource": "service:docs", "digest": {"sha256": digest}}
    assert claims["exp"] - claims["iat"] == 60  # @ttl("60")
    assert claims["constraints"] == {"singleUse": False, "maxDuration": 600}
    assert claims["environment"] == {"digest": {"sha256": EVIDENCE["digest"]}}
    assert claims["policy"]["determining"] == ["platform-deploys"]
    assert claims["policy"]["version"] == 1
    assert claims["approvals"] == [] and claims["parent"] is None
    statement = assert_decision_logged(shared, r)
    assert statement["predicate"]["permit"]["digest"]["sha256"]  # the permit's JWS digest is bound
    # The permit cannot be passed off under another key.
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(r["permit"], Ed25519PrivateKey.generate().public_key(), algorithms=["EdDSA"], audience=AUDIENCE)


def test_deny_by_default(shared: Authority) -> None:
    for body in (
        deploy(principal="agent:support-assistant"),  # support may not deploy
        {k: v for k, v in deploy().items() if k != "evidence"},  # no evidence: environment not verified
        deploy(evidence={"claims": CLAIMS, "digest": "0" * 64}),  # evidence whose digest does not recompute
    ):
        r = shared.authorize(body)
        assert r["decision"] == "deny", r
        assert r["permit"] is None and r["permitId"] is None
        assert r["reason"].startswith("no policy permits it (deny by default)")
        assert r["determiningPolicies"] == []
        assert r["actionDigest"] == expected_digest(body)
        assert_decision_logged(shared, r)


def test_a_denial_says_why_in_terms_a_user_can_act_on(shared: Authority) -> None:
    no_permit = "no policy permits it (deny by default)"
    cases = [
        ({k: v for k, v in deploy().items() if k != "evidence"}, [no_permit, NO_EVIDENCE]),
        (
            deploy(evidence={"claims": CLAIMS, "digest": "0" * 64}),
            [
                no_permit,
                "the environment was not verified: the Evidence was not accepted "
                "(the digest does not match the claims)",
            ],
        ),
        (deploy(principal="agent:x"), [no_permit, 'principal Agent::"x" is unknown to the entities' + OF_POLICY]),
        (
            {**deploy(), "action": "shell:run", "resource": "repo:nope", "context": {"command": COMMAND}},
            [no_permit, 'resource Repo::"nope" is unknown to the entities' + OF_POLICY],
        ),
        (deploy(replicas=60), ["forbidden by policy replica-ceiling (deploy.cedar:15)"]),
        (  # known, verified: simply not permitted by the policies for the action
            deploy(principal="agent:support-assistant"),
            [
                no_permit,
                'the permit policies for Action::"deploy" did not match: '
                "platform-deploys (deploy.cedar:2), critical-needs-approval (deploy.cedar:9)",
            ],
        ),
    ]
    for body, reasons in cases:
        r = shared.authorize(body)
        assert r["decision"] == "deny", r
        assert r["reasons"][: len(reasons)] == reasons, r
        statement = assert_decision_logged(shared, r)
        assert "reasons" not in statement["predicate"]  # the signed statement keeps its fields
    r = shared.authorize(deploy())
    assert r["reasons"] == ["permitted by policy platform-deploys (deploy.cedar:2)"], r


COMMAND = {"argv": ["make"], "cwd": "/src"}
NO_EVIDENCE = "the environment was not verified because no Evidence was sent"
OF_POLICY = " (entities.json of the active policy)"


def test_forbid_overrides_permit(shared: Authority) -> None:
    r = shared.authorize(deploy(replicas=60))
    assert r["decision"] == "deny", r
    assert r["determiningPolicies"] == ["replica-ceiling"]
    assert r["reason"] == "forbidden by replica-ceiling"
    assert_decision_logged(shared, r)
    # replicas 60 is above the permits' own ceiling of 20 as well, so also check a request that
    # a permit does match: shell:run is permitted, and lineage-limit forbids depth > 3.
    parent = None
    for depth in range(4):
        body = {
            "principal": "agent:release-bot",
            "action": "shell:run",
            "resource": "repo:fiat",
            "context": {"command": {"argv": ["make", "test"], "cwd": "/src"}},
            "evidence": EVIDENCE,
            "parent": parent,
        }
        r = shared.authorize(body)
        assert r["decision"] == "allow", (depth, r)
        assert decode_permit(shared, r["permit"])["parent"] == parent
        parent = r["permitId"]
    r = shared.authorize({**body, "parent": parent})
    assert r["decision"] == "deny", r
    assert r["determiningPolicies"] == ["lineage-limit"]
    assert r["reason"] == "forbidden by lineage-limit"
    assert_decision_logged(shared, r)


def test_shadow_policy_is_reported_not_enforced(shared: Authority) -> None:
    # refund-currency-eur-only (@shadow) would forbid a USD refund; it is not enforced.
    r = shared.authorize(refund(currency="USD"))
    assert r["decision"] == "allow", r
    assert r["determiningPolicies"] == ["small-refunds"]
    assert r["shadow"] == [
        {"scope": "with-shadow-policies", "decision": "deny", "determining": ["refund-currency-eur-only"]}
    ]
    assert decode_permit(shared, r["permit"])["constraints"] == {"singleUse": True}
    assert_decision_logged(shared, r)
    r = shared.authorize(refund(currency="EUR"))
    assert r["decision"] == "allow", r
    assert r["shadow"] == [{"scope": "with-shadow-policies", "decision": "allow", "determining": ["small-refunds"]}]
    # Over the limit: denied as without the shadow policy.
    r = shared.authorize(refund(amount=20000, currency="USD"))
    assert r["decision"] == "deny", r
    assert r["shadow"][0]["decision"] == "deny"


def test_whole_bundle_shadow_mode_denies_and_reports(start: StartFn, tmp_path: Path) -> None:
    bundle = tmp_path / "shadow-bundle"
    shutil.copytree(EXAMPLES, bundle)
    (bundle / "fiat-policy.toml").write_text("shadow = true\n", encoding="utf-8")
    (bundle / "tests.json").unlink()  # its cases expect allows, which a bundle in shadow mode never gives
    a = start(bundle=bundle)
    r = a.authorize(deploy())
    assert r["decision"] == "deny", r
    assert r["permit"] is None
    assert {"scope": "bundle", "decision": "allow", "determining": ["platform-deploys"]} in r["shadow"]
    assert "shadow mode" in r["reason"]
    assert_decision_logged(a, r)
    r = a.authorize(deploy(replicas=60))
    assert r["decision"] == "deny"
    assert {"scope": "bundle", "decision": "deny", "determining": ["replica-ceiling"]} in r["shadow"]
    r = a.authorize(refund(currency="USD"))
    assert r["decision"] == "deny"
    assert {"scope": "bundle", "decision": "allow", "determining": ["small-refunds"]} in r["shadow"]
    assert {"scope": "with-shadow-policies", "decision": "deny", "determining": ["refund-currency-eur-only"]} in r[
        "shadow"
    ]


# -- approvals ---------------------------------------------------------------------------------------


def test_approval_approved_with_cli_then_allow(shared: Authority) -> None:
    body = deploy(resource="service:payments")
    p = pending(shared, body)
    assert sorted(p["determiningPolicies"]) == ["critical-needs-approval", "platform-deploys"]
    assert shared.approval(p["approvalId"])["status"] == "pending"
    cli = ok(approve_cli(shared, p["approvalId"]))
    assert f"{p['approvalId']}: approved by alice" in cli.stdout
    approval_index = cli_log_index(cli)
    entry = log_entry(shared.url, approval_index)
    statement = open_envelope(entry, shared.keys.approver_key.public_key(), shared.keys.approver_kid)
    assert statement["predicateType"] == APPROVAL_V1
    assert statement["predicate"]["id"] == p["approvalId"] and statement["predicate"]["decision"] == "approve"
    assert statement["subject"][0]["digest"]["sha256"] == p["actionDigest"]
    assert shared.approval(p["approvalId"])["status"] == "approved"
    assert shared.approval(p["approvalId"])["approver"] == "alice"

    r = shared.authorize({**body, "approvalId": p["approvalId"]})
    assert r["decision"] == "allow", r
    claims = decode_permit(shared, r["permit"])
    assert claims["approvals"] == [hashlib.sha256(entry).hexdigest()]
    assert r["actionDigest"] == p["actionDigest"]
    assert_decision_logged(shared, r)
    assert shared.approval(p["approvalId"])["status"] == "used"


def test_approval_denied_with_cli_is_not_allowed(shared: Authority) -> None:
    body = deploy(resource="service:payments", replicas=4)
    p = pending(shared, body)
    cli = ok(approve_cli(shared, p["approvalId"], approve=False))
    assert f"{p['approvalId']}: denied by alice" in cli.stdout
    assert shared.approval(p["approvalId"])["status"] == "denied"
    r = shared.authorize({**body, "approvalId": p["approvalId"]})
    assert r["decision"] != "allow", r
    assert r["permit"] is None
    assert r["approvalId"] != p["approvalId"]
    # The decided approval cannot be turned into an approval afterwards.
    again = approve_cli(shared, p["approvalId"])
    assert again.returncode == 1 and "409" in again.stderr, again.stderr


def test_approval_timeout_expires_and_is_denied(start: StartFn) -> None:
    a = start(env={"FIAT_AUTHORITY_APPROVAL_TIMEOUT_S": "1"})
    body = deploy(resource="service:payments")
    p = pending(a, body)
    deadline = time.monotonic() + 10
    while (status := a.approval(p["approvalId"])["status"]) == "pending" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == "expired"
    cli = approve_cli(a, p["approvalId"])
    assert cli.returncode == 1, cli
    assert "409" in cli.stderr and "expired" in cli.stderr, cli.stderr
    raw = httpx.post(
        f"{a.url}/v1/approvals/{p['approvalId']}",
        json=signed_approval(p["approvalId"], p["actionDigest"], a.keys.approver_key, a.keys.approver_kid),
    )
    assert_problem(raw, 409, "expired")
    r = a.authorize({**body, "approvalId": p["approvalId"]})
    assert r["decision"] == "pending" and r["approvalId"] != p["approvalId"], r
    # The timeout was logged as a signed deny decision for the same action.
    denials = []
    for entry in log_entries(a.url):
        try:
            statement = open_envelope(entry, a.keys.authority_pub, a.keys.authority_kid)
        except (ValueError, KeyError, AssertionError):
            continue
        pr = statement["predicate"]
        if statement["predicateType"] == DECISION_V1 and pr["decision"] == "deny" and p["approvalId"] in pr["reason"]:
            denials.append(statement)
    assert len(denials) == 1, denials
    assert denials[0]["subject"][0]["digest"]["sha256"] == p["actionDigest"]
    assert "timed out" in denials[0]["predicate"]["reason"]


def test_pending_approval_survives_a_restart(start: StartFn) -> None:
    first = start()
    body = deploy(resource="service:payments")
    p = pending(first, body)
    first.server.stop()
    second = start(home=first.home)
    assert second.approval(p["approvalId"])["status"] == "pending"
    ok(approve_cli(second, p["approvalId"]))
    r = second.authorize({**body, "approvalId": p["approvalId"]})
    assert r["decision"] == "allow", r
    assert len(decode_permit(second, r["permit"])["approvals"]) == 1
    assert_decision_logged(second, r)


def test_approval_signed_by_a_key_that_is_not_an_approver_is_refused(shared: Authority) -> None:
    body = deploy(resource="service:payments", replicas=5)
    p = pending(shared, body)
    before = metric(shared.url, "fiat_auth_failures_total")
    stranger = Ed25519PrivateKey.generate()
    for key, kid in (
        (stranger, thumbprint(stranger)),  # not enrolled at all
        (shared.keys.runtime_key, shared.keys.runtime_kid),  # enrolled, but as a runtime
        (stranger, shared.keys.approver_kid),  # claims the approver's key id
    ):
        r = httpx.post(
            f"{shared.url}/v1/approvals/{p['approvalId']}",
            json=signed_approval(p["approvalId"], p["actionDigest"], key, kid),
        )
        assert_problem(r, 403, "not signed by an enrolled, active approver key")
    assert metric(shared.url, "fiat_auth_failures_total") == before + 3
    assert shared.approval(p["approvalId"])["status"] == "pending"
    r2 = shared.authorize({**body, "approvalId": p["approvalId"]})
    assert r2["decision"] == "pending", r2


def test_approval_bound_to_another_action_is_refused(shared: Authority) -> None:
    body = deploy(resource="service:payments", replicas=6)
    p = pending(shared, body)
    other = expected_digest(deploy(resource="service:payments", replicas=7))
    r = httpx.post(
        f"{shared.url}/v1/approvals/{p['approvalId']}",
        json=signed_approval(p["approvalId"], other, shared.keys.approver_key, shared.keys.approver_kid),
    )
    assert_problem(r, 403, "bound to another action")
    assert shared.approval(p["approvalId"])["status"] == "pending"
    # A granted approval does not carry over to another request either.
    ok(approve_cli(shared, p["approvalId"]))
    r = shared.authorize({**deploy(resource="service:payments", replicas=7), "approvalId": p["approvalId"]})
    assert r["decision"] == "pending" and r["approvalId"] != p["approvalId"], r
    assert shared.approval(p["approvalId"])["status"] == "approved"  # untouched, still usable for its own action
    r = shared.authorize({**body, "approvalId": p["approvalId"]})
    assert r["decision"] == "allow", r


def test_approval_is_single_use(shared: Authority) -> None:
    body = deploy(resource="service:payments", replicas=8)
    p = pending(shared, body)
    ok(approve_cli(shared, p["approvalId"]))
    first = shared.authorize({**body, "approvalId": p["approvalId"]})
    assert first["decision"] == "allow", first
    second = shared.authorize({**body, "approvalId": p["approvalId"]})
    assert second["decision"] == "pending", second
    assert second["approvalId"] != p["approvalId"]
    assert second["permit"] is None
    assert_decision_logged(shared, second)


# -- revocation ----------------------------------------------------------------------------------------


def revoke_cli(a: Authority, kind: str, target: str, reason: str) -> dict[str, Any]:
    p = ok(fiat("revoke", f"--{kind}", target, "--reason", reason, "--url", a.url, "--home", a.home, "--json"))
    return dict(json.loads(p.stdout))


def enroll_runtime(a: Authority, name: str) -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    rec = a.client.enroll(a.admin, "runtime", name, b64url(public_bytes(key)))
    assert rec["kid"] == thumbprint(key)
    assert rec["role"] == "runtime"
    return key, rec["kid"]


def test_revoked_principal_is_denied(shared: Authority) -> None:
    body = deploy(principal="user:alice")
    assert shared.authorize(body)["decision"] == "allow"
    result = revoke_cli(shared, "principal", "user:alice", "left the team")
    assert result["revocationEpoch"] >= 1
    r = shared.authorize(body)
    assert r["decision"] == "deny", r
    assert r["reason"] == "principal user:alice is revoked"
    assert_decision_logged(shared, r)
    assert shared.authorize(deploy())["decision"] == "allow"  # others are unaffected


def test_revoked_runtime_is_denied(shared: Authority) -> None:
    key, kid = enroll_runtime(shared, "doomed-node")
    assert shared.authorize(deploy(), key, kid)["decision"] == "allow"
    revoke_cli(shared, "runtime", kid, "node compromised")
    r = shared.authorize(deploy(), key, kid)
    assert r["decision"] == "deny", r
    assert r["reason"] == f"runtime {kid} is revoked"
    assert_decision_logged(shared, r)


def test_revoked_permit_cannot_be_consumed(shared: Authority) -> None:
    r = shared.authorize(refund(amount=100))
    assert r["decision"] == "allow", r
    revoke_cli(shared, "permit", r["permitId"], "operator cancelled")
    with pytest.raises(ClientError) as exc:
        shared.client.consume(shared.keys.runtime_key, r["permitId"])
    assert exc.value.status == 403
    assert "revoked" in str(exc.value)
    # A revoked permit cannot be a parent either.
    child = shared.authorize({**refund(amount=100), "parent": r["permitId"]})
    assert child["decision"] == "deny" and "revoked" in child["reason"], child


def test_revocation_is_in_the_signed_trust_state_and_pushed_at_once(shared: Authority) -> None:
    target = 'Agent::"stream-target"'  # principals are revoked in their one Cedar spelling
    events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
    connected = threading.Event()
    failure: list[BaseException] = []

    def listen() -> None:
        deadline = time.monotonic() + 20
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=20)) as c,
                c.stream("GET", shared.url + "/v1/trust/stream") as resp,
            ):
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                connected.set()
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        claims = decode_trust_state(shared, line[len("data: ") :])
                        events.put((time.monotonic(), claims))
                        if any(x["target"] == target for x in claims["revocations"]):
                            return
                    if time.monotonic() > deadline:
                        return
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)
            connected.set()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert connected.wait(10)
    first = events.get(timeout=10)  # the latest state, sent on subscribing
    assert not any(x["target"] == target for x in first[1]["revocations"])
    time.sleep(0.2)
    t0 = time.monotonic()
    result = revoke_cli(shared, "principal", target, "stream test")
    t1 = time.monotonic()
    thread.join(timeout=10)
    assert not failure, failure
    seen = None
    while not events.empty():
        at, claims = events.get_nowait()
        if any(x["target"] == target for x in claims["revocations"]):
            seen = (at, claims)
    assert seen is not None, "the revocation was never pushed"
    at, claims = seen
    # Pushed before (or within 200 ms of) the revoke call's answer, far sooner than the 5 s tick.
    assert at <= t1 + 0.2, (at - t0, t1 - t0)
    assert at - t0 < 4.0
    assert claims["revocationEpoch"] >= result["revocationEpoch"]

    # The pulled trust state says the same, signed by the authority key.
    state = decode_trust_state(shared, shared.client.trust_state())
    assert state["iss"] == ISSUER
    assert state["revocationEpoch"] >= result["revocationEpoch"]
    mine = [x for x in state["revocations"] if x["target"] == target]
    assert len(mine) == 1
    assert mine[0]["kind"] == "principal" and mine[0]["reason"] == "stream test"
    assert mine[0]["epoch"] == result["revocationEpoch"]
    assert state["policy"]["version"] == 1
    assert state["checkpoint"].startswith("fiat.local/log\n")
    since = decode_trust_state(shared, shared.client.trust_state(since=result["revocationEpoch"]))
    assert all(x["epoch"] > result["revocationEpoch"] for x in since["revocations"])
    # The revocation is a signed statement in the log.
    statement = open_envelope(
        log_entry(shared.url, result["logIndex"]), shared.keys.authority_pub, shared.keys.authority_kid
    )
    assert statement["predicateType"] == "https://fiat.local/predicate/revocation/v1"
    assert statement["predicate"]["target"] == target


# -- replay and proof of possession ----------------------------------------------------------------------


def test_single_use_permit_is_consumed_once(shared: Authority) -> None:
    r = shared.authorize(refund(amount=10000))
    assert r["decision"] == "allow", r
    assert r["obligations"]["singleUse"] is True
    path = f"/v1/permits/{r['permitId']}/consume"
    first = httpx.post(
        shared.url + path, headers={"DPoP": make_proof(shared.keys.runtime_key, "POST", shared.url + path)}
    )
    assert first.status_code == 200, first.text
    assert first.json() == {"permitId": r["permitId"], "consumed": True}
    second = httpx.post(
        shared.url + path, headers={"DPoP": make_proof(shared.keys.runtime_key, "POST", shared.url + path)}
    )
    assert_problem(second, 409, "already used")
    # Only the cnf runtime may consume a permit.
    other = shared.authorize(refund(amount=10000))
    key, _ = enroll_runtime(shared, "other-node")
    with pytest.raises(ClientError) as exc:
        shared.client.consume(key, other["permitId"])
    assert exc.value.status == 403
    assert shared.client.consume(shared.keys.runtime_key, other["permitId"])["consumed"] is True
    # Above the limit there is no permit at all.
    assert shared.authorize(refund(amount=10001))["decision"] == "deny"


def test_dpop_proof_replayed_is_refused(shared: Authority) -> None:
    before = metric(shared.url, "fiat_auth_failures_total")
    proof = make_proof(shared.keys.runtime_key, "POST", shared.url + "/v1/authorize")
    first = authorize_raw(shared, deploy(), proof)
    assert first.status_code == 200 and first.json()["decision"] == "allow", first.text
    assert_problem(authorize_raw(shared, deploy(), proof), 401, "replay")
    assert metric(shared.url, "fiat_auth_failures_total") == before + 1


def test_dpop_proof_for_another_url_or_method_is_refused(shared: Authority) -> None:
    before = metric(shared.url, "fiat_auth_failures_total")
    key = shared.keys.runtime_key
    for proof, needle in (
        (make_proof(key, "POST", shared.url + "/v1/permits/pmt_x/consume"), "htu"),
        (make_proof(key, "POST", f"http://127.0.0.1:{shared.server.port + 1}/v1/authorize"), "htu"),
        (make_proof(key, "GET", shared.url + "/v1/authorize"), "htm"),
    ):
        assert_problem(authorize_raw(shared, deploy(), proof), 401, needle)
    assert metric(shared.url, "fiat_auth_failures_total") == before + 3


def test_dpop_proof_too_old_is_refused(shared: Authority) -> None:
    before = metric(shared.url, "fiat_auth_failures_total")
    url = shared.url + "/v1/authorize"
    stale = make_proof(shared.keys.runtime_key, "POST", url, now=int(time.time()) - 600)
    assert_problem(authorize_raw(shared, deploy(), stale), 401, "iat")
    future = make_proof(shared.keys.runtime_key, "POST", url, now=int(time.time()) + 600)
    assert_problem(authorize_raw(shared, deploy(), future), 401, "iat")
    assert metric(shared.url, "fiat_auth_failures_total") == before + 2


def test_no_dpop_header_is_refused(shared: Authority) -> None:
    before = metric(shared.url, "fiat_auth_failures_total")
    assert_problem(authorize_raw(shared, deploy(), None), 401, "no DPoP header")
    assert_problem(authorize_raw(shared, deploy(), "not-a-jwt"), 401, "not a JWT")
    path = "/v1/permits/pmt_none/consume"
    assert_problem(httpx.post(shared.url + path), 401, "no DPoP header")
    assert metric(shared.url, "fiat_auth_failures_total") == before + 3


def test_dpop_key_not_matching_runtime_kid_is_refused(shared: Authority) -> None:
    before = metric(shared.url, "fiat_auth_failures_total")
    thief = Ed25519PrivateKey.generate()
    proof = make_proof(thief, "POST", shared.url + "/v1/authorize")
    # The proof is valid for the thief's (unenrolled) key, but the request names the enrolled runtime.
    assert_problem(authorize_raw(shared, deploy(), proof, kid=shared.keys.runtime_kid), 403, "not enrolled")
    # An enrolled key (the approver's) proving a request that names the runtime: not the runtime key.
    proof = make_proof(shared.keys.approver_key, "POST", shared.url + "/v1/authorize")
    assert_problem(authorize_raw(shared, deploy(), proof, kid=shared.keys.runtime_kid), 401, "not the runtime key")
    assert metric(shared.url, "fiat_auth_failures_total") == before + 2


def test_unenrolled_runtime_key_is_forbidden(shared: Authority) -> None:
    before = metrics(shared.url)
    stranger = Ed25519PrivateKey.generate()
    proof = make_proof(stranger, "POST", shared.url + "/v1/authorize")
    r = authorize_raw(shared, deploy(), proof, kid=thumbprint(stranger))
    assert_problem(r, 403, "not enrolled")
    after = metrics(shared.url)
    assert after.get("fiat_auth_failures_total", 0) == before.get("fiat_auth_failures_total", 0) + 1


def test_admin_endpoints_need_the_bearer_token(shared: Authority) -> None:
    before = metric(shared.url, "fiat_auth_failures_total")
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/v1/revocations", {"kind": "principal", "target": "agent:release-bot", "reason": "x"}),
        ("POST", "/v1/enrollments", {"role": "runtime", "name": "n", "publicKey": b64url(b"\x01" * 32)}),
        ("POST", "/v1/policies", {"files": {}}),
        ("GET", "/v1/approvals/apr_x", None),
    ]
    refused = 0
    for headers in ({}, {"Authorization": "Bearer fiat_admin_wrong"}, {"Authorization": "Basic " + shared.admin}):
        for method, path, body in calls:
            if not headers and method == "GET":
                continue  # without Authorization, GET approvals asks for DPoP instead (checked below)
            r = httpx.request(method, shared.url + path, json=body, headers=headers)
            assert_problem(r, 401, "admin bearer token")
            refused += 1
    assert_problem(httpx.get(shared.url + "/v1/approvals/apr_x"), 401, "DPoP")
    refused += 1
    assert metric(shared.url, "fiat_auth_failures_total") == before + refused
    # Nothing was revoked or enrolled.
    assert shared.authorize(deploy())["decision"] == "allow"
    assert not any(k.public_key == b"\x01" * 32 for k in KeyRing(shared.home / "keys").records)


# -- enrollment ------------------------------------------------------------------------------------------


def test_enrollment_over_http_lets_a_new_runtime_authorize(shared: Authority) -> None:
    key = Ed25519PrivateKey.generate()
    kid = thumbprint(key)
    with pytest.raises(ClientError) as exc:
        shared.authorize(deploy(), key, kid)
    assert exc.value.status == 403
    r = httpx.post(
        shared.url + "/v1/enrollments",
        json={"role": "runtime", "name": "edge-node-1", "publicKey": b64url(public_bytes(key))},
        headers={"Authorization": f"Bearer {shared.admin}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["kid"] == kid
    result = shared.authorize(deploy(), key, kid)
    assert result["decision"] == "allow", result
    claims = decode_permit(shared, result["permit"])
    assert claims["cnf"]["jwk"]["x"] == b64url(public_bytes(key))
    assert_decision_logged(shared, result)
    # A bad public key is refused.
    bad = httpx.post(
        shared.url + "/v1/enrollments",
        json={"role": "runtime", "name": "x", "publicKey": "A" * 42},
        headers={"Authorization": f"Bearer {shared.admin}"},
    )
    assert bad.status_code == 400


def test_enroll_cli(shared: Authority) -> None:
    key = Ed25519PrivateKey.generate()
    kid = thumbprint(key)
    p = ok(
        fiat(
            "enroll",
            "--role",
            "runtime",
            "--name",
            "edge-node-2",
            "--public-key",
            b64url(public_bytes(key)),
            "--url",
            shared.url,
            "--home",
            shared.home,
        )
    )
    assert f"enrolled runtime edge-node-2: {kid}" in p.stdout
    r = shared.authorize(refund(), key, kid)
    assert r["decision"] == "allow", r


# -- fail closed ---------------------------------------------------------------------------------------


def test_no_policy_published_denies(start: StartFn) -> None:
    a = start(bundle=None)
    assert httpx.get(a.url + "/healthz").json()["policyVersion"] is None
    for body in (deploy(), refund()):
        r = a.authorize(body)
        assert r["decision"] == "deny", r
        assert r["reason"] == "no policy has been published"
        assert r["permit"] is None
        assert_decision_logged(a, r)


@pytest.mark.parametrize(
    ("context", "needle"),
    [
        ({"version": "1.2.0"}, "replicas"),  # a required attribute is missing
        ({"replicas": 3}, "version"),
        ({}, "replicas"),
        ({"version": "1.2.0", "replicas": "3"}, "is not valid"),  # wrong type
        ({"version": 1, "replicas": 3}, "is not valid"),
        ({"version": "1.2.0", "replicas": True}, "is not valid"),
        ({"version": "1.2.0", "replicas": 3, "force": True}, "force"),  # not in the schema
        ({"version": "1.2.0", "replicas": 3.0}, "floating point"),  # not a Cedar value
        ({"version": "1.2.0", "replicas": None}, "null"),
    ],
)
def test_context_violating_the_schema_is_denied(shared: Authority, context: dict[str, Any], needle: str) -> None:
    body = {**deploy(), "context": context}
    r = shared.authorize(body)
    assert r["decision"] == "deny", r
    assert r["permit"] is None
    assert needle in r["reason"], r["reason"]
    assert "error" in r["reason"] or "failed" in r["reason"], r["reason"]
    assert_decision_logged(shared, r)


def test_unavailable_log_fails_closed(start: StartFn) -> None:
    a = start(env={"FIAT_STORAGE_BUSY_TIMEOUT_MS": "300"})
    assert a.authorize(deploy())["decision"] == "allow"
    size = log_size(a.url)
    lock = sqlite3.connect(a.home / "fiat.db", timeout=10, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        for body in (deploy(), deploy(resource="service:payments"), refund()):
            r = authorize_raw(a, body, make_proof(a.keys.runtime_key, "POST", a.url + "/v1/authorize"))
            if r.status_code == 200:
                result = r.json()
                assert result["decision"] == "deny", result
                assert result["permit"] is None
                assert "failed closed" in result["reason"], result
            else:
                assert 500 <= r.status_code < 600, r.text
                assert r.headers["content-type"].startswith(PROBLEM)
        revoke = httpx.post(
            a.url + "/v1/revocations",
            json={"kind": "principal", "target": "user:alice", "reason": "x"},
            headers={"Authorization": f"Bearer {a.admin}"},
        )
        assert revoke.status_code >= 500, revoke.text
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert log_size(a.url) == size  # nothing was logged while the lock was held
    r = a.authorize(deploy())
    assert r["decision"] == "allow", r
    assert_decision_logged(a, r)
    p = pending(a, deploy(resource="service:payments"))
    assert p["decisionLogIndex"] > r["decisionLogIndex"]
    assert a.authorize(deploy(principal="user:alice"))["decision"] == "allow"  # the revocation did not happen


def test_server_with_a_garbage_authority_key_refuses_to_start(template: tuple[Path, Keys], tmp_path: Path) -> None:
    home = new_home(template, tmp_path)
    (key_file,) = (home / "keys").glob("authority-*.pem")
    key_file.write_bytes(b"-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n")
    port = free_port()
    try:
        p = fiat("serve", "--home", home, "--host", "127.0.0.1", "--port", str(port), timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("fiat serve kept running with a garbage authority key")
    assert p.returncode != 0
    assert key_file.name in p.stderr, p.stderr
    assert "error" in p.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_bundle_whose_entities_do_not_match_the_schema_is_not_published(
    template: tuple[Path, Keys], tmp_path: Path
) -> None:
    home = new_home(template, tmp_path)
    history = json.loads(ok(fiat("policy", "history", "--home", home, "--json")).stdout)
    assert [v["version"] for v in history] == [1]
    bad = tmp_path / "bad-bundle"
    shutil.copytree(EXAMPLES, bad)
    entities = json.loads((bad / "entities.json").read_text(encoding="utf-8"))
    for e in entities:
        if e["uid"]["type"] == "Service":
            e["attrs"]["tier"] = 1  # the schema says String
    (bad / "entities.json").write_text(json.dumps(entities), encoding="utf-8")
    p = fiat("policy", "publish", bad, "--home", home)
    assert p.returncode != 0, p.stdout
    assert "entities.json" in p.stderr, p.stderr
    assert json.loads(ok(fiat("policy", "history", "--home", home, "--json")).stdout) == history


def test_bundle_whose_entities_do_not_match_the_schema_is_refused_by_the_server(
    shared: Authority, tmp_path: Path
) -> None:
    bad = tmp_path / "bad-bundle"
    shutil.copytree(EXAMPLES, bad)
    entities = json.loads((bad / "entities.json").read_text(encoding="utf-8"))
    entities.append({"uid": {"type": "Planet", "id": "mars"}, "attrs": {}, "parents": []})  # not in the schema
    (bad / "entities.json").write_text(json.dumps(entities), encoding="utf-8")
    p = fiat("policy", "publish", bad, "--url", shared.url, "--home", shared.home)
    assert p.returncode != 0, p.stdout
    assert "422" in p.stderr and "entities.json" in p.stderr, p.stderr
    assert httpx.get(shared.url + "/healthz").json()["policyVersion"] == 1
    assert shared.authorize(deploy())["decision"] == "allow"


# -- the decision log ------------------------------------------------------------------------------------


def test_every_decision_is_a_signed_decision_statement_in_the_log(shared: Authority) -> None:
    results = [
        shared.authorize(deploy()),
        shared.authorize(deploy(replicas=99)),
        shared.authorize(deploy(resource="service:payments", replicas=9)),
    ]
    assert [r["decision"] for r in results] == ["allow", "deny", "pending"]
    indexes = [r["decisionLogIndex"] for r in results]
    assert indexes == sorted(set(indexes))
    for r in results:
        assert_decision_logged(shared, r)


# -- known src bugs (xfail until fixed; see the reasons) -----------------------------------------------------


@pytest.fixture(scope="module")
def scratch(template: tuple[Path, Keys], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    """A second example server for tests that revoke principals the shared server needs."""
    with serving(new_home(template, tmp_path_factory.mktemp("scratch")), template[1]) as a:
        yield a


def test_revoked_principal_is_denied_whatever_its_spelling(scratch: Authority) -> None:
    revoke_cli(scratch, "principal", "user:alice", "left the team")
    assert scratch.authorize(deploy(principal="user:alice"))["decision"] == "deny"
    for spelling in ('User::"alice"', "User:alice"):
        r = scratch.authorize(deploy(principal=spelling))
        assert r["decision"] == "deny", (spelling, r)


def test_consume_refuses_permits_of_a_revoked_principal(scratch: Authority) -> None:
    r = scratch.authorize(refund(amount=100))
    assert r["decision"] == "allow", r
    revoke_cli(scratch, "principal", "agent:support-assistant", "account closed")
    with pytest.raises(ClientError) as exc:
        scratch.client.consume(scratch.keys.runtime_key, r["permitId"])
    assert exc.value.status == 403


def test_approval_naming_another_approver_is_refused(shared: Authority) -> None:
    p = pending(shared, deploy(resource="service:payments", replicas=10))
    statement = ev.approval_statement(
        approval_id=p["approvalId"],
        decision="approve",
        approver="mallory",
        request_digest=p["actionDigest"],
        at=time.time(),
    )
    envelope = ev.sign_statement(statement, [(shared.keys.approver_kid, shared.keys.approver_key)])
    r = httpx.post(f"{shared.url}/v1/approvals/{p['approvalId']}", json={"envelope": envelope.to_json()})
    assert r.status_code == 403, r.text


def test_concurrent_revocations_log_the_epoch_they_get(shared: Authority) -> None:
    def revoke(i: int) -> dict[str, Any]:
        with AuthorityClient(shared.url) as c:
            return c.revoke(shared.admin, "principal", f"agent:race-{i}", "race")

    threads_out: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda i=i: threads_out.append(revoke(i))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(threads_out) == 8
    for result in threads_out:
        entry = log_entry(shared.url, result["logIndex"])
        statement = open_envelope(entry, shared.keys.authority_pub, shared.keys.authority_kid)
        assert statement["predicate"]["epoch"] == result["revocationEpoch"], (statement["predicate"], result)


def test_runtime_key_rotated_while_serving_is_no_longer_accepted(start: StartFn) -> None:
    a = start()
    assert a.authorize(deploy())["decision"] == "allow"
    ok(fiat("keys", "rotate", "--role", "runtime", "--home", a.home))
    time.sleep(1.1)  # validity periods are recorded to the second
    with pytest.raises(ClientError) as exc:
        a.authorize(deploy())
    assert exc.value.status == 403


# -- the API layer: status by exception type, client errors, offline docs -------------------------


def test_the_status_of_a_refusal_is_chosen_by_its_type_not_its_message() -> None:
    """fiat.api.problems: a message that says "already", "signed" or "no approval" changes nothing."""
    from fiat.api.problems import status_for
    from fiat.authorize.dpop import DpopError, DpopKeyNotEnrolled
    from fiat.authorize.policy import PolicyError
    from fiat.errors import (
        AlreadyConsumedError,
        AlreadyDecidedError,
        ApprovalError,
        ApproverSignatureError,
        AuthorizationError,
        BadSignatureError,
        FiatError,
        MalformedRequestError,
        NotFoundError,
        UnknownApprovalError,
    )

    assert status_for(AuthorizationError("permit p was already used (single use)")) == 403
    assert status_for(AlreadyConsumedError("refused")) == 409
    assert status_for(ApprovalError("no approval 'x': it is already approved")) == 403
    assert status_for(UnknownApprovalError("approval x is already approved")) == 404
    assert status_for(AlreadyDecidedError("no approval is signed")) == 409
    assert status_for(ApproverSignatureError("approval x is already approved")) == 403
    assert isinstance(ApproverSignatureError("x"), BadSignatureError)
    assert not isinstance(ApprovalError("the approval is not signed by an approver"), BadSignatureError)
    assert status_for(MalformedRequestError("already")) == 400
    assert status_for(PolicyError("signed")) == 422
    assert status_for(NotFoundError("x")) == 404
    assert status_for(FiatError("no approval"), default=404) == 404
    assert status_for(FiatError("already used")) == 400
    assert status_for(DpopError("htu", "the key is not enrolled")) == 401
    assert status_for(DpopKeyNotEnrolled("allow", "replayed")) == 403


def test_refusals_over_http_are_mapped_by_type_not_by_message(shared: Authority) -> None:
    """An approver name and an approval id that contain "already" and "signed" (both chosen by
    the caller) change neither the status nor which counter counts the refusal."""
    body = deploy(resource="service:payments", replicas=7)
    p = pending(shared, body)
    failures, refusals = (metric(shared.url, f"fiat_{m}_total") for m in ("auth_failures", "approvals_refused"))
    # Signed by alice but naming another approver: a bad signature (403), not a conflict (409).
    envelope = signed_approval(
        p["approvalId"], p["actionDigest"], shared.keys.approver_key, shared.keys.approver_kid, approver="already-bob"
    )
    r = httpx.post(f"{shared.url}/v1/approvals/{p['approvalId']}", json=envelope)
    problem = assert_problem(r, 403, "names 'already-bob' but is signed by 'alice'")
    assert problem["title"] == "Approval refused"
    assert metric(shared.url, "fiat_auth_failures_total") == failures + 1
    # An unknown approval whose id says "signed": not found (404), counted as a refused approval,
    # not as an authentication failure.
    r = httpx.post(f"{shared.url}/v1/approvals/already-signed", json=envelope)
    assert_problem(r, 404, "no approval 'already-signed'")
    assert metric(shared.url, "fiat_auth_failures_total") == failures + 1
    assert metric(shared.url, "fiat_approvals_refused_total") == refusals + 1
    assert shared.approval(p["approvalId"])["status"] == "pending"
    # The mapped statuses, each over HTTP: 400 (malformed), 404 (unknown), 409 (already decided).
    r = httpx.post(f"{shared.url}/v1/approvals/{p['approvalId']}", json={"envelope": {"payload": 1}})
    assert_problem(r, 400)
    ok(approve_cli(shared, p["approvalId"]))
    again = signed_approval(p["approvalId"], p["actionDigest"], shared.keys.approver_key, shared.keys.approver_kid)
    problem = assert_problem(httpx.post(f"{shared.url}/v1/approvals/{p['approvalId']}", json=again), 409, "already")
    assert problem["title"] == "Approval refused"
    r = httpx.get(f"{shared.url}/v1/approvals/nope", headers={"Authorization": f"Bearer {shared.admin}"})
    assert_problem(r, 404, "no approval 'nope'")
    r = httpx.post(
        f"{shared.url}/v1/revocations",
        json={"kind": "principal", "target": "not a name", "reason": "r"},
        headers={"Authorization": f"Bearer {shared.admin}"},
    )
    assert_problem(r, 400)


def test_client_errors_name_the_request_and_the_problem(shared: Authority) -> None:
    with pytest.raises(ClientError) as exc:
        shared.client.bundle(shared.keys.runtime_key, "xyz")
    assert exc.value.status == 404
    assert str(exc.value) == (
        f"GET {shared.url}/v1/bundles/xyz: 404 Not Found: "
        "no permit 'xyz' in this home's evidence; check the id (`fiat verify` prints it)"
    )
    # No such route: the problem's title and detail are both "Not Found", said once.
    with AuthorityClient(shared.url + "/nowhere") as lost, pytest.raises(ClientError) as exc:
        lost.trust_state()
    assert str(exc.value) == f"GET {shared.url}/nowhere/v1/trust/state?since=0: 404 Not Found"
    # The CLI prints the same message.
    p = fiat("approve", "no-such-approval", "--home", shared.home, "--url", shared.url)
    assert p.returncode == 1, p
    expected = f"GET {shared.url}/v1/approvals/no-such-approval: 404 Not Found: no approval 'no-such-approval'"
    assert expected in one_line(p.stderr), p.stderr


def test_api_docs_load_nothing_from_another_origin(shared: Authority) -> None:
    """/docs (Swagger UI) and /redoc reference only same-origin URLs, and each of them is served."""
    media = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
    seen: set[str] = set()
    for page, marker in (("/docs", "SwaggerUIBundle"), ("/redoc", "<redoc")):
        r = httpx.get(shared.url + page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text[:300]
        assert marker in r.text
        assert "//" not in re.sub(r"<!--.*?-->", "", r.text, flags=re.S), r.text  # no scheme, no network path
        urls = re.findall(r'(?:src|href|spec-url)="([^"]*)"', r.text) + re.findall(r"url: '([^']*)'", r.text)
        assert len(urls) >= 3, urls
        for url in urls:
            assert url.startswith("/"), url
            seen.add(url)
    assert {"/openapi.json", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/redoc.standalone.js"} <= seen, seen
    for url in sorted(seen):
        r = httpx.get(shared.url + url)
        assert r.status_code == 200, (url, r.text[:300])
        assert r.headers["content-type"].startswith(media[Path(url).suffix]), (url, r.headers)
        assert len(r.content) > 1000 or url.endswith(".png"), url
    assert "SwaggerUIBundle" in httpx.get(shared.url + "/docs/assets/swagger-ui-bundle.js").text
    # The OAuth 2 redirect page that Swagger UI names is still there, and also loads nothing.
    r = httpx.get(shared.url + "/docs/oauth2-redirect")
    assert r.status_code == 200 and "https://" not in r.text and "http://" not in r.text


# -- what a newcomer meets at the command line ---------------------------------------------------


def test_only_approvers_and_the_admin_list_the_approval_queue(shared: Authority) -> None:
    """A runtime key must not read every pending request: it could take another runtime's approval."""
    p = pending(shared, deploy(resource="service:payments", replicas=4))
    with pytest.raises(ClientError) as refused:
        shared.client.approvals(shared.keys.runtime_key)
    assert refused.value.status == 403
    # The runtime still reads its own approval by id; approvers and the admin see the queue.
    assert shared.client.approval(shared.keys.runtime_key, p["approvalId"])["status"] == "pending"
    listed = shared.client.approvals(shared.keys.approver_key)
    assert p["approvalId"] in [a["id"] for a in listed]
    r = httpx.get(f"{shared.url}/v1/approvals", headers={"Authorization": f"Bearer {shared.admin}"})
    assert r.status_code == 200 and p["approvalId"] in [a["id"] for a in r.json()]


def test_approvals_list_and_show_say_what_is_asked(shared: Authority) -> None:
    body = deploy(resource="service:payments", replicas=5)
    p = pending(shared, body)
    approval_id = p["approvalId"]
    where = ("--home", shared.home, "--url", shared.url)
    listed = json.loads(ok(fiat("approvals", "list", *where, "--json")).stdout)["approvals"]
    (mine,) = [a for a in listed if a["id"] == approval_id]
    assert mine["status"] == "pending" and mine["actionDigest"] == p["actionDigest"]
    assert mine["request"]["principal"] == "agent:release-bot"
    assert (mine["request"]["action"], mine["request"]["resource"]) == ("deploy", "service:payments")
    assert mine["request"]["context"] == {"version": "1.2.0", "replicas": 5}
    assert mine["runtime"] == shared.keys.runtime_kid  # which runtime asked
    text = one_line(ok(fiat("approvals", "list", *where)).stdout)
    assert f"{approval_id} pending agent:release-bot deploy service:payments" in text, text
    shown = ok(fiat("approvals", "show", approval_id, *where)).stdout
    assert re.search(r"runtime:\s+" + re.escape(shared.keys.runtime_kid), shown), shown
    for needle in ("agent:release-bot", "deploy", "service:payments", '"replicas": 5', '"version": "1.2.0"', "pending"):
        assert needle in shown, shown
    assert json.loads(ok(fiat("approvals", "show", approval_id, *where, "--json")).stdout) == shared.approval(
        approval_id
    )
    decided = json.loads(ok(fiat("approve", approval_id, *where, "--reason", "seen", "--json")).stdout)
    assert decided["id"] == approval_id and decided["status"] == "approved" and decided["approver"] == "alice"
    assert isinstance(decided["logIndex"], int)
    still = json.loads(ok(fiat("approvals", "list", *where, "--json")).stdout)["approvals"]
    assert approval_id not in [a["id"] for a in still]
    every = json.loads(ok(fiat("approvals", "list", "--status", "all", *where, "--json")).stdout)["approvals"]
    assert [a["status"] for a in every if a["id"] == approval_id] == ["approved"]
    missing = fiat("approvals", "show", "apr_nope", *where)
    assert missing.returncode == 1 and "apr_nope" in missing.stderr, missing.stderr


def test_deny_with_json(shared: Authority) -> None:
    p = pending(shared, deploy(resource="service:payments", replicas=6))
    denied = fiat("deny", p["approvalId"], "--home", shared.home, "--url", shared.url, "--json")
    doc = json.loads(ok(denied).stdout)
    assert doc["status"] == "denied" and doc["id"] == p["approvalId"]


def test_log_entry_prints_the_bytes_or_decodes_the_permit_and_statement(shared: Authority) -> None:
    r = shared.authorize(deploy())
    assert r["decision"] == "allow", r
    raw = fiat_bytes("log", "entry", r["permitLogIndex"], "--home", shared.home, check=True).stdout
    assert raw == log_entry(shared.url, r["permitLogIndex"]) == r["permit"].encode("ascii")
    permit = json.loads(ok(fiat("log", "entry", r["permitLogIndex"], "--decode", "--home", shared.home)).stdout)
    assert permit["kind"] == "permit" and permit["index"] == r["permitLogIndex"]
    assert permit["header"]["kid"] == shared.keys.authority_kid
    assert permit["claims"] == decode_permit(shared, r["permit"])
    statement = json.loads(ok(fiat("log", "entry", r["decisionLogIndex"], "--decode", "--home", shared.home)).stdout)
    assert statement["kind"] == "statement" and statement["payloadType"] == "application/vnd.in-toto+json"
    assert statement["statement"]["predicateType"] == "https://fiat.local/predicate/decision/v1"
    assert statement["signatures"] == [{"keyid": shared.keys.authority_kid}]
    beyond = fiat("log", "entry", "1000000", "--home", shared.home)
    assert beyond.returncode == 2 and "1000000" in beyond.stderr, beyond.stderr


def test_serve_on_a_busy_port_says_so_before_any_banner(template: tuple[Path, Keys], tmp_path: Path) -> None:
    home = new_home(template, tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = fiat("serve", "--home", home, "--host", "127.0.0.1", "--port", str(port), timeout=60)
    assert p.returncode == 3, p.stdout + p.stderr
    assert f"port {port} is already in use" in p.stderr and "--port" in p.stderr, p.stderr
    assert "Fiat authority at" not in p.stderr + p.stdout, p.stderr


# -- who may approve, and who may redeem ----------------------------------------------------------------


def enroll_approver(
    a: Authority, name: str, groups: tuple[str, ...] = (), identity: str | None = None
) -> tuple[Ed25519PrivateKey, str]:
    """A real approver key, enrolled over HTTP (admin) with its groups and identity."""
    key = Ed25519PrivateKey.generate()
    rec = a.client.enroll(a.admin, "approver", name, b64url(public_bytes(key)), groups, identity)
    assert rec["kid"] == thumbprint(key) and rec["role"] == "approver"
    assert rec.get("groups", []) == list(groups) and rec.get("identity") == identity
    return key, rec["kid"]


def post_approval(a: Authority, p: dict[str, Any], key: Ed25519PrivateKey, kid: str, name: str) -> httpx.Response:
    body = signed_approval(p["approvalId"], p["actionDigest"], key, kid, approver=name)
    return httpx.post(f"{a.url}/v1/approvals/{p['approvalId']}", json=body)


def test_only_an_approver_of_the_required_group_approves(shared: Authority) -> None:
    """@approval("ops"): a key of another group, or of none, is refused (403, naming the group)."""
    body = deploy(resource="service:payments", replicas=11)
    p = pending(shared, body)
    refusals = metric(shared.url, "fiat_approvals_refused_total")
    sec_key, sec_kid = enroll_approver(shared, "sam", ("sec",))
    r = post_approval(shared, p, sec_key, sec_kid, "sam")
    problem = assert_problem(r, 403, "needs an approver of group 'ops'")
    assert problem["title"] == "Approval refused"
    assert "sam" in problem["detail"] and "sec" in problem["detail"], problem
    none_key, none_kid = enroll_approver(shared, "nora")  # enrolled in no group
    for decision in ("approve", "deny"):  # an approver outside the group decides neither way
        envelope = signed_approval(p["approvalId"], p["actionDigest"], none_key, none_kid, decision, "nora")
        r = httpx.post(f"{shared.url}/v1/approvals/{p['approvalId']}", json=envelope)
        assert_problem(r, 403, "needs an approver of group 'ops'")
    assert metric(shared.url, "fiat_approvals_refused_total") == refusals + 3
    assert shared.approval(p["approvalId"])["status"] == "pending"
    assert shared.authorize({**body, "approvalId": p["approvalId"]})["decision"] == "pending"
    # An approver of the group (alice, enrolled with --group ops) approves; it is then redeemed.
    ok(approve_cli(shared, p["approvalId"]))
    r2 = shared.authorize({**body, "approvalId": p["approvalId"]})
    assert r2["decision"] == "allow", r2
    allow = assert_decision_logged(shared, r2)
    assert allow["predicate"]["approval"] == {"group": "ops"}  # what the verifier holds the approval to


def test_nobody_approves_their_own_request(start: StartFn) -> None:
    """The approver's identity (default user:NAME) is never the principal who asked, in any spelling."""
    a = start()
    body = deploy(resource="service:payments", replicas=12, principal="user:alice")
    p = pending(a, body)
    # alice's own key (group ops, identity user:alice by default) may not approve alice's request.
    own = approve_cli(a, p["approvalId"])
    assert own.returncode == 1, own
    assert "403" in own.stderr and "nobody approves their own request" in own.stderr, own.stderr
    # The agent's approver key, its identity in the Cedar spelling, may not approve the agent's request.
    bot_key, bot_kid = enroll_approver(a, "release-bot-owner", ("ops",), 'Agent::"release-bot"')
    q = pending(a, deploy(resource="service:payments", replicas=12))
    assert_problem(post_approval(a, q, bot_key, bot_kid, "release-bot-owner"), 403, "their own request")
    assert a.approval(p["approvalId"])["status"] == a.approval(q["approvalId"])["status"] == "pending"
    # Another approver of the group approves each.
    bob_key, bob_kid = enroll_approver(a, "bob", ("ops",), "user:bob")
    assert post_approval(a, p, bob_key, bob_kid, "bob").status_code == 200
    assert post_approval(a, q, a.keys.approver_key, a.keys.approver_kid, "alice").status_code == 200
    assert a.authorize({**body, "approvalId": p["approvalId"]})["decision"] == "allow"


def test_an_approval_is_redeemed_only_by_the_runtime_that_asked(shared: Authority) -> None:
    """Runtime B cannot redeem the approval runtime A asked for; A still can."""
    b_key, b_kid = enroll_runtime(shared, "vm-b")
    body = deploy(resource="service:payments", replicas=13)
    p = pending(shared, body)
    assert shared.approval(p["approvalId"])["runtime"] == shared.keys.runtime_kid
    ok(approve_cli(shared, p["approvalId"]))
    stolen = shared.authorize({**body, "approvalId": p["approvalId"]}, b_key, b_kid)
    assert stolen["decision"] == "pending" and stolen["permit"] is None, stolen
    assert stolen["approvalId"] != p["approvalId"]
    assert "requested by another runtime" in stolen["reason"], stolen
    assert_decision_logged(shared, stolen)
    assert shared.approval(p["approvalId"])["status"] == "approved"  # untouched
    assert shared.approval(stolen["approvalId"])["runtime"] == b_kid
    mine = shared.authorize({**body, "approvalId": p["approvalId"]})
    assert mine["decision"] == "allow", mine
    assert shared.approval(p["approvalId"])["status"] == "used"


def _authorize_concurrently(a: Authority, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each body from its own thread and client, released together."""
    gate = threading.Barrier(len(bodies))
    results: list[dict[str, Any] | BaseException] = [RuntimeError("not run")] * len(bodies)

    def one(i: int) -> None:
        with AuthorityClient(a.url, timeout=60) as client:
            gate.wait(30)
            try:
                results[i] = client.authorize(a.keys.runtime_key, a.keys.runtime_kid, bodies[i])
            except BaseException as exc:  # reported below
                results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(isinstance(r, dict) for r in results), results
    return [r for r in results if isinstance(r, dict)]


def test_a_repeated_request_names_the_approval_already_pending(shared: Authority) -> None:
    """One approval per action and runtime while it is pending: retries, bursts and lost races add none."""
    body = deploy(resource="service:payments", replicas=14)
    first = pending(shared, body)
    again = pending(shared, body)
    assert again["approvalId"] == first["approvalId"]
    assert again["approvalExpires"] == first["approvalExpires"]
    assert again["decisionLogIndex"] != first["decisionLogIndex"]  # each decision is still logged
    # Another runtime asking for the same action gets an approval of its own.
    b_key, b_kid = enroll_runtime(shared, "vm-c")
    other = shared.authorize(body, b_key, b_kid)
    assert other["decision"] == "pending" and other["approvalId"] != first["approvalId"], other

    # A concurrent burst of 10 for a new action: one approval, named by all ten.
    burst = deploy(resource="service:payments", replicas=15)
    results = _authorize_concurrently(shared, [burst] * 10)
    assert {r["decision"] for r in results} == {"pending"}, results
    ids = {r["approvalId"] for r in results}
    assert len(ids) == 1, ids
    digest = expected_digest(burst)
    queue_ = shared.client.approvals(shared.keys.approver_key, "pending", 1000)
    assert [a["id"] for a in queue_ if a["actionDigest"] == digest] == list(ids)

    # 15 redemptions racing for one approval: one permit, and one new pending approval for the rest.
    (burst_id,) = ids
    ok(approve_cli(shared, burst_id))
    raced = _authorize_concurrently(shared, [{**burst, "approvalId": burst_id}] * 15)
    allowed = [r for r in raced if r["decision"] == "allow"]
    waiting = [r for r in raced if r["decision"] == "pending"]
    assert len(allowed) == 1 and len(waiting) == 14, raced
    assert len({r["approvalId"] for r in waiting}) == 1, waiting
    assert all(f"approval {burst_id} " in r["reason"] for r in waiting), waiting  # says why it was not used
    queue_ = shared.client.approvals(shared.keys.approver_key, "pending", 1000)
    assert len([a for a in queue_ if a["actionDigest"] == digest]) == 1


def test_enroll_cli_sets_an_approvers_groups_and_identity(shared: Authority) -> None:
    key = Ed25519PrivateKey.generate()
    where = ("--url", shared.url, "--home", shared.home)
    args = ("enroll", "--role", "approver", "--name", "dora", "--public-key", b64url(public_bytes(key)))
    p = ok(fiat(*args, "--group", "ops", "--group", "sec", "--identity", "user:dora", *where))
    assert "groups: ops, sec; identity: user:dora" in p.stdout, p.stdout
    root = json.loads(ok(fiat("trust-root", "export", "--home", shared.home)).stdout)
    (dora,) = [k for k in root["keys"] if k["kid"] == thumbprint(key)]
    assert dora["groups"] == ["ops", "sec"] and dora["identity"] == "user:dora"
    runtime = Ed25519PrivateKey.generate()
    refused = fiat(
        "enroll",
        "--role",
        "runtime",
        "--name",
        "r",
        "--public-key",
        b64url(public_bytes(runtime)),
        "--group",
        "ops",
        *where,
    )
    assert refused.returncode == 2 and "approver keys" in refused.stderr, refused.stderr


def test_an_approved_permit_verifies_offline_and_renews_only_for_the_same_group(start: StartFn, tmp_path: Path) -> None:
    """The allow decision names the group; the offline verifier holds the approval to it; a renewal carries
    the approvals over while the policy asks the same group, and is refused once it asks another."""
    from fiat.verify import Bundle, TrustRoot, VerificationPolicy, verify

    a = start()
    body = deploy(resource="service:payments", replicas=16)
    p = pending(a, body)
    ok(approve_cli(a, p["approvalId"]))
    r = a.authorize({**body, "approvalId": p["approvalId"]})
    assert r["decision"] == "allow", r
    root = TrustRoot.parse(ok(fiat_bytes("trust-root", "export", "--home", a.home)).stdout)
    bundle = Bundle.from_json(a.client.bundle(a.keys.runtime_key, r["permitId"]))
    result = verify(bundle, root, VerificationPolicy(require_receipt=False))
    assert result.verified, result.to_json()
    # Renewed under the same policy: the approvals carry over.
    renewed = a.authorize({**body, "renews": r["permitId"]})
    assert renewed["decision"] == "allow", renewed
    assert decode_permit(a, renewed["permit"])["approvals"] == decode_permit(a, r["permit"])["approvals"]
    # The policy now asks group sec: the ops approval no longer carries over.
    bundle_dir = copy_bundle(tmp_path)
    edit(bundle_dir / "deploy.cedar", '@approval("ops")', '@approval("sec")')
    ok(fiat("policy", "publish", bundle_dir, "--home", a.home, "--url", a.url))
    deadline = time.monotonic() + 20
    while (again := a.authorize({**body, "renews": renewed["permitId"]}))["decision"] == "allow":
        assert time.monotonic() < deadline, again  # the server follows the newly published version
        time.sleep(0.2)
    # A renewal redeems no approval: without one of the group asked now it is refused, not left pending.
    assert again["decision"] == "deny" and "renewal refused" in again["reason"], again
    assert "approval by sec" in again["reason"], again


# -- renewal and revocation (docs/formats.md, "Renewal and revocation") --------------------------------------------


def renew(
    a: Authority, body: dict[str, Any], jti: str, key: Ed25519PrivateKey | None = None, kid: str | None = None
) -> Any:
    return a.authorize({**body, "renews": jti}, key, kid)


def revocations_in_bundle(bundle: dict[str, Any]) -> set[tuple[str, str]]:
    """The (kind, target) of every revocation statement in a bundle's own part."""
    parsed = Bundle.from_json(bundle)
    return {
        (str(s.statement.predicate["kind"]), str(s.statement.predicate["target"]))
        for s in parsed.statements
        if s.statement.predicate_type == REVOCATION
    }


def refused(call: Callable[[], Any], status: int, needle: str) -> str:
    with pytest.raises(ClientError) as exc:
        call()
    assert exc.value.status == status, exc.value
    assert needle in str(exc.value), exc.value
    return str(exc.value)


def test_a_renewal_extends_one_consumed_execution_and_is_never_consumable(shared: Authority) -> None:
    """Issue 11: each renewal used to copy a single-use permit (and its approval) into a fresh
    single-use permit, and the same predecessor could be renewed again and again."""
    body = refund(amount=10000)
    first = shared.authorize(body)
    assert first["decision"] == "allow" and first["obligations"]["singleUse"] is True, first
    refused(lambda: renew(shared, body, first["permitId"]), 403, "never consumed")
    shared.client.consume(shared.keys.runtime_key, first["permitId"])
    second = renew(shared, body, first["permitId"])
    assert second["decision"] == "allow", second
    claims = decode_permit(shared, second["permit"])
    assert claims["renews"] == first["permitId"]
    assert claims["constraints"]["singleUse"] is False and second["obligations"]["singleUse"] is False
    refused(lambda: renew(shared, body, first["permitId"]), 409, f"already renewed (by {second['permitId']})")
    third = renew(shared, body, second["permitId"])  # the chain goes on, one link at a time
    assert third["decision"] == "allow" and decode_permit(shared, third["permit"])["renews"] == second["permitId"]


def test_a_renewal_of_an_approved_permit_redeems_no_approval(shared: Authority) -> None:
    body = deploy(resource="service:payments", replicas=5)
    p = pending(shared, body)
    ok(approve_cli(shared, p["approvalId"]))
    first = shared.authorize({**body, "approvalId": p["approvalId"]})
    assert first["decision"] == "allow", first
    approvals = decode_permit(shared, first["permit"])["approvals"]
    assert approvals
    if first["obligations"]["singleUse"]:
        shared.client.consume(shared.keys.runtime_key, first["permitId"])
    second = renew(shared, {**body, "approvalId": p["approvalId"]}, first["permitId"])
    assert second["decision"] == "allow", second
    claims = decode_permit(shared, second["permit"])
    assert claims["approvals"] == approvals  # named for the record, not redeemed again
    assert claims["constraints"]["singleUse"] is False
    refused(lambda: renew(shared, body, first["permitId"]), 409, "already renewed")
    # Without a renewal, the approval is spent: a fresh request is pending again.
    assert shared.authorize({**body, "approvalId": p["approvalId"]})["decision"] == "pending"


def test_a_renewal_is_refused_for_another_runtime_another_action_or_an_unknown_permit(shared: Authority) -> None:
    body = deploy(replicas=4)
    first = shared.authorize(body)
    assert first["decision"] == "allow", first
    key, kid = enroll_runtime(shared, "renewal-thief")
    refused(lambda: renew(shared, body, first["permitId"], key, kid), 403, "bound to another runtime key")
    refused(lambda: renew(shared, deploy(replicas=5), first["permitId"]), 403, "another action")
    refused(lambda: renew(shared, body, "pmt_never-issued"), 403, "no such permit")
    assert renew(shared, body, first["permitId"])["decision"] == "allow"  # the right runtime still can


def test_a_burst_of_renewals_of_one_permit_yields_exactly_one_successor(shared: Authority) -> None:
    """Ten concurrent renewals of one permit: the store's key on the predecessor lets one through."""
    body = deploy(replicas=6)
    first = shared.authorize(body)
    assert first["decision"] == "allow", first
    results: list[tuple[int, str]] = []
    lock = threading.Lock()
    go = threading.Barrier(10)

    def one() -> None:
        go.wait()
        try:
            r = renew(shared, body, first["permitId"])
            out = (200, str(r["decision"]))
        except ClientError as exc:
            out = (exc.status or 0, str(exc))
        with lock:
            results.append(out)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(s for s, _ in results) == [200] + [409] * 9, results
    assert [d for s, d in results if s == 200] == ["allow"], results


def test_revoking_the_first_permit_covers_its_renewal_chain_and_lineage(shared: Authority) -> None:
    """Issue 11: revoking the permit id `fiat run` printed did nothing once the guard had renewed it."""
    body = deploy(replicas=7)
    first = shared.authorize(body)
    second = renew(shared, body, first["permitId"])
    third = renew(shared, body, second["permitId"])
    child = shared.authorize({**deploy(replicas=1), "parent": second["permitId"]})
    assert {r["decision"] for r in (first, second, third, child)} == {"allow"}
    revoke_cli(shared, "permit", first["permitId"], "test: chain revoked")
    # The authority renews nothing in the chain and mints no child of it.
    refused(lambda: renew(shared, body, third["permitId"]), 403, f"the revocation of {first['permitId']} covers")
    late_child = shared.authorize({**deploy(replicas=2), "parent": third["permitId"]})
    assert late_child["decision"] == "deny" and first["permitId"] in late_child["reason"], late_child
    refused(lambda: shared.client.consume(shared.keys.runtime_key, child["permitId"]), 403, "revoked")
    # The trust state lists every covered permit, so a guard finds its own id.
    state = decode_trust_state(shared, shared.client.trust_state())
    covered = {r["target"]: r for r in state["revocations"] if r.get("coveredBy") == first["permitId"]}
    assert set(covered) == {second["permitId"], third["permitId"], child["permitId"]}, state["revocations"]
    assert all(r["reason"] == "test: chain revoked" and r["kind"] == "permit" for r in covered.values())
    # The last permit's bundle carries the revocation of the first, and so does the child's.
    for jti in (third["permitId"], child["permitId"]):
        targets = {t for _, t in revocations_in_bundle(shared.client.bundle(shared.keys.runtime_key, jti))}
        assert first["permitId"] in targets, (jti, targets)


def test_a_bundle_carries_the_principal_and_runtime_revocations_that_cover_its_permit(start: StartFn) -> None:
    """Before, only a permit's own revocations reached its bundle (its own authority: a principal is revoked)."""
    a = start()
    key, kid = enroll_runtime(a, "bundle-revoked-node")
    r = a.authorize(deploy(principal="user:alice", replicas=2), key, kid)
    assert r["decision"] == "allow", r
    revoke_cli(a, "principal", "user:alice", "test: principal gone")
    revoke_cli(a, "runtime", kid, "test: node gone")
    kinds = revocations_in_bundle(a.client.bundle(key, r["permitId"]))
    assert kinds == {("runtime", kid), ("principal", 'User::"alice"')}, kinds


# -- found by review: a long renewal chain, a changed approver group, a receipt from the future ---------------


def test_a_revocation_of_the_first_permit_fails_a_receipt_of_a_third_that_omits_the_chain(start: StartFn) -> None:
    """P1 → P2 → P3, then P1 revoked: a runtime-signed receipt for P3 that says it renewed nothing
    (``renewedFrom: []``) and completed 9 s after the revocation does not verify — the bundle the
    authority assembles carries P1's revocation, and every permit revocation in it counts."""
    from fiat.formats import jws
    from fiat.verify import TrustRoot, verify

    a = start()
    body = refund(amount=10000)
    p1 = a.authorize(body)
    assert p1["decision"] == "allow", p1
    a.client.consume(a.keys.runtime_key, p1["permitId"])
    p2 = renew(a, body, p1["permitId"])
    p3 = renew(a, body, p2["permitId"])
    assert p2["decision"] == p3["decision"] == "allow", (p2, p3)
    revoke_cli(a, "permit", p1["permitId"], "compromised")
    t0 = time.time()  # the revocation is recorded by now
    digest = decode_permit(a, p3["permit"])["environment"]["digest"]["sha256"]
    time.sleep(max(0.0, t0 + 4.5 - time.time()))  # the receipt's end (t0 + 9) is then within the authority's skew
    statement = ev.receipt_statement(
        permit_id=p3["permitId"],
        permit_digest=jws.parse(p3["permit"]).digest,
        start=t0 - 1,
        execution_start=t0 - 1,
        end=t0 + 9,
        outcome="completed",
        exit_code=0,
        halt_reason=None,
        verifications=40,
        verification_chain=hashlib.sha256(b"chain").hexdigest(),
        measurement_start={"digest": {"sha256": digest}},
        measurement_end={"digest": {"sha256": digest}},
        renewed_from=[],
    )
    a.client.receipt(ev.sign_statement(statement, [(a.keys.runtime_kid, a.keys.runtime_key)]).to_json())
    root = TrustRoot.parse(ok(fiat_bytes("trust-root", "export", "--home", a.home)).stdout)
    result = verify(Bundle.from_json(a.client.bundle(a.keys.runtime_key, p3["permitId"])), root)
    assert not result.verified and result.failed is not None, result.to_json()
    assert result.failed.name == "receipt" and p1["permitId"] in result.failed.detail, result.failed


def test_an_approval_of_one_group_is_not_redeemed_once_the_policy_asks_another(start: StartFn, tmp_path: Path) -> None:
    """Approved by ops, then the policy asks sec: redeeming the ops approval stays pending (the
    approval untouched), and renewing a permit approved by ops is refused outright."""
    a = start()
    body = deploy(resource="service:payments", replicas=18)
    p = pending(a, body)
    ok(approve_cli(a, p["approvalId"]))
    early = deploy(resource="service:payments", replicas=19)
    q = pending(a, early)
    ok(approve_cli(a, q["approvalId"]))
    granted = a.authorize({**early, "approvalId": q["approvalId"]})
    assert granted["decision"] == "allow", granted
    bundle_dir = copy_bundle(tmp_path)
    edit(bundle_dir / "deploy.cedar", '@approval("ops")', '@approval("sec")')
    ok(fiat("policy", "publish", bundle_dir, "--home", a.home, "--url", a.url))
    deadline = time.monotonic() + 20
    while "approval by sec" not in (x := a.authorize(deploy(resource="service:payments", replicas=20)))["reason"]:
        assert time.monotonic() < deadline, x  # the server follows the newly published version
        time.sleep(0.2)
    r = a.authorize({**body, "approvalId": p["approvalId"]})
    assert r["decision"] == "pending" and r["permit"] is None, r
    assert "granted by group 'ops'" in r["reason"] and "asks group 'sec'" in r["reason"], r
    assert a.approval(p["approvalId"])["status"] == "approved"  # not used up
    if decode_permit(a, granted["permit"]).get("constraints", {}).get("singleUse"):
        a.client.consume(a.keys.runtime_key, granted["permitId"])
    renewal = renew(a, early, granted["permitId"])
    assert renewal["decision"] == "deny" and renewal["permit"] is None, renewal
    assert "renewal refused" in renewal["reason"] and "approval by sec" in renewal["reason"], renewal


def test_a_receipt_whose_end_lies_in_the_future_is_refused(start: StartFn) -> None:
    """A receipt is signed when its execution has ended: one ending a minute from now is refused (403)."""
    from fiat.formats import jws

    a = start()
    p = a.authorize(refund(amount=1000))
    assert p["decision"] == "allow", p
    digest = decode_permit(a, p["permit"])["environment"]["digest"]["sha256"]
    now = time.time()
    statement = ev.receipt_statement(
        permit_id=p["permitId"],
        permit_digest=jws.parse(p["permit"]).digest,
        start=now,
        end=now + 60,
        outcome="completed",
        exit_code=0,
        halt_reason=None,
        verifications=240,
        verification_chain=hashlib.sha256(b"chain").hexdigest(),
        measurement_start={"digest": {"sha256": digest}},
        measurement_end={"digest": {"sha256": digest}},
    )
    envelope = ev.sign_statement(statement, [(a.keys.runtime_kid, a.keys.runtime_key)]).to_json()
    r = httpx.post(f"{a.url}/v1/receipts", json={"envelope": envelope})
    assert r.status_code == 403 and "in the future" in r.json()["detail"], r.text


# -- delegation: attenuated child permits (docs/formats.md, "Delegation") ------------------------


@pytest.fixture(scope="module")
def delegating(template: tuple[Path, Keys], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    """The example bundle, served for the delegation tests (their own home: no principal is revoked)."""
    home = new_home(template, tmp_path_factory.mktemp("delegating"))
    with serving(home, template[1], {"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "5000"}) as a:
        yield a


DOCS = {"action": "deploy", "resource": "service:docs"}


def delegate(a: Authority, parent: str | None, principal: str, **extra: Any) -> dict[str, Any]:
    body = deploy(principal=principal, parent=parent, **extra)
    return dict(a.authorize(body))


def test_a_three_generation_act_chain_verifies_offline_and_a_forged_link_fails(delegating: Authority) -> None:
    """alice → release-bot → alice: ``sub`` is the root's principal, ``act`` nests the actors since
    (RFC 8693 §4.1, read here by PyJWT); the grandchild's bundle verifies, every link checked."""
    from fiat.formats import jws
    from fiat.formats.canonical import compact
    from fiat.verify import Bundle, TrustRoot, VerificationPolicy, verify

    a = delegating
    root = delegate(a, None, "user:alice", scope=[DOCS])
    assert root["decision"] == "allow", root
    child = delegate(a, root["permitId"], "agent:release-bot", scope=[DOCS])
    assert child["decision"] == "allow", child
    grandchild = delegate(a, child["permitId"], "user:alice")
    assert grandchild["decision"] == "allow", grandchild
    c0, c1, c2 = (decode_permit(a, r["permit"]) for r in (root, child, grandchild))
    assert c0["sub"] == "user:alice" and "act" not in c0 and c0["scope"] == [DOCS] and "delegation" not in c0
    assert c1["sub"] == "user:alice" and c1["act"] == {"sub": "agent:release-bot"}
    assert c2["sub"] == "user:alice" and c2["act"] == {"sub": "user:alice", "act": {"sub": "agent:release-bot"}}
    assert c2["scope"] == c1["scope"]  # asked for none: its parent's (a scope binds every descendant)
    assert c1["delegation"] == {
        "depth": 1,
        "parentExp": c0["exp"],
        "parentHead": root["permitId"],  # never renewed: the chain's head is the parent itself
        "ancestors": [{"principal": "user:alice", "determining": ["platform-deploys"]}],
    }
    # The grandchild's own principal (alice) is not evaluated again: only release-bot is.
    assert c2["delegation"]["depth"] == 2
    assert [x["principal"] for x in c2["delegation"]["ancestors"]] == ["agent:release-bot"]
    assert c2["exp"] <= c1["exp"] <= c0["exp"]
    # The action digest is that of the request alone: the scope is signed, not digested.
    assert child["actionDigest"] == expected_digest(deploy(principal="agent:release-bot", parent=root["permitId"]))
    trust = TrustRoot.parse(ok(fiat_bytes("trust-root", "export", "--home", a.home)).stdout)
    bundle = Bundle.from_json(a.client.bundle(a.keys.runtime_key, grandchild["permitId"]))
    assert [x.permit.claims["jti"] for x in bundle.ancestors] == [child["permitId"], root["permitId"]]
    relaxed = VerificationPolicy(require_receipt=False)
    result = verify(bundle, trust, relaxed)
    assert result.verified, result.to_json()
    assert "every link attenuates its parent" in result.steps[-1].detail
    # A forged link: the parent's part swapped for another permit of the same id, re-signed (with
    # the authority's key) to name a wider scope. Never logged, so the parent fails verification.
    forged = bundle.to_json()
    claims = jws.parse(forged["ancestors"][0]["permit"]["token"]).claims
    claims["scope"] = [DOCS, {"action": "deploy", "resource": "service:payments"}]
    key = KeyRing(a.home / "keys").signing_key("authority")[1]
    forged["ancestors"][0]["permit"]["token"] = jws.sign_compact(
        compact(claims), key, kid=a.keys.authority_kid, typ="fiat-permit+jwt"
    )
    result = verify(Bundle.from_json(forged), trust, relaxed)
    assert result.failed is not None and result.failed.name == "lineage", result.to_json()


def test_a_scope_binds_every_descendant_not_only_the_children(delegating: Authority) -> None:
    """Attack: a child that asks for no scope of its own must not free its children from the root's
    scope (a grandchild stepping outside it through a scope-less child). The child is signed its
    parent's scope, and the grandchild outside it is refused."""
    a = delegating
    root = delegate(a, None, "user:alice", scope=[DOCS])
    assert root["decision"] == "allow", root
    child = delegate(a, root["permitId"], "agent:release-bot")  # in scope, asks for no scope
    assert child["decision"] == "allow", child
    assert decode_permit(a, child["permit"])["scope"] == [DOCS]  # the parent's, as it signed it
    g = delegate(a, child["permitId"], "agent:release-bot", resource="service:payments", replicas=3)
    assert g["decision"] == "deny", g
    assert "delegation refused" in g["reason"] and "outside the scope" in g["reason"], g
    assert_decision_logged(a, g)


def test_a_child_asking_for_more_than_its_parent_is_denied_and_logged(delegating: Authority) -> None:
    a = delegating
    root = delegate(a, None, "user:alice", scope=[DOCS])
    assert root["decision"] == "allow", root
    # Outside the parent's scope.
    r = delegate(a, root["permitId"], "agent:release-bot", resource="service:payments", replicas=3)
    assert r["decision"] == "deny", r
    assert "delegation refused" in r["reason"] and "outside the scope" in r["reason"], r
    assert_decision_logged(a, r)
    # A scope wider than the parent's.
    r = delegate(a, root["permitId"], "agent:release-bot", scope=[DOCS, {"action": "deploy", "resource": "service:x"}])
    assert r["decision"] == "deny", r
    assert "wider than parent" in r["reason"] and 'Service::"x"' in r["reason"], r
    assert_decision_logged(a, r)
    # An ancestor's principal that Cedar would not allow the child's action: support may not deploy.
    support = a.authorize(refund(amount=1000))
    assert support["decision"] == "allow", support
    r = delegate(a, support["permitId"], "agent:release-bot")
    assert r["decision"] == "deny", r
    assert "ancestor principal agent:support-assistant would not be allowed deploy" in r["reason"], r
    assert_decision_logged(a, r)
    # Policy bounds the depth: deploy-delegation-depth forbids a deploy delegated a third time.
    parent = root["permitId"]
    for depth in (1, 2):
        r = delegate(a, parent, "agent:release-bot")
        assert r["decision"] == "allow", (depth, r)
        parent = r["permitId"]
    r = delegate(a, parent, "agent:release-bot")
    assert r["decision"] == "deny" and r["determiningPolicies"] == ["deploy-delegation-depth"], r
    # A parent this authority never issued.
    r = delegate(a, "pmt_never-issued", "agent:release-bot")
    assert r["decision"] == "deny" and "was not issued here" in r["reason"], r
    assert_decision_logged(a, r)
    # A malformed scope is refused before anything is decided (400).
    bad = deploy(scope=[{"action": "deploy", "resource": "no-colon"}])
    with pytest.raises(ClientError, match="scope"):
        a.authorize(bad)
    with pytest.raises(ClientError):  # at most 256 pairs
        a.authorize(deploy(scope=[{"action": "deploy", "resource": f"service:s{i}"} for i in range(257)]))


def test_a_child_expires_with_its_parent(delegating: Authority) -> None:
    """shell:run lives 30 s, a deploy 60 s: a deploy delegated by a shell:run permit ends with it."""
    a = delegating
    shell = a.authorize(
        {
            "principal": "agent:release-bot",
            "action": "shell:run",
            "resource": "repo:fiat",
            "context": {"command": {"argv": ["make"], "cwd": "/src"}},
            "evidence": EVIDENCE,
        }
    )
    assert shell["decision"] == "allow", shell
    child = delegate(a, shell["permitId"], "agent:release-bot")
    assert child["decision"] == "allow", child
    parent, claims = decode_permit(a, shell["permit"]), decode_permit(a, child["permit"])
    assert claims["exp"] == parent["exp"] and claims["exp"] - claims["iat"] <= 30
    # Renewed, the child is capped the same way: by its parent chain's live head.
    renewed = a.authorize({**deploy(parent=shell["permitId"]), "renews": child["permitId"]})
    assert renewed["decision"] == "allow", renewed
    assert decode_permit(a, renewed["permit"])["exp"] <= parent["exp"]


def test_delegation_needs_a_live_parent_and_stops_at_max_lineage_depth(start: StartFn, tmp_path: Path) -> None:
    """A permissive bundle (every request allowed, a 2 s ttl): a child of an expired parent is denied;
    a child of a parent renewed in time is capped by the renewal; 32 generations is the limit."""
    from fiat.verify.trust_root import MAX_LINEAGE_DEPTH

    bundle_dir = copy_bundle(tmp_path, "open")  # the example schema and entities, one permissive policy
    for f in [*bundle_dir.glob("*.cedar"), bundle_dir / "tests.json"]:
        f.unlink()
    (bundle_dir / "all.cedar").write_text('@id("all")\n@ttl("2")\npermit (principal, action, resource);\n')
    a = start(bundle=bundle_dir)
    body = deploy()
    parent = a.authorize(body)
    assert parent["decision"] == "allow", parent
    parent_exp = decode_permit(a, parent["permit"])["exp"]
    time.sleep(1.1)  # the renewal ends a second or more after its predecessor
    renewed = a.authorize({**body, "renews": parent["permitId"]})
    assert renewed["decision"] == "allow", renewed
    head_exp = decode_permit(a, renewed["permit"])["exp"]
    assert head_exp > parent_exp
    time.sleep(max(0.0, parent_exp - time.time()) + 0.05)
    # The parent's own permit has expired, its renewal has not: the chain is live.
    child = a.authorize({**body, "principal": "user:alice", "parent": parent["permitId"]})
    assert child["decision"] == "allow", child
    child_claims = decode_permit(a, child["permit"])
    assert child_claims["exp"] <= head_exp
    # It records the head it was checked against, and its bundle carries the parent's renewal up to
    # it, so that it verifies offline though its parent's own permit had expired when it was issued.
    assert child_claims["delegation"]["parentHead"] == renewed["permitId"], child_claims
    assert child_claims["delegation"]["parentExp"] == head_exp
    from fiat.verify import TrustRoot, VerificationPolicy, verify

    child_bundle = Bundle.from_json(a.client.bundle(a.keys.runtime_key, child["permitId"]))
    (anc,) = child_bundle.ancestors
    assert [r.permit.claims["jti"] for r in anc.renewals] == [renewed["permitId"]]
    trust = TrustRoot.parse(ok(fiat_bytes("trust-root", "export", "--home", a.home)).stdout)
    result = verify(child_bundle, trust, VerificationPolicy(require_receipt=False))
    assert result.verified, result.to_json()
    time.sleep(max(0.0, head_exp - time.time()) + 0.05)
    late = a.authorize({**body, "principal": "user:alice", "parent": parent["permitId"]})
    assert late["decision"] == "deny", late
    assert "expired" in late["reason"] and "a child needs a live parent" in late["reason"], late
    assert_decision_logged(a, late)
    # maxLineageDepth: generation 33 is refused (each generation asked at once: 2 s each).
    (bundle_dir / "all.cedar").write_text('@id("all")\n@ttl("600")\npermit (principal, action, resource);\n')
    ok(fiat("policy", "publish", bundle_dir, "--home", a.home, "--url", a.url))
    deadline = time.monotonic() + 20
    while (first := a.authorize(body))["obligations"].get("ttl") != 60:
        assert time.monotonic() < deadline, first["obligations"]
        time.sleep(0.2)
    up = first["permitId"]
    for depth in range(1, MAX_LINEAGE_DEPTH + 1):
        r = a.authorize({**body, "parent": up})
        assert r["decision"] == "allow", (depth, r)
        up = r["permitId"]
    r = a.authorize({**body, "parent": up})
    assert r["decision"] == "deny" and "maxLineageDepth" in r["reason"], r


def test_a_revoked_renewal_of_the_parent_refuses_new_children(start: StartFn) -> None:
    """A child names its parent by the first permit; revoking the chain's later renewal (the live
    head) ends the parent's execution, so a new child of the first permit is refused too (the
    first permit itself is not revoked: only its renewal is)."""
    a = start()
    body = deploy()
    parent = a.authorize(body)
    assert parent["decision"] == "allow", parent
    time.sleep(1.1)  # the renewal ends a second or more after its predecessor
    renewed = a.authorize({**body, "renews": parent["permitId"]})
    assert renewed["decision"] == "allow", renewed
    before = a.authorize({**body, "principal": "user:alice", "parent": parent["permitId"]})
    assert before["decision"] == "allow", before
    revoke_cli(a, "permit", renewed["permitId"], "compromised runner")
    r = a.authorize({**body, "principal": "user:alice", "parent": parent["permitId"]})
    assert r["decision"] == "deny", r
    assert renewed["permitId"] in r["reason"] and "revoked" in r["reason"], r
    assert_decision_logged(a, r)


def test_revoking_an_ancestor_principal_covers_its_delegates(start: StartFn) -> None:
    """A principal revocation covers every permit issued to act for it (anywhere in the act chain):
    a delegate of alice may not delegate further, and its bundle carries the revocation."""
    a = start()
    root = delegate(a, None, "user:alice")
    child = delegate(a, root["permitId"], "agent:release-bot")
    assert child["decision"] == "allow", child
    revoke_cli(a, "principal", "user:alice", "left the team")
    r = delegate(a, child["permitId"], "agent:release-bot")
    assert r["decision"] == "deny", r
    assert r["reason"] == "delegation refused: ancestor principal user:alice is revoked", r
    assert_decision_logged(a, r)
    kinds = revocations_in_bundle(a.client.bundle(a.keys.runtime_key, child["permitId"]))
    assert ("principal", 'User::"alice"') in kinds, kinds
