"""Hostile input against the authority's HTTP API, served by a real ``fiat serve`` child process.

One server (a fresh home: ``fiat init``, ``fiat policy publish examples/policies``) listens
on a free port on 127.0.0.1 for the whole module. Every endpoint gets malformed JSON,
empty bodies, JSON of the wrong top-level type, wrongly typed, unknown, missing and
over-long fields, deeply nested values, oversized bodies (declared and chunked), path
tricks, wrong methods, bad query parameters, broken DPoP proofs and bearer tokens, and
floats and nulls in the Cedar context; ``/v1/authorize`` is also fuzzed with hypothesis,
each request carrying a fresh, valid DPoP proof of the home's runtime key.

For every response: no 5xx; a 4xx is an RFC 9457 problem (``application/problem+json``
with ``type``, ``title``, ``status``, ``detail``). After each batch ``/healthz`` answers
200 and the log's tree has not shrunk. At the end a valid request is still allowed and
``fiat log verify`` (whose auditor home saw the tree at the start) accepts the log.

Behaviour that is wrong today is pinned by ``xfail(strict=True)`` tests naming the bug,
so each flips to a failure (XPASS) once fixed.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fiat.authorize.dpop import make_proof
from fiat.formats import jws
from fiat.formats.encoding import json_digest
from support import EXAMPLES
from support.processes import FiatServer, clean_env
from support.processes import fiat_text as fiat

PROBLEM = "application/problem+json"
MIB = 1 << 20

pytestmark = pytest.mark.timeout(300)


# -- the server ----------------------------------------------------------------------------


def check(r: httpx.Response, method: str = "") -> httpx.Response:
    """The invariants of every response: no 5xx; a 4xx is a complete RFC 9457 problem."""
    where = f"{r.request.method} {r.request.url.raw_path[:120]!r}"
    assert r.status_code < 500, f"{where} -> {r.status_code}: {r.text[:500]}"
    if 400 <= r.status_code < 500:
        assert_problem(r.status_code, r.headers.get("content-type", ""), r.content, where, method or r.request.method)
    return r


def assert_problem(status: int, content_type: str, body: bytes, where: str, method: str = "GET") -> None:
    assert content_type.split(";")[0].strip() == PROBLEM, f"{where} -> {status} with Content-Type {content_type!r}"
    if method == "HEAD":
        return
    doc = json.loads(body)
    assert isinstance(doc, dict), f"{where}: {body[:200]!r}"
    for name in ("type", "title", "detail"):
        assert isinstance(doc.get(name), str) and doc[name], f"{where}: problem lacks {name}: {doc}"
    assert doc.get("status") == status, f"{where}: problem status {doc.get('status')} != {status}"


@dataclass
class Target:
    """The module's server, what it was started with, and the requests aimed at it."""

    url: str
    port: int
    home: Path
    auditor: Path
    vkey: str
    kid: str
    key: Ed25519PrivateKey
    token: str
    http: httpx.Client
    permit_id: str = ""
    approval_id: str = ""
    routes: set[str] = field(default_factory=set)  # the OpenAPI paths this server has
    sizes: list[int] = field(default_factory=list)

    # requests
    def proof(self, method: str, path: str, key: Ed25519PrivateKey | None = None) -> str:
        return make_proof(key or self.key, method, self.url + path)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return check(self.http.request(method, path, **kw), method)

    def post_raw(self, path: str, body: bytes, auth: str = "none", **headers: str) -> httpx.Response:
        h = {"Content-Type": "application/json", **self.auth_headers(auth, "POST", path), **headers}
        return self.request("POST", path, content=body, headers=h)

    def auth_headers(self, auth: str, method: str, path: str) -> dict[str, str]:
        if auth == "dpop":
            return {"DPoP": self.proof(method, path)}
        if auth == "admin":
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def authorize(self, body: Any = None, *, content: bytes | None = None, **headers: str) -> httpx.Response:
        h = {"DPoP": self.proof("POST", "/v1/authorize"), "Content-Type": "application/json", **headers}
        data = content if content is not None else json.dumps(body).encode()
        return self.request("POST", "/v1/authorize", content=data, headers=h)

    def body(self, **over: Any) -> dict[str, Any]:
        """A well-formed authorize body (denied: no environment evidence), with overrides."""
        b: dict[str, Any] = {
            "principal": "agent:release-bot",
            "action": "deploy",
            "resource": "service:docs",
            "context": {"version": "1.2.0", "replicas": 3},
            "runtimeKid": self.kid,
        }
        b.update(over)
        return b

    def authorize_fields(self) -> set[str]:
        schema = self.http.get("/openapi.json").json()["components"]["schemas"]["AuthorizeBody"]
        return set(schema["properties"])

    # health
    def log_size(self) -> int:
        r = self.http.get("/log/checkpoint")
        assert r.status_code == 200, r.text
        return int(r.text.split("\n")[1])

    def healthy(self) -> None:
        """/healthz is 200 and the log's tree never shrank."""
        r = self.http.get("/healthz")
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["status"] == "ok" and doc["policyVersion"] == 1, doc
        size = self.log_size()
        assert all(size >= s for s in self.sizes), f"the log shrank: {self.sizes} then {size}"
        self.sizes.append(size)


