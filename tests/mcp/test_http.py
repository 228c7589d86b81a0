"""The HTTP face: ``fiat mcp serve --config FILE`` reached by the SDK's streamable-HTTP client.

One real gateway process serves two upstreams: ``desk`` (a stdio server it starts contained,
which only speaks the 2025-11-25 handshake) and ``helpdesk`` (the same example server over
streamable HTTP, on the 2026-07-28 revision, given the gateway's own credential). Agents
authenticate with OAuth bearer JWTs of a test issuer (an Ed25519 key in a JWKS file) whose
``aud`` must be the gateway's resource URL. The last test revokes the support agent.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from fiat.formats import jws
from fiat.formats.encoding import json_digest
from fiat.mcp import result_digest
from support.mcp_gateway import (
    DESK,
    DESK_FOR_SUPPORT,
    PRINCIPAL,
    calls,
    gateway_env,
    make_authority,
    receipt_of,
    records,
    revoke_principal,
    verified_bundle,
    wait_for,
)
from support.processes import FIAT, FiatServer, cli_env, free_port

ISSUER = "https://issuer.test"
UPSTREAM_CREDENTIAL = "Bearer upstream-credential-for-helpdesk"
HELPDESK_FOR_SUPPORT = {"helpdesk___create_ticket", "helpdesk___slow_task"}


@dataclass
class Deployment:
    authority: FiatServer
    url: str  # the gateway's MCP endpoint (its resource URL)
    key: Ed25519PrivateKey
    desk_log: Path
    helpdesk_log: Path
    proc: subprocess.Popen[bytes]
    output: Path

    def token(self, sub: str = "support-assistant", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": self.url, "sub": sub, "iat": now, "exp": now + 300, "scope": "tools", **claims}
        header = {"alg": "EdDSA", "kid": "issuer-1", "typ": "at+jwt"}
        return jws.sign_with_header(header, json.dumps(body).encode(), self.key)


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, output: Path | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {output.read_text() if output else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}: {output.read_text() if output else ''}")


def start_gateway(config: Path, authority: FiatServer, log: Path, output: Path, port: int) -> subprocess.Popen[bytes]:
    """``fiat mcp serve --config CONFIG`` against ``authority``, once it listens on ``port``."""
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [*FIAT, "mcp", "serve", "--config", str(config), "--home", str(authority.home), "--url", authority.url],
            env=gateway_env(log),
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
        )
    _wait_port(port, proc, output)
    return proc


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("mcp-http")
    authority = make_authority(root)
    docs = root / "docs"
    docs.mkdir()
    (docs / "faq.md").write_text("Refunds take three days.\n")
    key = Ed25519PrivateKey.generate()
    jwk = {**jws.jwk(key.public_key().public_bytes_raw()), "kid": "issuer-1"}
    (root / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    desk_log, helpdesk_log = root / "desk.log", root / "helpdesk.log"
    upstream_port, port = free_port(), free_port()
    helpdesk = subprocess.Popen(
        [sys.executable, str(DESK), "--root", str(docs), "--http", str(upstream_port)],
        env=cli_env(MCP_DESK_LOG=str(helpdesk_log)),
    )
    config = root / "gateway.toml"
    config.write_text(
        f"""
[gateway]
host = "127.0.0.1"
port = {port}

[identity]
issuer = "{ISSUER}"
jwks = "jwks.json"

[servers.desk]
command = {json.dumps([sys.executable, str(DESK), "--root", str(docs), "--legacy-only"])}

[servers.desk.tools.refund]
resource_argument = "order_id"
resource_type = "Order"

