"""Delegation through the gateway, and the example agent (``examples/mcp/agent.py``).

A planner (``agent:planner``) runs under a real ``fiat run`` with a ``--scope``; its sub-agent
(``agent:researcher``) reaches the desk through ``fiat mcp --parent`` (docs/mcp.md, "A sub-agent";
docs/formats.md, "Delegation"): every tool call's permit is a child of the planner's permit,
attenuated by the authority, and a revocation of the planner's permit covers it. Every part is
real: ``fiat serve``, ``fiat run``, the gateway process, the desk process, the SDK's client.

The halt test starts the sub-agent's gateway outside the planner's process tree: the planner's
own guard halts its whole tree at the same revocation (SIGTERM to every process), which would race
the gateway's answer; here the gateway's guard alone must find the covering revocation.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from support import REPO
from support.mcp_gateway import (
    DESK,
    GRACE_MS,
    HEARTBEAT_MS,
    calls,
    gateway_env,
    make_authority,
    receipt_of,
    records,
    stdio_gateway_argv,
    verified_bundle,
    wait_for,
)
from support.processes import FIAT, FiatServer, cli_env, free_port

AGENT = REPO / "examples" / "mcp" / "agent.py"
PLANNER, RESEARCHER = "agent:planner", "agent:researcher"
DESK_SERVER = 'McpServer::"desk"'
SCOPE = [f"desk___read_file@{DESK_SERVER}", f"desk___slow_task@{DESK_SERVER}"]


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    server = make_authority(tmp_path_factory.mktemp("delegation-authority"), approver=False)
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


def agent_argv(server: FiatServer, docs: Path, *more: str, as_json: bool = True) -> list[str]:
    return [
        sys.executable, str(AGENT), *(("--json",) if as_json else ()), "--home", str(server.home),
        "--url", server.url, "--root", str(docs), *more,
    ]  # fmt: skip


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]


def claims(bundle: dict[str, Any]) -> dict[str, Any]:
    payload = bundle["permit"]["token"].split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_example_agent_lists_calls_and_prints_model_readable_results(
    authority: FiatServer, docs: Path, tmp_path: Path
) -> None:
    """``examples/mcp/agent.py`` (its default calls) against the real gateway and authority."""
    (docs / "README.md").write_text("# the desk\n")
    p = subprocess.run(
        agent_argv(authority, docs), env=gateway_env(tmp_path / "desk.log"), capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stdout + p.stderr
    got = lines(p.stdout)
    assert "desk___refund" in got[0]["tools"] and "desk___purge_tickets" not in got[0]["tools"]
    read, ticket, small, large = got[1:]
    assert read["text"] == "# the desk\n" and not read["isError"]
    assert ticket["text"].startswith("ticket T-1 opened") and small["permit"].startswith("pmt_")
    assert large["isError"] and large["permit"] is None
    assert large["text"].startswith("Denied by policy: desk___refund was not called. Why:")
    receipt = receipt_of(verified_bundle(authority, small["permit"], tmp_path))
    assert receipt["outcome"] == "completed"
    human = subprocess.run(
        agent_argv(authority, docs, "--call", 'desk___read_file={"path": "faq.md"}', as_json=False),
        env=gateway_env(tmp_path / "desk.log"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert human.returncode == 0, human.stderr
    assert "> desk___read_file" in human.stdout and "Refunds take three days." in human.stdout
    assert "[permit pmt_" in human.stdout


def test_a_sub_agent_under_fiat_run_gets_child_permits_within_the_parents_scope(
    authority: FiatServer, docs: Path, tmp_path: Path
) -> None:
    """planner: ``fiat run --scope ... -- agent.py --principal agent:researcher --parent env``: the
    in-scope read is a child permit (ancestor in its bundle, ``act`` planner → researcher, verified);
    the out-of-scope ticket is refused ``delegation refused`` and never reaches the desk."""
    log = tmp_path / "desk.log"
    argv = [
        *FIAT, "run", "--json", "--home", str(authority.home), "--url", authority.url,
        "--principal", PLANNER, "--action", "mcp:session", "--resource", DESK_SERVER,
        *(x for s in SCOPE for x in ("--scope", s)), "--",
        *agent_argv(authority, docs, "--principal", RESEARCHER, "--parent", "env",
                    "--call", 'desk___read_file={"path": "faq.md"}', "--call", 'desk___create_ticket={"title": "x"}'),
    ]  # fmt: skip
    # A nested gateway needs the home, which namespace containment hides from the command.
    p = subprocess.run(
        argv, env=gateway_env(log, FIAT_RUNTIME_CONTAINMENT="process"), capture_output=True, text=True, timeout=120
    )
    result = json.loads(p.stdout)
    assert result["outcome"] == "completed", p.stdout + p.stderr
    got = lines(p.stderr)  # under --json the command's stdout goes to stderr
    read, ticket = got[1], got[2]
    assert read["text"] == "Refunds take three days.\n" and not read["isError"]
    assert ticket["isError"] and ticket["permit"] is None
    assert "delegation refused" in ticket["text"] and "scope" in ticket["text"], ticket["text"]
    assert "ask the agent that started this one" in ticket["text"]
    assert [c["tool"] for c in calls(log)] == ["read_file"]
    bundle = verified_bundle(authority, read["permit"], tmp_path)
    assert bundle["actionRequest"]["parent"] == result["permitId"]
    assert [claims(a)["jti"] for a in bundle["ancestors"]] == [result["permitId"]]
    child = claims(bundle)
    assert child["sub"] == PLANNER and child["act"] == {"sub": RESEARCHER}
    assert child["exp"] <= claims(bundle["ancestors"][0])["exp"]


def test_gateway_parent_option_is_checked(authority: FiatServer, docs: Path) -> None:
    env = cli_env()
    env.pop("FIAT_PERMIT_ID", None)
    for value, said in (("env", "FIAT_PERMIT_ID is not set"), ("not-a-permit", "is not a permit id")):
        p = subprocess.run(
            [*FIAT, "mcp", "--principal", RESEARCHER, "--parent", value, "--home", str(authority.home), "--",
             sys.executable, str(DESK)],
            env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert p.returncode == 2 and said in p.stderr, p.stderr


def test_revoking_the_parent_halts_the_sub_agents_call_in_flight(docs: Path, tmp_path: Path) -> None:
    """The planner's permit revoked while the researcher's slow_task runs: the call returns the halt
    (covered by the planner's revocation), the desk got ``notifications/cancelled``; the next call
    is refused; the halted receipt's bundle (with its ancestor) verifies; the planner halted too."""
    own = make_authority(tmp_path / "own", approver=False)
    log, pid_file = tmp_path / "desk.log", tmp_path / "planner-permit"
    planner = subprocess.Popen(
        [*FIAT, "run", "--json", "--home", str(own.home), "--url", own.url,
         "--principal", PLANNER, "--action", "mcp:session", "--resource", DESK_SERVER,
         *(x for s in SCOPE for x in ("--scope", s)), "--",
         sys.executable, "-c",
         "import os, sys, time; open(sys.argv[1], 'w').write(os.environ['FIAT_PERMIT_ID']); time.sleep(60)",
         str(pid_file)],
        env=gateway_env(log), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        parent = wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=30, what="the planner's permit")
        argv = stdio_gateway_argv(own, docs, principal=RESEARCHER)
        at = argv.index("--")
        argv[at:at] = ["--parent", parent]

        async def main() -> tuple[types.CallToolResult, types.CallToolResult, float]:
            params = StdioServerParameters(
                command=sys.executable, args=argv, env=gateway_env(log), cwd=str(docs.parent)
            )
            async with Client(params) as client:
                box: list[types.CallToolResult] = []
                with anyio.fail_after(30):
                    async with anyio.create_task_group() as tg:

                        async def call() -> None:
                            box.append(await client.call_tool("desk___slow_task", {"seconds": 30}))

                        tg.start_soon(call)
                        await anyio.to_thread.run_sync(lambda: wait_for(lambda: calls(log, "slow_task")))
                        revoked = time.monotonic()
                        await anyio.to_thread.run_sync(revoke_permit, own, parent)
                    answered = time.monotonic() - revoked
                    later = await client.call_tool("desk___read_file", {"path": "faq.md"})
                return box[0], later, answered

        halted, later, answered = anyio.run(main)
        said = " ".join(c.text for c in halted.content if isinstance(c, types.TextContent))
        assert halted.is_error and said.startswith("Halted at revocation:"), said
        assert f"covered by the revocation of permit {parent}" in said, said
        assert answered < (HEARTBEAT_MS * 2 + GRACE_MS) / 1000 + 3.0
        assert any(r.get("method") == "notifications/cancelled" for r in records(log))
        refused = " ".join(c.text for c in later.content if isinstance(c, types.TextContent))
        assert later.is_error and "delegation refused" in refused and parent in refused, refused
        bundle = verified_bundle(own, (halted.meta or {})["fiat/permit"], tmp_path)
        assert receipt_of(bundle)["outcome"] == "halted"
        assert bundle["actionRequest"]["parent"] == parent and len(bundle["ancestors"]) == 1
        out, _ = planner.communicate(timeout=30)
        assert planner.returncode == 124 and json.loads(out)["outcome"] == "halted"
    finally:
        if planner.poll() is None:
            planner.kill()
            planner.wait()
        own.stop()


def revoke_permit(server: FiatServer, permit: str) -> None:
    from fiat.api.client import AuthorityClient
    from fiat.keys.admin_token import read_admin_token

    with AuthorityClient(server.url) as client:
        client.revoke(read_admin_token(server.home / "keys"), "permit", permit, "test: the planner is stopped")


def test_the_desktop_config_and_gateway_toml_are_valid() -> None:
    """The shipped client config starts ``fiat mcp`` for the desk; gateway.toml loads."""
    from fiat.cli.mcp import default_name
    from fiat.mcp import settings

    doc = json.loads((REPO / "examples" / "mcp" / "claude_desktop_config.json").read_text())
    desk = doc["mcpServers"]["desk"]
    assert desk["command"] == "fiat" and desk["args"][0] == "mcp"
    upstream = desk["args"][desk["args"].index("--") + 1 :]
    assert default_name(upstream) == "server" and Path(upstream[1]).name == "server.py"
    cfg = settings.load(REPO / "examples" / "mcp" / "gateway.toml")
    assert cfg.identity is not None and cfg.identity.static == "agent:support-assistant"
    assert cfg.servers["desk"].tools["refund"].resource_argument == "order_id"
    assert os.path.basename(str(cfg.servers["desk"].command[1])) == "server.py"


def test_example_agent_over_http_against_the_shipped_gateway_toml(authority: FiatServer, tmp_path: Path) -> None:
    """``fiat mcp serve --config examples/mcp/gateway.toml`` (its port and interpreter substituted,
    run from the repository root as it says) reached by ``agent.py --http``."""
    port = free_port()
    shipped = (REPO / "examples" / "mcp" / "gateway.toml").read_text()
    assert "port = 8760" in shipped and 'command = ["python", ' in shipped
    config = tmp_path / "gateway.toml"
    config.write_text(
        shipped.replace("port = 8760", f"port = {port}").replace('["python", ', f"[{json.dumps(sys.executable)}, ")
    )
    out = tmp_path / "gateway.out"
    with out.open("wb") as sink:
        gateway = subprocess.Popen(
            [*FIAT, "mcp", "serve", "--config", str(config), "--home", str(authority.home), "--url", authority.url],
            env=gateway_env(tmp_path / "desk.log"), stdout=sink, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
    try:
        wait_for(lambda: gateway.poll() is not None or b"serving" in out.read_bytes(), 30, "the gateway")
        assert gateway.poll() is None, out.read_text()
        p = subprocess.run(
            [sys.executable, str(AGENT), "--json", "--http", f"http://127.0.0.1:{port}/mcp",
             "--call", 'desk___read_file={"path": "README.md"}', "--call", 'desk___purge_tickets={}'],
            env=cli_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout + p.stderr
        tools, read, purge = lines(p.stdout)
        assert "desk___read_file" in tools["tools"] and "desk___purge_tickets" not in tools["tools"]
        assert read["text"].startswith("# The MCP example") and read["permit"].startswith("pmt_")
        assert purge["isError"] and purge["text"].startswith("Denied by policy"), purge
        assert receipt_of(verified_bundle(authority, read["permit"], tmp_path))["outcome"] == "completed"
    finally:
        gateway.terminate()
        gateway.wait(10)
