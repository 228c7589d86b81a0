"""``POST /v1/authorize/permissible`` against a real ``fiat serve``: which pairs could ever be permitted.

A home from ``fiat init`` (plus an approver key from ``fiat keys add``) publishes the small
bundle of :mod:`support.permissible` with ``fiat policy publish``; ``fiat serve`` listens on
127.0.0.1. Calls go through :meth:`AuthorityClient.permissible` (DPoP, RFC 9449, with the
home's runtime key) or raw httpx for the attacks: no proof, a proof of an unenrolled key, of
an enrolled key that is not a runtime key, a proof for another URL, too many candidates.
The tests share one server and run in file order (the last one revokes the runtime key).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.api.client import AuthorityClient, ClientError
from fiat.authorize.dpop import make_proof
from fiat.authorize.policy import load_bundle
from fiat.keys.keyring import KeyRing
from support.permissible import write_bundle
from support.processes import FiatServer, ok
from support.processes import fiat_text as fiat

PATH = "/v1/authorize/permissible"
PROBLEM = "application/problem+json"


@dataclass
class Served:
    home: Path
    url: str
    client: AuthorityClient
    runtime: Ed25519PrivateKey
    approver: Ed25519PrivateKey
    digest: str

    @property
    def admin(self) -> str:
        return (self.home / "keys" / "admin.token").read_text(encoding="utf-8").strip()

    def raw(self, body: Any, key: Ed25519PrivateKey | None, url: str | None = None) -> httpx.Response:
        headers = {} if key is None else {"DPoP": make_proof(key, "POST", url or self.url + PATH)}
        return httpx.post(self.url + PATH, json=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    where = tmp_path_factory.mktemp("permissible-http")
    home, bundle = where / "home", write_bundle(where / "policies")
    ok(fiat("init", "--home", home))
    ok(fiat("keys", "add", "--role", "approver", "--name", "alice", "--group", "ops", "--home", home))
    ok(fiat("policy", "publish", bundle, "--home", home))
    ring = KeyRing(home / "keys")
    _, runtime = ring.signing_key("runtime")
    _, approver = ring.signing_key("approver", "alice")
    with FiatServer(home) as server, AuthorityClient(server.url) as client:
        yield Served(home, server.url, client, runtime, approver, load_bundle(bundle).digest)


def problem(r: httpx.Response, status: int, needle: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and needle.lower() in body["detail"].lower(), body


PAIRS = [
    ("pay", "tool:payments"),  # permitted only when context.input.amount_cents < 5000
    ("pay", "tool:other"),  # no policy permits pay on another tool
    ("read", "tool:x"),  # permitted to Team::"ops"; bob is in it (entities.json)
    ("wipe", "tool:x"),  # permitted, and forbidden without a condition
    ("burn", "tool:x"),  # permitted to carol only
    ("ship", "tool:x"),  # permitted; forbidden only when shipping to mars
    ("peek", "tool:x"),  # a @shadow permit only
    ("unheard-of", "tool:x"),  # no policy names it
]


def test_each_rule_over_http(served: Served) -> None:
    digest, flags = served.client.permissible(served.runtime, "agent:bob", PAIRS)
    assert digest == served.digest
    assert flags == [True, False, True, False, False, True, False, False]
    _, flags = served.client.permissible(served.runtime, 'Agent::"carol"', PAIRS)
    assert flags == [True, False, False, False, True, True, False, False]
    assert served.client.permissible(served.runtime, "agent:bob", []) == (served.digest, [])


def test_listing_is_no_grant(served: Served) -> None:
    """Permissible pay on payments, yet a call over the bound is denied on its real arguments."""
    ctx = {"amount_cents": 9000}
    r = served.client.authorize(
        served.runtime,
        runtime_kid(served),
        {"principal": "agent:bob", "action": "pay", "resource": "tool:payments", "context": ctx},
    )
    assert r["decision"] == "deny"
    r = served.client.authorize(
        served.runtime,
        runtime_kid(served),
        {"principal": "agent:bob", "action": "pay", "resource": "tool:payments", "context": {"amount_cents": 10}},
    )
    assert r["decision"] == "allow"


def runtime_kid(served: Served) -> str:
    return KeyRing(served.home / "keys").signing_key("runtime")[0].kid


def test_a_revoked_principal_is_permitted_nothing(served: Served) -> None:
    assert served.client.permissible(served.runtime, "agent:erin", [("pay", "tool:payments")])[1] == [True]
    served.client.revoke(served.admin, "principal", 'Agent::"erin"', "left the team")  # the other spelling
    assert served.client.permissible(served.runtime, "agent:erin", PAIRS)[1] == [False] * len(PAIRS)


def test_without_a_proof_it_is_refused(served: Served) -> None:
    body = {"principal": "agent:bob", "candidates": [{"action": "read", "resource": "tool:x"}]}
    problem(served.raw(body, None), 401, "")
    problem(served.raw(body, served.runtime, url=served.url + "/v1/authorize"), 401, "")  # a proof for another URL


def test_a_key_that_is_not_an_enrolled_runtime_key_is_refused(served: Served) -> None:
    body = {"principal": "agent:bob", "candidates": [{"action": "read", "resource": "tool:x"}]}
    problem(served.raw(body, Ed25519PrivateKey.generate()), 403, "not enrolled")
    problem(served.raw(body, served.approver), 403, "not enrolled")  # enrolled, but an approver's
    with pytest.raises(ClientError) as refused:
        served.client.permissible(Ed25519PrivateKey.generate(), "agent:bob", [("read", "tool:x")])
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"principal": "agent:bob", "candidates": [{"action": "read", "resource": "tool:x"}] * 1025}, "candidates"),
        ({"principal": "agent:bob", "candidates": [{"action": "read"}]}, "resource"),
        ({"principal": "agent:bob", "candidates": [{"action": "read", "resource": "tool:x", "x": 1}]}, "extra"),
        ({"principal": "", "candidates": []}, "principal"),
        ({"principal": "nobody", "candidates": []}, "principal"),
        ({"principal": "agent:bob", "candidates": [{"action": "read", "resource": "tool"}]}, "resource"),
    ],
)
def test_malformed_bodies_are_400_problems(served: Served, body: dict[str, Any], needle: str) -> None:
    problem(served.raw(body, served.runtime), 400, needle)


def test_1024_candidates_are_answered(served: Served) -> None:
    digest, flags = served.client.permissible(
        served.runtime, "agent:bob", [("read", f"tool:t{i}") for i in range(1024)]
    )
    assert digest == served.digest and flags == [True] * 1024


def test_a_version_another_process_publishes_is_followed(served: Served, tmp_path: Path) -> None:
    """`fiat policy publish --home` (no server involved) makes @shadow peek enforced: the server follows it."""
    bundle = write_bundle(tmp_path / "policies")
    (bundle / "shadow.cedar").write_text('@id("peek")\npermit(principal, action == Action::"peek", resource);\n')
    ok(fiat("policy", "publish", bundle, "--home", served.home))
    digest, flags = served.digest, [False]
    deadline = time.monotonic() + 10
    while digest == served.digest and time.monotonic() < deadline:
        time.sleep(0.2)
        digest, flags = served.client.permissible(served.runtime, "agent:bob", [("peek", "tool:x")])
    assert digest == load_bundle(bundle).digest != served.digest
    assert flags == [True]


def test_a_revoked_runtime_key_is_refused(served: Served) -> None:  # last: the key stays revoked
    served.client.revoke(served.admin, "runtime", runtime_kid(served), "compromised")
    with pytest.raises(ClientError) as refused:
        served.client.permissible(served.runtime, "agent:bob", [("read", "tool:x")])
    assert refused.value.status == 403 and "revoked" in str(refused.value)