[servers.helpdesk]
url = "http://127.0.0.1:{upstream_port}/mcp"
headers = {{ Authorization = "{UPSTREAM_CREDENTIAL}" }}
"""
    )
    output = root / "gateway.out"
    proc = None
    try:
        _wait_port(upstream_port, helpdesk, None)
        proc = start_gateway(config, authority, desk_log, output, port)
        yield Deployment(authority, f"http://127.0.0.1:{port}/mcp", key, desk_log, helpdesk_log, proc, output)
    finally:
        for p in (proc, helpdesk):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        authority.stop()


@asynccontextmanager
async def agent(d: Deployment, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30.0, read=60.0))
    async with http, Client(streamable_http_client(d.url, http_client=http), mode=mode) as client:
        yield client


def text_of(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


# -- identity (MCP Authorization: the gateway is an OAuth 2.1 resource server) -------------------------------


def test_no_token_is_401_with_the_protected_resource_metadata(deployment: Deployment) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    r = httpx.post(deployment.url, json=body, headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    port = deployment.url.split(":")[2].split("/")[0]
    metadata_url = f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in challenge
    metadata = httpx.get(metadata_url).json()  # RFC 9728 §3
    assert metadata["resource"] == deployment.url
    assert [s.rstrip("/") for s in metadata["authorization_servers"]] == [ISSUER]


@pytest.mark.parametrize(
    ("why", "claims"),
    [
        ("another audience", {"aud": "http://127.0.0.1:1/mcp"}),
        ("another issuer", {"iss": "https://rogue.test"}),
        ("expired", {"exp": int(time.time()) - 3600}),
        ("no subject", {"sub": None}),
    ],
)
def test_a_token_not_for_this_gateway_is_401(deployment: Deployment, why: str, claims: dict[str, Any]) -> None:
    token = deployment.token(**claims)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}"}
    r = httpx.post(deployment.url, json=body, headers=headers)
    assert r.status_code == 401, (why, r.text)


def test_a_token_signed_by_another_key_is_401(deployment: Deployment) -> None:
    forged = Deployment(**{**deployment.__dict__, "key": Ed25519PrivateKey.generate()}).token()
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {forged}"}
    r = httpx.post(deployment.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
    assert r.status_code == 401


# -- listing, calls, both revisions -----------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "version"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
def test_listing_namespaces_both_upstreams_per_principal(deployment: Deployment, mode: str, version: str) -> None:
    async def main(sub: str) -> tuple[str, set[str]]:
        async with agent(deployment, deployment.token(sub), mode) as client:
            return client.protocol_version, {t.name for t in (await client.list_tools()).tools}

    got_version, support = anyio.run(main, "support-assistant")
    assert got_version == version
    assert support == DESK_FOR_SUPPORT | HELPDESK_FOR_SUPPORT, support
    _, platform = anyio.run(main, "release-bot")
    assert platform == {"desk___purge_tickets"}, platform


def test_call_through_the_http_upstream_never_forwards_the_agent_token(deployment: Deployment, tmp_path: Path) -> None:
    token = deployment.token()
    args = {"title": "VPN down", "body": "since noon"}

    async def main() -> types.CallToolResult:
        async with agent(deployment, token, "legacy") as client:
            return await client.call_tool("helpdesk___create_ticket", args)

    result = anyio.run(main)
    assert not result.is_error and "opened: VPN down" in text_of(result), text_of(result)
    got = records(deployment.helpdesk_log)
    assert got and {r["authorization"] for r in got if r["event"] == "request"} == {UPSTREAM_CREDENTIAL}
    assert token not in deployment.helpdesk_log.read_text()
    assert [c["version"] for c in calls(deployment.helpdesk_log, "create_ticket")][-1] == "2026-07-28"
    receipt = receipt_of(verified_bundle(deployment.authority, (result.meta or {})["fiat/permit"], tmp_path))
    assert receipt["argumentsDigest"] == {"sha256": json_digest(args)}
    assert receipt["resultDigest"] == {"sha256": result_digest(result)}
    assert "containment" not in receipt  # not a process of the gateway's


def test_call_through_the_stdio_upstream_speaks_its_handshake(deployment: Deployment) -> None:
    async def main() -> types.CallToolResult:
        async with agent(deployment, deployment.token()) as client:
            return await client.call_tool("desk___read_file", {"path": "faq.md"})

    result = anyio.run(main)
    assert not result.is_error and text_of(result) == "Refunds take three days.\n"
    assert calls(deployment.desk_log, "read_file")[-1]["version"] == "2025-11-25"
    assert all(r["authorization"] is None for r in records(deployment.desk_log))


def test_denied_over_http_names_the_reason(deployment: Deployment) -> None:
    async def main() -> types.CallToolResult:
        async with agent(deployment, deployment.token("release-bot")) as client:
            return await client.call_tool("helpdesk___create_ticket", {"title": "x"})

    result = anyio.run(main)
    assert result.is_error and text_of(result).startswith("Denied by policy:"), text_of(result)
    assert not [c for c in calls(deployment.helpdesk_log, "create_ticket") if c["arguments"] == {"title": "x"}]


def test_a_static_identity_needs_no_token(deployment: Deployment, tmp_path: Path) -> None:
    """``static = "agent:release-bot"``: every request is that principal (trusted local set-ups)."""
    port = free_port()
    config = tmp_path / "static.toml"
    desk = [sys.executable, str(DESK), "--root", str(tmp_path)]
    config.write_text(
        f'[gateway]\nport = {port}\n[identity]\nstatic = "agent:release-bot"\n'
        f"[servers.desk]\ncommand = {json.dumps(desk)}\n"
    )
    proc = start_gateway(config, deployment.authority, tmp_path / "desk.log", tmp_path / "out", port)
    try:

        async def main() -> tuple[set[str], types.CallToolResult]:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                names = {t.name for t in (await client.list_tools()).tools}
                return names, await client.call_tool("desk___purge_tickets", {})

        names, purged = anyio.run(main)
        assert names == {"desk___purge_tickets"}
        assert not purged.is_error and "every ticket deleted" in text_of(purged)
    finally:
        proc.terminate()
        proc.wait(10)


# -- last: revokes the support agent -----------------------------------------------------------------------


def test_revocation_mid_call_cancels_the_http_upstream_request(deployment: Deployment) -> None:
    """At 2026-07-28 the cancellation is the closed request stream; the upstream's handler stops."""
    before = len(calls(deployment.helpdesk_log, "slow_task"))

    async def main() -> types.CallToolResult:
        async with agent(deployment, deployment.token()) as client:
            box: list[types.CallToolResult] = []
            with anyio.fail_after(25):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        box.append(await client.call_tool("helpdesk___slow_task", {"seconds": 30}))

                    tg.start_soon(call)
                    await anyio.to_thread.run_sync(
                        lambda: wait_for(lambda: len(calls(deployment.helpdesk_log, "slow_task")) > before)
                    )
                    await anyio.to_thread.run_sync(revoke_principal, deployment.authority, PRINCIPAL, "test: http")
            return box[0]

    result = anyio.run(main)
    assert result.is_error and text_of(result).startswith("Halted at revocation:"), text_of(result)
    wait_for(lambda: any(r["event"] == "cancelled" for r in records(deployment.helpdesk_log)), 5, "the cancellation")