def evidence() -> dict[str, Any]:
    claims = {"image": "sha256:" + "ab" * 32, "node": "hostile-test"}
    return {"claims": claims, "digest": json_digest(claims)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    base = tmp_path_factory.mktemp("hostile")
    home, auditor = base / "home", base / "auditor"
    p = fiat("init", "--home", home, "--json")
    assert p.returncode == 0, p.stderr
    vkey = json.loads(p.stdout)["vkey"]
    p = fiat("policy", "publish", EXAMPLES, "--home", home, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["version"] == 1

    from fiat.api.credentials import ensure_admin_token
    from fiat.config import load_config
    from fiat.home import keyring

    with clean_env():
        cfg = load_config(home, require=True)
        rec, key = keyring(cfg).signing_key("runtime")
        token = ensure_admin_token(cfg.keys_dir)

    process = FiatServer(home, output=base / "serve.log").start()
    url, port = process.url, process.port
    # No keep-alive: a 5xx makes uvicorn drop the connection, which must not fail the next request.
    client = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
    try:
        s = Target(url, port, home, auditor, vkey, rec.kid, key, token, client)
        s.routes = set(client.get("/openapi.json").json()["paths"])
        # The auditor sees the starting tree, so the final audit proves the log only grew.
        p = fiat("log", "verify", "--url", url + "/log", "--vkey", vkey, "--home", auditor)
        assert p.returncode == 0, p.stdout + p.stderr
        # A real permit and a real pending approval to aim at.
        r = s.authorize(s.body(evidence=evidence()))
        assert r.status_code == 200 and r.json()["decision"] == "allow", r.text
        s.permit_id = r.json()["permitId"]
        r = s.authorize(s.body(resource="service:payments", evidence=evidence()))
        assert r.status_code == 200 and r.json()["decision"] == "pending", r.text
        s.approval_id = r.json()["approvalId"]
        s.healthy()
        yield s
    finally:
        client.close()
        process.stop()


# -- the endpoints -----------------------------------------------------------------------------

# (path template, how it authenticates, whether the handler reads a JSON body)
POSTS = [
    ("/v1/authorize", "dpop", True),
    ("/v1/approvals/{approval}", "none", True),
    ("/v1/permits/prm_does_not_exist/consume", "dpop", False),
    ("/v1/revocations", "admin", True),
    ("/v1/enrollments", "admin", True),
    ("/v1/policies", "admin", True),
    ("/v1/receipts", "none", True),
]
# Endpoints added while this file was written: tested when the server has them (per its OpenAPI).
NEWER = {"/v1/receipts": "/v1/receipts", "/v1/bundles/{permit}": "/v1/bundles/{jti}"}


def present(s: Target, template: str) -> bool:
    return template not in NEWER or NEWER[template] in s.routes


def require(s: Target, template: str) -> None:
    if not present(s, template):
        pytest.skip(f"this server has no {template}")


GETS = [
    "/healthz",
    "/metrics",
    "/v1/trust/state",
    "/v1/approvals/apr_does_not_exist",
    "/log/checkpoint",
    "/",
]


def path_of(s: Target, template: str) -> str:
    return template.format(approval=s.approval_id, permit=s.permit_id)


def good_body(s: Target, template: str) -> dict[str, Any]:
    """A body each endpoint accepts the shape of (its effect is harmless or refused later)."""
    return {
        "/v1/authorize": s.body(),
        "/v1/approvals/{approval}": {
            "envelope": {"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "AA=="}]}
        },
        "/v1/permits/prm_does_not_exist/consume": {},
        "/v1/revocations": {"kind": "permit", "target": "prm_hostile_target", "reason": "hostile test"},
        "/v1/enrollments": {"role": "runtime", "name": "hostile", "publicKey": "!" * 43},
        "/v1/policies": {"files": {"x.cedar": "!!!"}},
        "/v1/receipts": {"envelope": {"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "AA=="}]}},
    }[template]


MALFORMED = [
    b"{bad",
    b"",
    b"{",
    b"}",
    b'{"principal": }',
    b'{"a":1}trailing',
    b"\xff\xfe\x00",
    b"\x00",
    b"[]",
    b"[{}]",
    b'"a string"',
    b"5",
    b"-1.5e400",
    b"null",
    b"true",
]


@pytest.mark.parametrize(("template", "auth", "reads_body"), POSTS, ids=[p[0] for p in POSTS])
def test_malformed_and_wrongly_typed_bodies(server: Target, template: str, auth: str, reads_body: bool) -> None:
    require(server, template)
    path = path_of(server, template)
    for body in MALFORMED:
        for a in {auth, "none"}:
            r = server.post_raw(path, body, a)
            assert 400 <= r.status_code < 500, (body, r.text)
            if reads_body:
                # The body is checked before anything else, so a malformed one is a 400 whoever sends it.
                assert r.status_code == 400, (body, a, r.text)
    # JSON, but not an application/json request.
    r = server.post_raw(path, json.dumps(good_body(server, template)).encode(), auth, **{"Content-Type": "text/plain"})
    assert 400 <= r.status_code < 500
    if reads_body:
        assert r.status_code == 400
    server.healthy()


WRONG_VALUES: list[Any] = [5, -1, 1.5, True, False, None, {}, {"a": "b"}, [], ["x"], "text", ""]

# field -> (accepts None, accepted Python types)
FIELDS: dict[str, dict[str, tuple[bool, tuple[type, ...]]]] = {
    "/v1/authorize": {
        "principal": (False, (str,)),
        "action": (False, (str,)),
        "resource": (False, (str,)),
        "context": (False, (dict,)),
        "parent": (True, (str,)),
        "runtimeKid": (False, (str,)),
        "evidence": (True, (dict,)),
        "approvalId": (True, (str,)),
        "renews": (True, (str,)),
    },
    "/v1/approvals/{approval}": {"envelope": (False, (dict,))},
    "/v1/revocations": {"kind": (False, (str,)), "target": (False, (str,)), "reason": (False, (str,))},
    "/v1/enrollments": {
        "role": (False, (str,)),
        "name": (False, (str,)),
        "publicKey": (False, (str,)),
        "groups": (True, (list,)),
        "identity": (True, (str,)),
    },
    "/v1/policies": {"files": (False, (dict,))},
    "/v1/receipts": {"envelope": (False, (dict,))},
}


@pytest.mark.parametrize("template", list(FIELDS))
def test_wrong_field_types_unknown_and_missing_fields(server: Target, template: str) -> None:
    require(server, template)
    auth = next(a for t, a, _ in POSTS if t == template)
    path = path_of(server, template)
    base = good_body(server, template)
    for name, (nullable, types) in FIELDS[template].items():
        if template == "/v1/authorize" and name not in server.authorize_fields():
            continue
        for value in WRONG_VALUES:
            if value is None and nullable:
                continue
            if type(value) in types:
                continue
            r = server.post_raw(path, json.dumps({**base, name: value}).encode(), auth)
            assert r.status_code == 400, (name, value, r.text)
            assert name in r.json()["detail"], r.text
        # missing
        r = server.post_raw(path, json.dumps({k: v for k, v in base.items() if k != name}).encode(), auth)
        if not nullable and name != "context":
            assert r.status_code == 400, (name, r.text)
            assert name in r.json()["detail"] and "required" in r.json()["detail"].lower(), r.text
    # unknown fields are refused, whatever their name
    for extra in ("zzz", "__proto__", "constructor", "", "runtimekid", "x" * 5000):
        r = server.post_raw(path, json.dumps({**base, extra: 1}).encode(), auth)
        assert r.status_code == 400, (extra, r.text)
        assert "Extra inputs are not permitted" in r.json()["detail"], r.text
    # every field missing at once
    r = server.post_raw(path, b"{}", auth)
    assert r.status_code == 400
    server.healthy()


def test_values_inside_nested_objects_are_typed_too(server: Target) -> None:
    r = server.post_raw("/v1/policies", json.dumps({"files": {"a.cedar": 5}}).encode(), "admin")
    assert r.status_code == 400 and "files.a.cedar" in r.json()["detail"]
    r = server.post_raw("/v1/policies", json.dumps({"files": {"a.cedar": None}}).encode(), "admin")
    assert r.status_code == 400
    r = server.post_raw("/v1/policies", json.dumps({"files": ["a.cedar"]}).encode(), "admin")
    assert r.status_code == 400
    server.healthy()


LIMITS = [
    ("/v1/authorize", "principal", 1024),
    ("/v1/authorize", "action", 1024),
    ("/v1/authorize", "resource", 1024),
    ("/v1/authorize", "parent", 256),
    ("/v1/authorize", "runtimeKid", 128),
    ("/v1/authorize", "approvalId", 128),
    ("/v1/authorize", "renews", 256),
    ("/v1/revocations", "target", 1024),
    ("/v1/revocations", "reason", 2048),
    ("/v1/enrollments", "name", 256),
]


@pytest.mark.parametrize(("template", "name", "limit"), LIMITS, ids=[f"{t}:{n}" for t, n, _ in LIMITS])
def test_strings_past_their_maximum_length(server: Target, template: str, name: str, limit: int) -> None:
    if template == "/v1/authorize" and name not in server.authorize_fields():
        pytest.skip(f"{template} has no field {name}")
    auth = next(a for t, a, _ in POSTS if t == template)
    base = good_body(server, template)
    for n in (limit + 1, 10 * limit, 200_000):
        for char in ("x", "é", "\U0001f600"):
            body = json.dumps({**base, name: char * n}, ensure_ascii=False).encode()
            r = server.post_raw(template, body, auth)
            assert r.status_code == 400, (name, n, r.text[:300])
            assert name in r.json()["detail"] and f"at most {limit}" in r.json()["detail"], r.text[:300]
    server.healthy()


def test_empty_strings_and_exact_public_key_length(server: Target) -> None:
    for name in ("principal", "action", "resource", "runtimeKid"):
        r = server.authorize(server.body(**{name: ""}))
        assert r.status_code == 400 and name in r.json()["detail"], r.text
    base = good_body(server, "/v1/enrollments")
    for key in ("A" * 42, "A" * 44, "", "A" * 43 + "\n", "!" * 43, "A" * 42 + "B"):
        r = server.post_raw("/v1/enrollments", json.dumps({**base, "publicKey": key}).encode(), "admin")
        assert r.status_code == 400, (key, r.text)
    for role in ("admin", "authority", "log", "runtime\n", "RUNTIME", " runtime"):
        r = server.post_raw("/v1/enrollments", json.dumps({**base, "role": role}).encode(), "admin")
        assert r.status_code == 400, (role, r.text)
    for kind in ("all", "Permit", "permit\n", ""):
        r = server.post_raw(
            "/v1/revocations", json.dumps({"kind": kind, "target": "t", "reason": "r"}).encode(), "admin"
        )
        assert r.status_code == 400, (kind, r.text)
    server.healthy()


def nested(levels: int, inner: bytes = b"1", kind: str = "object") -> bytes:
    if kind == "object":
        return b'{"a":' * levels + inner + b"}" * levels
    return b"[" * levels + inner + b"]" * levels


@pytest.mark.parametrize("levels", [5_000, 100_000, 400_000])
def test_deeply_nested_json_is_refused_cleanly(server: Target, levels: int) -> None:
    for kind in ("object", "array"):
        deep = nested(levels, kind=kind)
        if len(deep) > MIB - 200:
            continue
        # top level, every endpoint
        for template, auth, _ in POSTS:
            if not present(server, template):
                continue
            r = server.post_raw(path_of(server, template), deep, auth)
            assert 400 <= r.status_code < 500, r.text[:200]
        # inside the Cedar context, the evidence, an envelope, the policy files
        inner = [
            (
                "/v1/authorize",
                "dpop",
                json.dumps(server.body(context={})).encode().replace(b'"context": {}', b'"context": ' + deep),
            ),
            (
                "/v1/authorize",
                "dpop",
                json.dumps(server.body(evidence={})).encode().replace(b'"evidence": {}', b'"evidence": ' + deep),
            ),
            (path_of(server, "/v1/approvals/{approval}"), "none", b'{"envelope": ' + deep + b"}"),
            ("/v1/policies", "admin", b'{"files": ' + deep + b"}"),
        ]
        for path, auth, body in inner:
            r = server.post_raw(path, body, auth)
            assert r.status_code == 400, r.text[:200]
    server.healthy()


def test_moderately_nested_context_is_a_problem_or_a_logged_deny(server: Target) -> None:
    # Deep enough to pass the JSON parser but past the canonical-JSON depth limit (64): a clear 4xx.
    for levels in (65, 100, 500, 900):
        body = json.dumps(server.body(context={})).encode().replace(b'"context": {}', b'"context": ' + nested(levels))
        r = server.post_raw("/v1/authorize", body, "dpop")
        assert 400 <= r.status_code < 500, r.text[:300]
        assert "nested deeper" in r.json()["detail"] or r.status_code == 400
    # Within the limit: evaluated, denied and logged.
    body = json.dumps(server.body(context={})).encode().replace(b'"context": {}', b'"context": ' + nested(60))
    r = server.post_raw("/v1/authorize", body, "dpop")
    assert r.status_code == 200 and r.json()["decision"] == "deny"
    assert isinstance(r.json()["decisionLogIndex"], int)
    # Deep evidence claims do not break the appraisal: an unverified environment, a logged deny.
    r = server.authorize(server.body(evidence={"claims": json.loads(nested(300)), "digest": "x"}))
    assert r.status_code == 200 and r.json()["decision"] == "deny"
    server.healthy()


# -- body size ---------------------------------------------------------------------------------


def raw_request(port: int, data: bytes, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; return the status, the headers (lower-cased) and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # the server may answer and close before reading everything
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            want = int(headers["content-length"])
            while len(rest) < want:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        elif headers.get("transfer-encoding") == "chunked":
            while not rest.endswith(b"0\r\n\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            rest = _dechunk(rest)
        return status, headers, rest


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def chunked(payload: bytes, piece: int = 32 * 1024) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(payload[i : i + piece]), payload[i : i + piece]) for i in range(0, len(payload), piece)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def head(s: Target, method: str, path: str, extra: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{s.port}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def big_json(size: int) -> bytes:
    pad = size - len(b'{"principal":""}')
    return b'{"principal":"' + b"a" * pad + b'"}'


@pytest.mark.parametrize("path", [p for p, _, _ in POSTS] + GETS)
def test_two_mib_body_with_content_length_is_413(server: Target, path: str) -> None:
    require(server, path)
    path = path_of(server, path)
    method = "GET" if path in GETS else "POST"
    body = big_json(2 * MIB)
    for auth in ("none", "dpop" if method == "POST" else "none", "admin"):
        r = server.request(method, path, content=body, headers=server.auth_headers(auth, method, path))
        assert r.status_code == 413, r.text[:300]
    server.healthy()


def test_body_limit_boundary(server: Target) -> None:
    at_limit = big_json(MIB)
    assert len(at_limit) == MIB
    r = server.post_raw("/v1/authorize", at_limit, "dpop")
    assert r.status_code == 400, r.text[:300]  # read and validated: principal too long, no other fields
    r = server.post_raw("/v1/authorize", at_limit + b" ", "dpop")
    assert r.status_code == 413, r.text[:300]
    # Declared sizes the server should not believe, and no body at all.
    for declared in (str(2 * MIB), str(1 << 62)):
        status, headers, _ = raw_request(
            server.port, head(server, "POST", "/v1/revocations", [("Content-Length", declared)]) + b"\r\n{}"
        )
        assert status == 413 and headers["content-type"] == PROBLEM
    server.healthy()


BODY_READERS = [p for p, _, reads in POSTS if reads]


@pytest.mark.parametrize("path", BODY_READERS)
def test_two_mib_chunked_body_is_refused(server: Target, path: str) -> None:
    """The streamed-size check holds: nothing of a 2 MiB chunked body is accepted (today: 400)."""
    require(server, path)
    path = path_of(server, path)
    extra = [("Transfer-Encoding", "chunked"), *server.auth_headers(_auth_of(server, path), "POST", path).items()]
    status, headers, body = raw_request(
        server.port, head(server, "POST", path, extra) + b"\r\n" + chunked(big_json(2 * MIB))
    )
    assert 400 <= status < 500, body[:300]
    assert_problem(status, headers.get("content-type", ""), body, path)
    server.healthy()


@pytest.mark.parametrize("path", BODY_READERS)
def test_two_mib_chunked_body_is_413(server: Target, path: str) -> None:
    require(server, path)
    path = path_of(server, path)
    extra = [("Transfer-Encoding", "chunked"), *server.auth_headers(_auth_of(server, path), "POST", path).items()]
    status, _, body = raw_request(server.port, head(server, "POST", path, extra) + b"\r\n" + chunked(big_json(2 * MIB)))
    assert status == 413, body[:300]


def _auth_of(s: Target, path: str) -> str:
    return next(a for t, a, _ in POSTS if path_of(s, t) == path)


def test_chunked_body_to_an_endpoint_without_a_body(server: Target) -> None:
    # consume() has no body parameter: whatever is streamed, it answers on the permit alone.
    path = "/v1/permits/prm_does_not_exist/consume"
    extra = [("Transfer-Encoding", "chunked"), ("DPoP", server.proof("POST", path))]
    status, headers, body = raw_request(
        server.port, head(server, "POST", path, extra) + b"\r\n" + chunked(b"a" * 2 * MIB)
    )
    assert status in (403, 413), body[:300]
    assert_problem(status, headers["content-type"], body, path)
    server.healthy()


# -- paths, methods, query parameters ---------------------------------------------------------


def raw_get(s: Target, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """A request whose path goes out exactly as written (http.client does not normalize it)."""
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.getheader("content-type") or "", r.read()
    finally:
        conn.close()


PATH_TRICKS = [
    "/v1/approvals/..%2f..%2fetc",
    "/v1/bundles/..%2f..%2fetc",
    "/v1/bundles/%00",
    "/v1/bundles/" + "b" * 10_240,
    "/v1/approvals/..%2F..%2F..%2Fetc%2Fpasswd",
    "/v1/approvals/../../etc/passwd",
    "/v1/approvals/%2e%2e/%2e%2e/healthz",
    "/v1/approvals/%00",
    "/v1/approvals/a%00b",
    "/v1/approvals/%ff%fe",
    "/v1/approvals/%C3%A9%E2%98%83%F0%9F%98%80",
    "/v1/approvals/%ED%A0%80",
    "/v1/approvals/" + "a" * 10_240,
    "/v1/approvals/" + "%41" * 3_000,
    "/v1/approvals/apr_x;jsessionid=1",
    "/v1/approvals/apr_x%3Fa=b",
    "/v1/approvals/apr_x%23frag",
    "/v1/approvals/",
    "/v1/approvals",
    "/v1/approvals//",
    "/v1/../log/checkpoint",
    "/v1/%2e%2e/log/checkpoint",
    "/log/../v1/trust/state",
    "//v1/authorize",
    "/v1//authorize",
    "/V1/AUTHORIZE",
    "/v1/authorize/",
    "/v1/authorize%00",
    "/%00",
    "/v1/trust/state/",
    "/v1/trust/state;x",
    "/healthz/../metrics",
    "/docs/../../etc/passwd",
]


@pytest.mark.parametrize("path", PATH_TRICKS, ids=[p[:48] for p in PATH_TRICKS])
def test_path_tricks(server: Target, path: str) -> None:
    for method, headers in (("GET", {}), ("POST", {"Content-Type": "application/json", "Content-Length": "0"})):
        status, ctype, body = raw_get(server, method, path, headers)
        assert status < 500, (method, path, status, body[:300])
        assert status != 200, (method, path, body[:300])
        if status >= 400:
            assert_problem(status, ctype, body, f"{method} {path}")
        # Nothing reaches the file system.
        assert b"root:" not in body
    # With a valid proof of the runtime key, unknown approvals are 404s (or the proof's URL differs: 401).
    prefix = path[: path.find("/", 4) + 1]
    if prefix in ("/v1/approvals/", "/v1/bundles/") and len(path) > len(prefix):
        status, ctype, body = raw_get(server, "GET", path, {"DPoP": server.proof("GET", path)})
        assert status in (401, 404), (path, status, body[:300])
        assert_problem(status, ctype, body, path)
        status, ctype, body = raw_get(server, "GET", path, {"Authorization": f"Bearer {server.token}"})
        assert status in (404,), (path, status, body[:300])
        assert_problem(status, ctype, body, path)


PERMIT_PATH_TRICKS = [
    "/v1/permits/%00/consume",
    "/v1/permits/..%2f..%2fetc/consume",
    "/v1/permits/%ff/consume",
    "/v1/permits/%E2%98%83/consume",
    "/v1/permits/" + "p" * 10_240 + "/consume",
    "/v1/permits//consume",
    "/v1/permits/x/consume/",
    "/v1/permits/x/../y/consume",
]


@pytest.mark.parametrize("path", PERMIT_PATH_TRICKS, ids=[p[:48] for p in PERMIT_PATH_TRICKS])
def test_permit_path_tricks(server: Target, path: str) -> None:
    for headers in ({}, {"DPoP": server.proof("POST", path)}):
        status, ctype, body = raw_get(server, "POST", path, headers)
        assert 400 <= status < 500, (path, status, body[:300])
        assert_problem(status, ctype, body, path)
    server.healthy()


def test_log_paths_refuse_traversal(server: Target) -> None:
    """The tlog-tiles routes answer plain-text 404s (C2SP style), never 5xx, never a file."""
    for path in (
        "/log/tile/0/x/../../../../etc/passwd",
        "/log/tile/0/%2e%2e/%2e%2e",
        "/log/tile/entries/..%2f..%2f",
        "/log/tile/99/000",
        "/log/tile/0/x999/999",
        "/log/tile/0/000.p/0",
        "/log/tile/0/000.p/999",
        "/log/tile/-1/000",
        "/log/tile/0/" + "0" * 5000,
        "/log/tile/%00",
        "/log/../keys/admin.token",
        "/log/checkpoint/../../fiat.toml",
    ):
        status, ctype, body = raw_get(server, "GET", path)
        assert status == 404, (path, status, body[:300])
        assert ctype.startswith(("text/plain", PROBLEM)), (path, ctype)
        assert b"fiat_admin_" not in body and b"[server]" not in body
    server.healthy()


METHODS = {
    "/v1/authorize": ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"],
    "/v1/approvals/apr_x": ["PUT", "DELETE", "PATCH"],
    "/v1/permits/x/consume": ["GET", "PUT", "DELETE"],
    "/v1/revocations": ["GET", "PUT", "DELETE"],
    "/v1/enrollments": ["GET", "PUT"],
    "/v1/policies": ["PUT", "DELETE"],
    "/v1/receipts": ["GET", "PUT"],
    "/v1/bundles/x": ["POST", "PUT", "DELETE"],
    "/v1/trust/state": ["POST", "PUT", "DELETE"],
    "/v1/trust/stream": ["POST", "PUT"],
    "/metrics": ["POST", "DELETE"],
    "/healthz": ["POST", "PUT", "DELETE"],
    "/log/checkpoint": ["POST", "PUT", "DELETE"],
}


@pytest.mark.parametrize("path", list(METHODS))
def test_wrong_methods_are_405(server: Target, path: str) -> None:
    require(server, path.replace("/v1/bundles/x", "/v1/bundles/{permit}"))
    for method in METHODS[path]:
        r = server.request(method, path, headers={"Authorization": f"Bearer {server.token}"})
        assert r.status_code == 405, (method, path, r.text)
    server.healthy()


def test_unknown_http_method_is_refused_by_the_server(server: Target) -> None:
    """A method that is not HTTP at all is refused before the application (by the HTTP parser,
    as a plain 400) or by the application (405); never served, never a 5xx."""
    r = server.http.request("FOO", "/v1/authorize")
    assert r.status_code in (400, 405), r.text
    server.healthy()


def test_405_names_the_allowed_methods(server: Target) -> None:
    r = server.request("PUT", "/healthz")
    assert r.status_code == 405
    assert "GET" in r.headers.get("allow", "")


@pytest.mark.parametrize(
    "query",
    [
        "since=-1",
        "since=abc",
        "since=",
        "since=1e3",
        "since=1.5",
        "since=0x10",
        "since=%00",
        "since=%20",
        "since=--1",
        "since=" + "9" * 5000,
        "since=-" + "9" * 30,
    ],
)
def test_bad_trust_state_query_is_400(server: Target, query: str) -> None:
    r = server.request("GET", f"/v1/trust/state?{query}")
    assert r.status_code == 400, (query, r.text)
    server.healthy()


@pytest.mark.parametrize(
    "query", ["", "since=0", "since=3", "since=1&since=2", "unknown=1", "since=9223372036854775807"]
)
def test_good_trust_state_query(server: Target, query: str) -> None:
    r = server.request("GET", f"/v1/trust/state?{query}")
    assert r.status_code == 200, (query, r.text)
    assert r.json()["state"].count(".") == 2


@pytest.mark.parametrize("since", [str(2**63), "9" * 25])
def test_trust_state_since_past_64_bits_is_400(server: Target, since: str) -> None:
    r = server.http.get(f"/v1/trust/state?since={since}")
    assert r.status_code == 400, r.text


def test_trust_stream_survives_abandoned_subscribers(server: Target) -> None:
    for _ in range(10):
        with server.http.stream("GET", "/v1/trust/stream", timeout=10) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    assert line[6:].count(".") == 2
                    break
    server.healthy()


# -- DPoP ----------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(header: dict[str, Any], claims: dict[str, Any], sig: bytes = b"\0" * 64) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode()) + "." + _b64(sig)


def _claims(s: Target, method: str, path: str, **over: Any) -> dict[str, Any]:
    c = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": s.url + path, "iat": int(time.time())}
    c.update(over)
    return c


def _header(s: Target, **over: Any) -> dict[str, Any]:
    h = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jws.jwk(s.key.public_key().public_bytes_raw())}
    h.update(over)
    return h


def _signed(s: Target, method: str, path: str, headers: dict[str, Any] | None = None, **claims: Any) -> str:
    h = {k: v for k, v in _header(s, **(headers or {})).items() if k != "alg"}
    return jwt.encode(_claims(s, method, path, **claims), s.key, algorithm="EdDSA", headers=h)


DpopCase = Callable[[Target, str, str], str]

DPOP_REFUSED: dict[str, DpopCase] = {
    "empty": lambda s, m, p: "",
    "garbage": lambda s, m, p: "garbage",
    "two-dots": lambda s, m, p: "..",
    "three-dots": lambda s, m, p: "a.b.c.d",
    "inner-spaces": lambda s, m, p: "a b.c d.e f",
    "huge": lambda s, m, p: "a" * 60_000,
    "huge-dotted": lambda s, m, p: ("A" * 20_000 + ".") * 2 + "A" * 20_000,
    "past-max-token": lambda s, m, p: ("A" * 22_000 + ".") * 2 + "A" * 22_000,
    "header-not-object": lambda s, m, p: _b64(b"[]") + "." + _b64(b"{}") + "." + _b64(b"x" * 64),
    "header-not-json": lambda s, m, p: _b64(b"{") + "." + _b64(b"{}") + "." + _b64(b"x" * 64),
    "header-deep": lambda s, m, p: _b64(b"[" * 5000 + b"]" * 5000) + "." + _b64(b"{}") + "." + _b64(b"x" * 64),
    "header-duplicate-names": lambda s, m, p: _b64(b'{"typ":"dpop+jwt","typ":"x"}') + "." + _b64(b"{}") + ".AA",
    "padded-base64": lambda s, m, p: _signed(s, m, p).replace(".", "=.", 1),
    "no-typ": lambda s, m, p: _token({k: v for k, v in _header(s).items() if k != "typ"}, _claims(s, m, p)),
    "typ-jwt": lambda s, m, p: _signed(s, m, p, {"typ": "JWT"}),
    "no-jwk": lambda s, m, p: _token({"typ": "dpop+jwt", "alg": "EdDSA"}, _claims(s, m, p)),
    "jwk-string": lambda s, m, p: _token(_header(s, jwk="x"), _claims(s, m, p)),
    "jwk-private": lambda s, m, p: _signed(s, m, p, {"jwk": {**_header(s)["jwk"], "d": "AAAA"}}),
    "jwk-rsa": lambda s, m, p: _token(_header(s, jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB"}), _claims(s, m, p)),
    "jwk-short-x": lambda s, m, p: _token(
        _header(s, jwk={"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}), _claims(s, m, p)
    ),
    "wrong-htm": lambda s, m, p: _signed(s, m, p, htm="PATCH"),
    "lowercase-htm-other": lambda s, m, p: _signed(s, m, p, htm="get" if m == "POST" else "post"),
    "wrong-htu": lambda s, m, p: _signed(s, m, p, htu=s.url + "/v1/other"),
    "htu-other-host": lambda s, m, p: _signed(s, m, p, htu="http://evil.example" + p),
    "htu-not-string": lambda s, m, p: _signed(s, m, p, htu=5),
    "stale": lambda s, m, p: _signed(s, m, p, iat=int(time.time()) - 3600),
    "future": lambda s, m, p: _signed(s, m, p, iat=int(time.time()) + 3600),
    "iat-string": lambda s, m, p: _signed(s, m, p, iat="now"),
    "iat-bool": lambda s, m, p: _signed(s, m, p, iat=True),
    "iat-missing": lambda s, m, p: _signed(s, m, p, iat=None),
    "jti-short": lambda s, m, p: _signed(s, m, p, jti="x"),
    "jti-number": lambda s, m, p: _signed(s, m, p, jti=12345678),
    "jti-huge": lambda s, m, p: _signed(s, m, p, jti="j" * 300),
}

DPOP_500_REASON = (
    "src bug: dpop.DpopVerifier.verify calls jws.verify_signature, which raises a plain VerificationError "
    "(bad alg, crit, wrong signature); server.runtime_proof only catches DpopError, so the proof is "
    "answered 500 (and the connection dropped) instead of 401"
)

DPOP_500: dict[str, DpopCase] = {
    "alg-none": lambda s, m, p: _token(_header(s, alg="none"), _claims(s, m, p), b""),
    "alg-none-pyjwt": lambda s, m, p: jwt.encode(
        _claims(s, m, p), None, algorithm="none", headers={"typ": "dpop+jwt", "jwk": _header(s)["jwk"]}
    ),
    "alg-HS256": lambda s, m, p: _token(_header(s, alg="HS256"), _claims(s, m, p)),
    "crit": lambda s, m, p: _token(_header(s, crit=["exp"]), _claims(s, m, p)),
    "bad-signature": lambda s, m, p: _token(_header(s), _claims(s, m, p)),
    "short-signature": lambda s, m, p: _token(_header(s), _claims(s, m, p), b"x"),
    "other-keys-signature": lambda s, m, p: (
        _signed(s, m, p).rsplit(".", 1)[0] + "." + _b64(Ed25519PrivateKey.generate().sign(b"x"))
    ),
}

DPOP_TARGETS = [
    ("POST", "/v1/authorize"),
    ("POST", "/v1/permits/{permit}/consume"),
    ("GET", "/v1/approvals/{approval}"),
    ("GET", "/v1/bundles/{permit}"),
]


def dpop_targets(s: Target) -> list[tuple[str, str]]:
    return [(m, t) for m, t in DPOP_TARGETS if present(s, t)]


def _send_dpop(s: Target, method: str, template: str, proof: str) -> httpx.Response:
    path = path_of(s, template)
    body = json.dumps(s.body()).encode() if template == "/v1/authorize" else None
    headers = {"DPoP": proof, "Content-Type": "application/json"}
    return s.http.request(method, path, content=body, headers=headers)


@pytest.mark.parametrize("case", list(DPOP_REFUSED))
def test_invalid_dpop_is_401(server: Target, case: str) -> None:
    for method, template in dpop_targets(server):
        proof = DPOP_REFUSED[case](server, method, path_of(server, template))
        r = check(_send_dpop(server, method, template, proof))
        assert r.status_code == 401, (case, template, r.text)
    server.healthy()


@pytest.mark.parametrize(
    "case",
    [pytest.param(c) for c in DPOP_500],
)
def test_invalid_dpop_signature_is_401(server: Target, case: str) -> None:
    statuses = {}
    for method, template in dpop_targets(server):
        proof = DPOP_500[case](server, method, path_of(server, template))
        statuses[f"{method} {template}"] = _send_dpop(server, method, template, proof).status_code
    assert set(statuses.values()) == {401}, statuses


def test_invalid_dpop_signature_never_grants(server: Target) -> None:
    """Whatever the status today, a proof that does not verify never yields a decision or a consumed permit."""
    for case in DPOP_500.values():
        for method, template in dpop_targets(server):
            r = _send_dpop(server, method, template, case(server, method, path_of(server, template)))
            assert r.status_code >= 400, r.text
            assert r.headers["content-type"] == PROBLEM
    server.healthy()


def test_dpop_of_an_unenrolled_key(server: Target) -> None:
    stranger = Ed25519PrivateKey.generate()
    r = server.authorize(server.body(), DPoP=server.proof("POST", "/v1/authorize", stranger))
    # A stranger's key is refused before anything else is looked at (and its proof is not remembered).
    assert r.status_code == 403 and "not enrolled" in r.json()["detail"]
    kid = jws.jwk_thumbprint(stranger.public_key().public_bytes_raw())
    r = server.request(
        "POST",
        "/v1/authorize",
        json=server.body(runtimeKid=kid),
        headers={"DPoP": server.proof("POST", "/v1/authorize", stranger)},
    )
    assert r.status_code == 403 and "not enrolled" in r.json()["detail"]
    path = f"/v1/permits/{server.permit_id}/consume"
    r = server.request("POST", path, headers={"DPoP": server.proof("POST", path, stranger)})
    assert r.status_code == 403
    for template in ("/v1/approvals/{approval}", "/v1/bundles/{permit}"):
        if present(server, template):
            path = path_of(server, template)
            r = server.request("GET", path, headers={"DPoP": server.proof("GET", path, stranger)})
            assert r.status_code == 403, r.text
    server.healthy()


def test_dpop_replay_is_refused(server: Target) -> None:
    proof = server.proof("POST", "/v1/authorize")
    first = server.request("POST", "/v1/authorize", json=server.body(), headers={"DPoP": proof})
    again = server.request("POST", "/v1/authorize", json=server.body(), headers={"DPoP": proof})
    assert first.status_code == 200 and again.status_code == 401
    assert "replay" in again.json()["detail"]


def test_a_proof_for_another_authority_is_refused_whatever_the_host_header(server: Target) -> None:
    """htu is compared with the authority's public URL, never with one built from ``Host`` (RFC 9449 §4.3 step 9)."""
    for host in ("evil.example", f"evil.example:{server.port}", f"localhost:{server.port}"):
        proof = make_proof(server.key, "POST", f"http://{host}/v1/authorize")
        r = server.request("POST", "/v1/authorize", json=server.body(), headers={"DPoP": proof, "Host": host})
        assert r.status_code == 401 and "htu" in r.json()["detail"], (host, r.text)
    server.healthy()


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Proto": "https"},
        {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "proto=https;host=evil.example"},
        {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
    ],
    ids=["x-forwarded-proto", "with-for", "forwarded", "x-forwarded-host"],
)
def test_forwarded_headers_from_an_untrusted_peer_change_nothing(server: Target, headers: dict[str, str]) -> None:
    """No proxy is configured (``server.trusted_proxies`` is empty), so 127.0.0.1 is not one either: a
    proof for the https URL (or another host) that forwarded headers would make up is refused; one
    for the real URL is accepted with the same headers."""
    https = server.url.replace("http://", "https://", 1)
    for htu in (https + "/v1/authorize", "https://evil.example/v1/authorize"):
        proof = make_proof(server.key, "POST", htu)
        r = server.request("POST", "/v1/authorize", json=server.body(), headers={"DPoP": proof, **headers})
        assert r.status_code == 401 and "htu" in r.json()["detail"], (htu, r.text)
    r = server.request(
        "POST", "/v1/authorize", json=server.body(), headers={"DPoP": server.proof("POST", "/v1/authorize"), **headers}
    )
    assert r.status_code == 200, r.text


def test_non_ascii_and_control_bytes_in_headers(server: Target) -> None:
    body = json.dumps(server.body()).encode()
    for value in (b"\xe9.\xe9.\xe9", b"\xff" * 100, b"a\x01b.c.d", b"\x7f"):
        data = head(server, "POST", "/v1/authorize", [("Content-Length", str(len(body)))])
        status, headers, rbody = raw_request(server.port, data + b"DPoP: " + value + b"\r\n\r\n" + body)
        assert 400 <= status < 500, rbody[:300]
        if status != 400 or headers.get("content-type", "").startswith(PROBLEM):
            assert_problem(status, headers["content-type"], rbody, "DPoP " + repr(value))
        status, headers, rbody = raw_request(
            server.port,
            head(server, "POST", "/v1/revocations", [("Content-Length", "2")])
            + b"Authorization: Bearer "
            + value
            + b"\r\n\r\n{}",
        )
        assert 400 <= status < 500
    server.healthy()


def test_two_dpop_headers_are_refused(server: Target) -> None:
    proofs = [("DPoP", server.proof("POST", "/v1/authorize")), ("DPoP", server.proof("POST", "/v1/authorize"))]
    r = server.http.post("/v1/authorize", json=server.body(), headers=proofs)
    assert r.status_code == 401, r.text


# -- bearer tokens --------------------------------------------------------------------------------


def bearer_variants(token: str) -> list[str]:
    return [
        "",
        "Bearer",
        "Bearer x",
        "Bearer null",
        f"Bearer {token[:-1]}",
        f"Bearer {token}x",
        f"Bearer {token.upper()}",
        f"Bearer {token[::-1]}",
        f"Basic {token}",
        f"Basic {base64.b64encode(f'admin:{token}'.encode()).decode()}",
        f"DPoP {token}",
        token,
        f"Bearer{token}",
        f"Bearer\t{token}",
        f"Bearer {token} {token}",
        f"Bearer {token},Bearer x",
        f"Bearer {'a' * 8000}",
        "Bearer " + "é" * 10,
    ]


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("POST", "/v1/revocations"),
        ("POST", "/v1/enrollments"),
        ("POST", "/v1/policies"),
        ("GET", "/v1/approvals/{approval}"),
        ("GET", "/v1/bundles/{permit}"),
    ],
)
def test_invalid_bearer_tokens_are_401(server: Target, method: str, template: str) -> None:
    require(server, template)
    path = path_of(server, template)
    key = base64.urlsafe_b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).rstrip(b"=").decode()
    bodies = {
        "/v1/revocations": {"kind": "principal", "target": "agent:release-bot", "reason": "must not happen"},
        "/v1/enrollments": {"role": "runtime", "name": "intruder", "publicKey": key},
        "/v1/policies": {
            "files": {f.name: base64.b64encode(f.read_bytes()).decode() for f in sorted(EXAMPLES.iterdir())}
        },
    }
    for value in bearer_variants(server.token):
        headers = {"Authorization": value.encode("utf-8")} if value else {}
        r = server.request(method, path, json=bodies.get(template), headers=headers)
        if method == "GET" and not value:
            assert r.status_code == 401 and "DPoP" in r.json()["detail"]  # no credentials: asks for DPoP
            continue
        assert r.status_code == 401, (value[:40], r.text)
    server.healthy()


# -- the Cedar context: floats, nulls, out-of-range numbers ---------------------------------------

CONTEXTS = [
    '{"replicas": 3.0}',
    '{"replicas": 1.5}',
    '{"replicas": 1e1}',
    '{"replicas": -0.0}',
    '{"replicas": null}',
    '{"replicas": [null]}',
    '{"replicas": {"a": null}}',
    '{"version": null, "replicas": 3}',
    '{"a": 1e308}',
    '{"a": 1e400}',
    '{"a": -1e400}',
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": -Infinity}',
    '{"a": 5e-324}',
    '{"a": 9007199254740993}',
    '{"a": 9223372036854775808}',
    '{"a": -9223372036854775809}',
    '{"a": 18446744073709551616}',
    '{"a": 1' + "0" * 400 + "}",
    '{"a": "\\ud800"}',
    '{"\\udfff": 1}',
    '{"a": "\\u0000"}',
    '{"": 1}',
    '{"a": 1, "a": 2.5}',
    '{"replicas": true}',
    '{"replicas": "3"}',
    '{"replicas": [3]}',
    '{"input": {"replicas": 1}}',
    '{"fiat": {"environment": {"verified": true}}}',
]


@pytest.mark.parametrize("context", CONTEXTS)
def test_floats_nulls_and_odd_numbers_in_the_context(server: Target, context: str) -> None:
    body = json.dumps(server.body(context={}, evidence=evidence())).replace('"context": {}', f'"context": {context}')
    r = server.authorize(content=body.encode())
    if r.status_code == 200:
        doc = r.json()
        assert doc["decision"] == "deny", doc  # never granted
        assert isinstance(doc["decisionLogIndex"], int) and doc["decisionLogIndex"] < server.log_size()
        assert doc["permit"] is None
    else:
        assert 400 <= r.status_code < 500
    server.healthy()


def test_the_callers_context_cannot_forge_the_authoritys_facts(server: Target) -> None:
    # The caller's context sits under context.input; a forged "fiat" member does not verify the environment.
    ctx = {"version": "1", "replicas": 3, "fiat": {"environment": {"verified": True, "digest": "x"}}}
    r = server.authorize(server.body(context=ctx))
    assert r.status_code == 200 and r.json()["decision"] == "deny", r.text


# -- hostile admin payloads -------------------------------------------------------------------------


def test_policy_file_names_and_contents(server: Target) -> None:
    b64 = base64.b64encode
    cases: list[dict[str, str]] = [
        {},
        {"": b64(b"x").decode()},
        {".hidden.cedar": "AAAA"},
        {"..": "AAAA"},
        {"../x.cedar": "AAAA"},
        {"a/b.cedar": "AAAA"},
        {"a\\b.cedar": "AAAA"},
        {"/etc/passwd": "AAAA"},
        {"x.cedar": "!!!"},
        {"x.cedar": "AAA"},
        {"x.cedar": b64(b"permit(").decode()},
        {"x.cedar": b64(b"\xff\xfe").decode(), "schema.cedarschema": ""},
        {"x.cedar": b64(b"permit(principal, action, resource);").decode()},  # no schema
        {"x.txt": "AAAA"},
    ]
    for files in cases:
        r = server.post_raw("/v1/policies", json.dumps({"files": files}).encode(), "admin")
        assert r.status_code in (400, 422), (files, r.text)
    assert server.http.get("/healthz").json()["policyVersion"] == 1
    server.healthy()


def test_policy_file_name_too_long_is_400(server: Target) -> None:
    r = server.http.post(
        "/v1/policies",
        json={"files": {"a" * 300 + ".cedar": "AAAA"}},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert r.status_code == 400, r.text


def test_policy_file_name_with_a_lone_surrogate_is_400(server: Target) -> None:
    r = server.http.post(
        "/v1/policies",
        content=b'{"files": {"\\ud800.cedar": "AAAA"}}',
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("template", ["/v1/approvals/{approval}", "/v1/receipts"])
def test_hostile_envelopes(server: Target, template: str) -> None:
    require(server, template)
    path = path_of(server, template)
    b64 = lambda d: base64.b64encode(d).decode()  # noqa: E731
    stmt = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "action-request", "digest": {"sha256": "0" * 64}}],
        "predicateType": "https://fiat.local/predicate/approval/v1",
        "predicate": {"id": server.approval_id, "decision": "approve", "permit": {"jti": server.permit_id}},
    }
    payloads = [
        b"",
        b"{",
        b"[]",
        b"null",
        b"[" * 5000 + b"]" * 5000,
        json.dumps({**stmt, "_type": "x"}).encode(),
        json.dumps({**stmt, "subject": []}).encode(),
        json.dumps({**stmt, "subject": [{"name": "action-request", "digest": {"sha256": "zz"}}] * 65}).encode(),
        json.dumps({**stmt, "predicateType": "https://fiat.local/predicate/decision/v1"}).encode(),
        json.dumps({**stmt, "predicate": {"id": server.approval_id, "decision": ["approve"]}}).encode(),
        json.dumps({**stmt, "predicate": {"id": "apr_other", "decision": "approve"}}).encode(),
        json.dumps(stmt).encode(),  # bound to another action
        json.dumps({**stmt, "predicateType": "https://fiat.local/predicate/receipt/v1"}).encode(),
        json.dumps({**stmt, "predicate": {"permit": {"jti": ["x"]}}}).encode(),
        json.dumps({**stmt, "predicate": {"permit": "x"}}).encode(),
    ]
    envelopes: list[Any] = [
        {},
        {"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": []},
        {"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "!!"}]},
        {"payload": "!!", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AA=="}]},
        {"payload": "e30=", "payloadType": 5, "signatures": [{"sig": "AA=="}]},
        {"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "AA==", "keyid": 5}]},
        {"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "AA=="}] * 17},
        {"payload": "e30=", "payloadType": "x", "signatures": "AA=="},
        {"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "AA=="}], "extra": 1},
    ] + [
        {
            "payload": b64(p),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"keyid": server.kid, "sig": b64(server.key.sign(p))}, {"keyid": "k" * 5000, "sig": "AA=="}],
        }
        for p in payloads
    ]
    for env in envelopes:
        r = server.request("POST", path, json={"envelope": env})
        assert r.status_code in (400, 403, 404), (env, r.text)
    if template == "/v1/receipts":
        server.healthy()
        return
    # Unknown, odd and oversized approval ids.
    good = envelopes[-1]
    for approval in ("apr_unknown", "a" * 10_000, "%00", "..%2f..%2f"):
        r = server.request("POST", f"/v1/approvals/{approval}", json={"envelope": good})
        assert r.status_code in (401, 404), r.text
    # The approval is still pending, untouched by all of the above.
    r = server.request("GET", path, headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    server.healthy()


# -- fuzzing /v1/authorize --------------------------------------------------------------------------

_chars = st.characters()  # includes lone surrogates, controls, non-BMP
_text = st.text(_chars, max_size=24)
_scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | _text
)
_json = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_text, kids, max_size=4),
    max_leaves=16,
)


_name = st.text(_chars, min_size=1, max_size=40)


@st.composite
def authorize_bodies(draw: st.DrawFn, kid: str, fields_known: frozenset[str]) -> Any:
    mode = draw(st.integers(0, 3))
    if mode == 0:
        return draw(_json)  # anything at all
    if mode >= 2:
        # Well-typed: reaches the authority (request digest, Cedar, the log) rather than the validator.
        body: dict[str, Any] = {
            "principal": draw(st.sampled_from(["agent:release-bot", 'Agent::"x"', "user:alice"]) | _name),
            "action": draw(st.sampled_from(["deploy", "shell:run", "tool:refund", 'Action::"deploy"']) | _name),
            "resource": draw(st.sampled_from(["service:docs", "service:payments", "repo:fiat", "order:1"]) | _name),
            "context": draw(st.dictionaries(_text | st.sampled_from(["replicas", "version", "argv", "fiat"]), _json)),
            "runtimeKid": kid,
        }
        optional = {
            "parent": st.none() | st.text(_chars, max_size=256),
            "evidence": st.none() | st.fixed_dictionaries({"claims": st.dictionaries(_text, _json), "digest": _text}),
            "approvalId": st.none() | st.text(_chars, max_size=128),
        }
        if "renews" in fields_known:
            optional["renews"] = st.none() | st.text(_chars, max_size=256)
        for name, strategy in optional.items():
            if draw(st.booleans()):
                body[name] = draw(strategy)
        return body
    fields: dict[str, st.SearchStrategy[Any]] = {
        "principal": st.sampled_from(["agent:release-bot", 'Agent::"release-bot"', 'Agent::"x" || true'])
        | _text
        | _json,
        "action": st.sampled_from(["deploy", "shell:run", "tool:refund"]) | _text | _json,
        "resource": st.sampled_from(["service:docs", "service:payments", "repo:fiat", "order:1"]) | _text | _json,
        "context": st.dictionaries(_text, _json) | _json,
        "runtimeKid": st.just(kid) | _text | _json,
        "parent": st.none() | _text | _json,
        "evidence": st.none() | st.fixed_dictionaries({"claims": _json, "digest": _text}) | _json,
        "approvalId": st.none() | _text | _json,
    }
    loose = {}
    for name, strategy in fields.items():
        if draw(st.integers(0, 9)) > 0:  # mostly present
            loose[name] = draw(strategy)
    for extra in draw(st.lists(_text, max_size=2)):
        loose[extra] = draw(_json)
    return loose


def encode_body(body: Any, ascii_only: bool) -> bytes:
    # ensure_ascii=True turns lone surrogates into \udXXX escapes; False sends them as invalid UTF-8.
    text = json.dumps(body, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def test_fuzz_authorize(server: Target) -> None:
    seen: dict[int, int] = {}

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large],
    )
    @given(
        body=authorize_bodies(server.kid, frozenset(server.authorize_fields())), ascii_only=st.integers(0, 4).map(bool)
    )
    def fuzz(body: Any, ascii_only: bool) -> None:
        r = server.authorize(content=encode_body(body, ascii_only))
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        if r.status_code == 200:
            doc = r.json()
            assert doc["decision"] in ("allow", "deny", "pending"), doc
            assert isinstance(doc["decisionLogIndex"], int), doc
        else:
            assert r.status_code in (400, 401, 403), r.text

    fuzz()
    assert sum(seen.values()) >= 100, seen
    assert seen.get(400, 0) > 0 and seen.get(200, 0) > 0, seen
    server.healthy()


# -- nothing was lost ---------------------------------------------------------------------------------


def test_zz_nothing_was_lost(server: Target) -> None:
    server.healthy()
    # A valid request is still allowed, with a permit, logged.
    r = server.authorize(server.body(evidence=evidence(), context={"version": "9.9.9", "replicas": 2}))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["decision"] == "allow" and doc["permit"], doc
    assert doc["decisionLogIndex"] < server.log_size()
    # Its single permit can be used; the real one from the start still can too (nothing consumed it).
    for jti in (doc["permitId"], server.permit_id):
        path = f"/v1/permits/{jti}/consume"
        r = server.request("POST", path, headers={"DPoP": server.proof("POST", path)})
        assert r.status_code == 200 and r.json() == {"permitId": jti, "consumed": True}, r.text
    # No hostile request changed the policy, revoked the runtime or enrolled a key.
    assert server.http.get("/healthz").json()["policyVersion"] == 1
    metrics = server.http.get("/metrics").text
    assert re.search(r"^fiat_log_tree_size (\d+(\.\d+)?)$", metrics, re.M)
    from fiat.config import load_config
    from fiat.home import keyring

    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith("FIAT_"):
                mp.delenv(k)
        roles = sorted(r.role for r in keyring(load_config(server.home, require=True)).records)
    assert roles == ["authority", "log", "runtime"], roles
    server.healthy()
    # The tree only grew: the auditor remembered the starting checkpoint and checks consistency with it.
    p = fiat("log", "verify", "--url", server.url + "/log", "--vkey", server.vkey, "--home", server.auditor, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    assert report["verified"] is True
    assert report["previousSize"] is not None and report["previousSize"] <= server.sizes[0]
    assert report["treeSize"] >= max(server.sizes)
