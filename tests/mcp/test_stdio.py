"""The stdio face: the official SDK's stdio client starts ``fiat mcp -- python examples/mcp/server.py``.

Each test drives a real gateway process (``fiat mcp``) against a real ``fiat serve`` and a real
upstream process (``examples/mcp/server.py``, started by the gateway under containment), and
reads what the upstream recorded (every request and notification it received) to see what
reached it. Listing, allowed, denied and approval calls share one authority; the halt tests,
which revoke or change policy, each have their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from fiat.formats.encoding import json_digest
from fiat.mcp import result_digest
from support.mcp_gateway import (
    DESK,
    DESK_FOR_SUPPORT,
    EXAMPLES,
    GRACE_MS,
    HEARTBEAT_MS,
    PRINCIPAL,
    calls,
    gateway_env,
    host_pids,
    make_authority,
    process_gone,
    publish,
    receipt_of,
    records,
    revoke_principal,
    stdio_gateway_argv,
    verified_bundle,
    wait_for,
)
from support.processes import FiatServer, fiat_text, ok

SLACK = 1.0  # scheduling allowance on a loaded machine (seconds)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    server = make_authority(tmp_path_factory.mktemp("mcp-authority"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "faq.md").write_text("Refunds take three days.\n")
    return d


@asynccontextmanager
async def gateway(
    server: FiatServer, docs: Path, log: Path, *, mode: str = "auto", legacy_upstream: bool = False, **env: str
) -> AsyncIterator[Client]:
    argv = stdio_gateway_argv(server, docs, legacy_upstream=legacy_upstream)
    params = StdioServerParameters(command=sys.executable, args=argv, env=gateway_env(log, **env), cwd=str(docs.parent))
    async with Client(params, mode=mode) as client:
        yield client


def text_of(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def run(coro: Any, *args: Any) -> Any:
    return anyio.run(coro, *args)


# -- listing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "version"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
def test_listing_shows_only_tools_the_principal_could_be_permitted(
    authority: FiatServer, docs: Path, tmp_path: Path, mode: str, version: str
) -> None:
    """Both downstream revisions; purge_tickets (platform's alone) is not listed to a support agent."""
    log = tmp_path / "desk.log"

    async def main() -> tuple[str, list[str]]:
        async with gateway(authority, docs, log, mode=mode) as client:
            return client.protocol_version, [t.name for t in (await client.list_tools()).tools]

    got_version, names = run(main)
    assert got_version == version
    assert set(names) == DESK_FOR_SUPPORT, names
    assert "desk___purge_tickets" not in names
    # The upstream itself lists all six: the filter is the gateway's.
    assert any(r.get("method") == "tools/list" for r in records(log))


def test_listing_follows_a_policy_change(tmp_path: Path, docs: Path) -> None:
    """Cached per (principal, policy digest): a new policy version changes the next listing."""
    own = make_authority(tmp_path / "own", approver=False)
    try:
        bundle = tmp_path / "policy"
        subprocess.run(["cp", "-rL", str(EXAMPLES), str(bundle)], check=True)
        cedar = (bundle / "mcp.cedar").read_text().replace('Action::"desk___read_file", ', "")
        (bundle / "mcp.cedar").write_text(cedar)

        async def main() -> tuple[list[str], list[str]]:
            async with gateway(own, docs, tmp_path / "desk.log") as client:
                before = [t.name for t in (await client.list_tools()).tools]
                await anyio.to_thread.run_sync(publish, own, bundle)
                after = before
                with anyio.move_on_after(5):  # until a trust state names the new digest
                    while "desk___read_file" in (after := [t.name for t in (await client.list_tools()).tools]):
                        await anyio.sleep(0.1)
                return before, after

        before, after = run(main)
        assert "desk___read_file" in before and "desk___read_file" not in after, (before, after)
    finally:
        own.stop()


# -- allow, deny, approval ---------------------------------------------------------------------------------


def test_allowed_call_returns_the_result_and_its_bundle_verifies(
    authority: FiatServer, docs: Path, tmp_path: Path
) -> None:
    log = tmp_path / "desk.log"
    args = {"path": "faq.md"}

    async def main() -> types.CallToolResult:
        async with gateway(authority, docs, log) as client:
            return await client.call_tool("desk___read_file", args)

    result = run(main)
    assert not result.is_error, text_of(result)
    assert text_of(result) == "Refunds take three days.\n"
    assert [c["arguments"] for c in calls(log, "read_file")] == [args]
    meta = result.meta or {}
    permit_id, index = meta["fiat/permit"], meta["fiat/receipt"]
    assert isinstance(index, int)
    bundle = verified_bundle(authority, permit_id, tmp_path)
    receipt = receipt_of(bundle)
    assert receipt["outcome"] == "completed" and receipt["exitCode"] == 0
    assert receipt["argumentsDigest"] == {"sha256": json_digest(args)}
    assert receipt["resultDigest"] == {"sha256": result_digest(result)}
    assert receipt["containment"] == "namespace"
    request = bundle["actionRequest"]
    assert request["action"] == "desk___read_file" and request["resource"] == 'McpServer::"desk"'
    assert request["context"] == args and request["principal"] == PRINCIPAL


def test_spooled_receipts_answer_before_the_upload_and_are_logged_right_after(
    authority: FiatServer, docs: Path, tmp_path: Path
) -> None:
    """[mcp] receipts = "spooled": the result comes back once the receipt is durably spooled (no
    log index yet); the upload follows off the call's path, and the bundle then verifies."""
    log = tmp_path / "desk.log"
    args = {"path": "faq.md"}

    def logged(permit_id: str) -> bool:
        out = tmp_path / "b.json"
        if fiat_text("bundle", permit_id, "--home", authority.home, "-o", out).returncode != 0:
            return False
        try:
            receipt_of(json.loads(out.read_text()))
        except AssertionError:
            return False
        return True

    async def main() -> types.CallToolResult:
        async with gateway(authority, docs, log, FIAT_MCP_RECEIPTS="spooled") as client:
            result = await client.call_tool("desk___read_file", args)
            # The gateway stays up while its upload thread logs the receipt.
            permit_id = (result.meta or {})["fiat/permit"]
            await anyio.to_thread.run_sync(lambda: wait_for(lambda: logged(permit_id), what="the receipt logged"))
            return result

    result = run(main)
    assert not result.is_error, text_of(result)
    meta = result.meta or {}
    assert meta.get("fiat/receipt") is None  # no log index yet (a null member is not sent)
    receipt = receipt_of(verified_bundle(authority, meta["fiat/permit"], tmp_path))
    assert receipt["outcome"] == "completed"
    assert receipt["resultDigest"] == {"sha256": result_digest(result)}


def test_denied_call_is_a_tool_error_and_never_reaches_the_upstream(
    authority: FiatServer, docs: Path, tmp_path: Path
) -> None:
    log = tmp_path / "desk.log"

    async def main() -> types.CallToolResult:
        async with gateway(authority, docs, log) as client:
            return await client.call_tool(
                "desk___refund", {"order_id": "48213", "amount_cents": 500000, "currency": "EUR"}
            )

    result = run(main)
    said = text_of(result)
    assert result.is_error
    assert said.startswith("Denied by policy: desk___refund was not called.")
    assert "no policy permits it" in said and "What would be needed:" in said
    assert 'Order::"48213"' in said  # the resource came from the order_id argument
    assert calls(log, "refund") == []


def test_missing_resource_argument_is_a_tool_error_without_a_request(
    authority: FiatServer, docs: Path, tmp_path: Path
) -> None:
    log = tmp_path / "desk.log"

    async def main() -> types.CallToolResult:
        async with gateway(authority, docs, log) as client:
            return await client.call_tool("desk___refund", {"amount_cents": 5, "currency": "EUR"})

    result = run(main)
    assert result.is_error and "order_id" in text_of(result), text_of(result)
    assert calls(log, "refund") == []


def test_approval_is_named_and_only_the_identical_retry_redeems_it(
    authority: FiatServer, docs: Path, tmp_path: Path
) -> None:
    log = tmp_path / "desk.log"
    args = {"order_id": "7001", "amount_cents": 50000, "currency": "EUR"}
    other = {**args, "amount_cents": 60000}

    async def main() -> list[types.CallToolResult]:
        async with gateway(authority, docs, log) as client:
            first = await client.call_tool("desk___refund", args)
            approval = (first.meta or {})["fiat/approval"]
            assert approval in text_of(first)
            again = await client.call_tool("desk___refund", args)  # still pending: the same approval
            assert (again.meta or {})["fiat/approval"] == approval and "group ops" in text_of(again)
            await anyio.to_thread.run_sync(
                lambda: ok(fiat_text("approve", approval, "--home", authority.home, "--url", authority.url))
            )
            different = await client.call_tool("desk___refund", other)
            same = await client.call_tool("desk___refund", args)
            return [first, different, same]

    first, different, same = run(main)
    said = text_of(first)
    assert first.is_error and "needs a human approval" in said and "group ops" in said
    assert "fiat approve apr_" in said and "exactly the same arguments" in said
    assert different.is_error and "needs a human approval" in text_of(different)
    assert (different.meta or {})["fiat/approval"] != (first.meta or {})["fiat/approval"]
    assert not same.is_error, text_of(same)
    assert "refunded 50000 EUR" in text_of(same)
    assert [c["arguments"] for c in calls(log, "refund")] == [args]  # only the approved call ran
    receipt = receipt_of(verified_bundle(authority, (same.meta or {})["fiat/permit"], tmp_path))
    assert receipt["argumentsDigest"] == {"sha256": json_digest(args)}


def test_approval_wait_holds_the_call_until_an_approver_decides(
    authority: FiatServer, docs: Path, tmp_path: Path
) -> None:
    """With ``[mcp] approval_wait_s`` the call waits for the approval instead of answering at once."""
    from fiat.api.client import AuthorityClient
    from fiat.config import load_config
    from fiat.formats.action import encode_action_request
    from fiat.home import keyring

    log = tmp_path / "desk.log"
    args = {"order_id": "7002", "amount_cents": 20000, "currency": "EUR"}
    digest = encode_action_request(PRINCIPAL, "desk___refund", 'Order::"7002"', args, None).digest
    _, key = keyring(load_config(authority.home, require=True)).signing_key("approver", "bob")

    def pending() -> str | None:
        with AuthorityClient(authority.url) as client:
            for a in client.approvals(key, status="pending"):
                if a["actionDigest"] == digest:
                    return str(a["id"])
        return None

    async def main() -> types.CallToolResult:
        async with gateway(authority, docs, log, FIAT_MCP_APPROVAL_WAIT_S="30") as client:
            box: list[types.CallToolResult] = []
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        box.append(await client.call_tool("desk___refund", args))

                    tg.start_soon(call)
                    approval = await anyio.to_thread.run_sync(lambda: wait_for(pending, 15, "the approval"))
                    assert calls(log, "refund") == []  # held, not called
                    await anyio.to_thread.run_sync(
                        lambda: ok(fiat_text("approve", approval, "--home", authority.home, "--url", authority.url))
                    )
            return box[0]

    result = run(main)
    assert not result.is_error and "refunded 20000 EUR" in text_of(result), text_of(result)
    assert [c["arguments"] for c in calls(log, "refund")] == [args]


@pytest.mark.parametrize("legacy_upstream", [True, False])
def test_both_upstream_revisions(authority: FiatServer, docs: Path, tmp_path: Path, legacy_upstream: bool) -> None:
    """The gateway speaks 2025-11-25 to an upstream that only has the handshake, 2026-07-28 to one that has it."""
    log = tmp_path / "desk.log"

    async def main() -> types.CallToolResult:
        async with gateway(authority, docs, log, legacy_upstream=legacy_upstream) as client:
            return await client.call_tool("desk___create_ticket", {"title": "printer on fire"})

    result = run(main)
    assert not result.is_error and "ticket T-1 opened" in text_of(result)
    (call,) = calls(log, "create_ticket")
    assert call["version"] == ("2025-11-25" if legacy_upstream else "2026-07-28")
    assert any(r.get("method") == "initialize" for r in records(log)) is legacy_upstream


# -- halts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy_upstream", [True, False])
def test_revocation_mid_call_cancels_the_upstream_request(docs: Path, tmp_path: Path, legacy_upstream: bool) -> None:
    """Revoking the principal while slow_task runs: the agent gets the halt; the upstream got
    ``notifications/cancelled`` for that request and stopped; its tree was ended after the grace."""
    own = make_authority(tmp_path / "own", approver=False)
    log = tmp_path / "desk.log"
    try:

        async def main() -> tuple[types.CallToolResult, float, float]:
            async with gateway(own, docs, log, legacy_upstream=legacy_upstream) as client:
                with anyio.fail_after(25):
                    tg_ = anyio.create_task_group()
                async with tg_ as tg:
                    box: list[types.CallToolResult] = []

                    async def call() -> None:
                        box.append(await client.call_tool("desk___slow_task", {"seconds": 30}))

                    tg.start_soon(call)
                    await anyio.to_thread.run_sync(lambda: wait_for(lambda: calls(log, "slow_task"), what="the call"))
                    upstream.update(host_pids(str(DESK), str(docs)))
                    revoked = time.monotonic()
                    await anyio.to_thread.run_sync(revoke_principal, own, PRINCIPAL, "test: mid-call")
                return box[0], revoked, time.monotonic()

        upstream: set[int] = set()
        result, revoked, answered = run(main)
        said = text_of(result)
        assert result.is_error and said.startswith("Halted at revocation:"), said
        assert "was revoked" in said and "test: mid-call" in said
        assert answered - revoked < (HEARTBEAT_MS * 2 + GRACE_MS) / 1000 + 2.0 + SLACK
        got = records(log)
        assert len(calls(log, "slow_task")) == 1
        cancels = [r for r in got if r.get("method") == "notifications/cancelled"]
        assert cancels, got
        assert any(r["event"] == "cancelled" and r["tool"] == "slow_task" for r in got)  # it really stopped
        assert upstream and all(process_gone(pid) for pid in upstream)
        receipt = receipt_of(verified_bundle(own, (result.meta or {})["fiat/permit"], tmp_path))
        assert receipt["outcome"] == "halted" and receipt["haltReason"].startswith("revocation:")
    finally:
        own.stop()


def test_a_tool_ignoring_cancellation_is_killed_and_the_upstream_restarted(docs: Path, tmp_path: Path) -> None:
    """A policy change that no longer permits stubborn_task halts it; the tool ignores the
    cancellation, so the upstream's tree is killed after the grace (its heartbeat file stops, its
    process is gone), and the next call is served by a fresh upstream."""
    own = make_authority(tmp_path / "own", approver=False)
    log, beat = tmp_path / "desk.log", tmp_path / "beat"
    bundle = tmp_path / "policy"
    subprocess.run(["cp", "-rL", str(EXAMPLES), str(bundle)], check=True)
    (bundle / "mcp.cedar").write_text(
        (bundle / "mcp.cedar").read_text().replace('Action::"desk___stubborn_task", ', "")
    )
    try:

        async def main() -> tuple[types.CallToolResult, types.CallToolResult, float, float]:
            async with gateway(own, docs, log) as client:
                box: list[types.CallToolResult] = []
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        box.append(
                            await client.call_tool("desk___stubborn_task", {"seconds": 60, "heartbeat_file": str(beat)})
                        )

                    tg.start_soon(call)
                    await anyio.to_thread.run_sync(lambda: wait_for(beat.exists, what="the heartbeat file"))
                    upstream.update(host_pids(str(DESK), str(docs)))
                    changed = time.monotonic()
                    await anyio.to_thread.run_sync(publish, own, bundle)
                answered = time.monotonic()
                after = await client.call_tool("desk___create_ticket", {"title": "after the kill"})
                return box[0], after, changed, answered

        upstream: set[int] = set()
        halted, after, changed, answered = run(main)
        said = text_of(halted)
        assert halted.is_error and said.startswith("Halted at "), said
        assert "process tree" in said and "killed" in said
        (stubborn,) = calls(log, "stubborn_task")
        assert upstream and all(process_gone(pid) for pid in upstream)
        last = beat.stat().st_mtime
        time.sleep(0.3)
        assert beat.stat().st_mtime == last  # nothing of the killed tree writes any more
        assert answered - changed < 3.0 + GRACE_MS / 1000 + SLACK  # trust-state push, re-authorization, grace
        assert not after.is_error, text_of(after)
        (ticket,) = calls(log, "create_ticket")
        assert ticket["instance"] != stubborn["instance"]  # a restarted upstream served it
        receipt = receipt_of(verified_bundle(own, (halted.meta or {})["fiat/permit"], tmp_path))
        assert receipt["outcome"] == "halted"
    finally:
        own.stop()


def test_the_python_api_governs_calls_in_process(authority: FiatServer, docs: Path, tmp_path: Path) -> None:
    """``fiat.mcp.Gateway`` as docs/mcp.md shows it (what the bench and the demo drive)."""
    from fiat.config import load_config
    from fiat.mcp import Gateway, settings
    from support.processes import clean_env

    log = tmp_path / "desk.log"
    config = settings.one_server(
        "desk",
        command=[sys.executable, str(DESK), "--root", str(docs)],
        env={"MCP_DESK_LOG": str(log)},
        tools={"refund": {"resource_argument": "order_id", "resource_type": "Order"}},
    )

    async def main() -> tuple[list[str], Any, Any, dict[str, Any]]:
        with clean_env():
            gw = Gateway(load_config(authority.home, require=True), config, url=authority.url)
        await gw.start()
        try:
            names = [t.name for t in await gw.list_tools(PRINCIPAL)]
            allowed = await gw.govern(PRINCIPAL, "desk___read_file", {"path": "faq.md"})
            denied = await gw.govern(
                PRINCIPAL, "desk___refund", {"order_id": "1", "amount_cents": 10**6, "currency": "EUR"}
            )
            assert gw.governor is not None  # GET /v1/bundles/{permit id}, proven with the gateway runtime's key
            governor = gw.governor
            fetched = await anyio.to_thread.run_sync(governor.client.bundle, governor.runtime.key, allowed.permit_id)
            return names, allowed, denied, fetched
        finally:
            await gw.close()

    names, allowed, denied, fetched = run(main)
    assert set(names) == DESK_FOR_SUPPORT
    assert allowed.outcome == "completed" and isinstance(allowed.receipt_index, int) and allowed.permit_id
    assert denied.outcome == "denied" and denied.result.is_error and denied.permit_id is None
    assert [c["tool"] for c in calls(log)] == ["read_file"]
    root = tmp_path / "trust-root.json"
    ok(fiat_text("trust-root", "export", "--home", authority.home, "-o", root))
    (tmp_path / "fetched.json").write_text(json.dumps(fetched))
    verified = fiat_text("verify", tmp_path / "fetched.json", "--trust-root", root, "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["verified"] is True, verified.stdout


def test_cli_refuses_a_gateway_without_principal_or_upstream(authority: FiatServer) -> None:
    p = fiat_text("mcp", "--home", authority.home, "--", sys.executable, "-c", "pass")
    assert p.returncode == 2 and "--principal" in p.stderr, p.stderr
    p = fiat_text("mcp", "--principal", PRINCIPAL, "--home", authority.home)
    assert p.returncode == 2 and "no upstream server" in p.stderr, p.stderr
    p = fiat_text("mcp", "serve", "--home", authority.home)
    assert p.returncode == 2 and "--config" in p.stderr, p.stderr


def test_default_server_name_comes_from_the_command() -> None:
    from fiat.cli.mcp import default_name

    assert default_name(["python", "examples/mcp/server.py", "--root", "x"]) == "server"
    assert default_name(["npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"]) == "server-filesystem"
    assert default_name(["/usr/local/bin/github-mcp"]) == "github-mcp"
    assert json.dumps(default_name(["a___b"])) == '"a-b"'
