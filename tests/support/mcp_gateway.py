"""Shared parts of the MCP gateway tests (``tests/mcp``): an authority with the example policy, the
example upstream (``examples/mcp/server.py``) and what it recorded, bundles fetched and verified.

Every gateway is a real ``fiat mcp`` child process reached by the official SDK's client; every
upstream a real ``desk`` server process; every authority a real ``fiat serve``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fiat
from fiat.formats.statement import RECEIPT
from support import REPO
from support.processes import FIAT, FiatServer, cli_env, fiat_text, ok

EXAMPLES = Path(fiat.__file__).resolve().parent / "examples" / "policies"
DESK = REPO / "examples" / "mcp" / "server.py"
PRINCIPAL = "agent:support-assistant"  # in Team::"support" (examples/policies/entities.json)
PLATFORM = "agent:release-bot"  # in Team::"platform"
HEARTBEAT_MS, GRACE_MS, TRUST_INTERVAL_MS = 100, 500, 100
#: What a support agent may call on the desk (mcp.cedar); purge_tickets is platform's alone.
DESK_FOR_SUPPORT = {
    "desk___create_ticket",
    "desk___read_file",
    "desk___refund",
    "desk___slow_task",
    "desk___stubborn_task",
}


def make_authority(root: Path, approver: bool = True) -> FiatServer:
    """A fresh home (the shipped example policies, an approver ``bob`` of group ops) and its ``fiat serve``."""
    home = root / "home"
    ok(fiat_text("init", "--home", home, "--json"))
    ok(fiat_text("policy", "publish", EXAMPLES, "--home", home, "--json"))
    server = FiatServer(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": str(TRUST_INTERVAL_MS)}).start()
    if approver:
        ok(fiat_text("keys", "add", "--role", "approver", "--name", "bob", "--group", "ops", "--home", home))
    return server


def gateway_env(log: Path, **more: str) -> dict[str, str]:
    """The gateway's environment: short heartbeat and grace; the upstream logs to ``log``."""
    return cli_env(
        MCP_DESK_LOG=str(log),
        FIAT_RUNTIME_HEARTBEAT_MS=str(HEARTBEAT_MS),
        FIAT_RUNTIME_HALT_GRACE_MS=str(GRACE_MS),
        **more,
    )


def stdio_gateway_argv(
    server: FiatServer, docs: Path, *, principal: str = PRINCIPAL, legacy_upstream: bool = False
) -> list[str]:
    """``fiat mcp --principal P --name desk ... -- python examples/mcp/server.py --root DOCS``."""
    return [
        *FIAT[1:],
        *("mcp", "--principal", principal, "--name", "desk", "--resource-argument", "refund=order_id:Order"),
        *("--home", str(server.home), "--url", server.url, "--"),
        sys.executable,
        str(DESK),
        *("--root", str(docs)),
        *(("--legacy-only",) if legacy_upstream else ()),
    ]


def records(log: Path) -> list[dict[str, Any]]:
    """What the upstream recorded, one dict per line (see examples/mcp/server.py)."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def calls(log: Path, tool: str | None = None) -> list[dict[str, Any]]:
    return [r for r in records(log) if r.get("method") == "tools/call" and (tool is None or r.get("tool") == tool)]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def process_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def verified_bundle(server: FiatServer, permit_id: str, where: Path) -> dict[str, Any]:
    """``fiat bundle`` of the call's permit, checked by ``fiat verify`` (exit 0); returns the bundle."""
    bundle, root = where / f"{permit_id}.json", where / "trust-root.json"
    ok(fiat_text("bundle", permit_id, "--home", server.home, "-o", bundle))
    if not root.exists():
        ok(fiat_text("trust-root", "export", "--home", server.home, "-o", root))
    verified = fiat_text("verify", bundle, "--trust-root", root, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["verified"] is True
    return dict(json.loads(bundle.read_text()))


def receipt_of(bundle: dict[str, Any]) -> dict[str, Any]:
    """The receipt predicate of a bundle (its DSSE payload decoded)."""
    import base64

    for s in bundle["statements"]:
        payload = json.loads(base64.b64decode(s["envelope"]["payload"]))
        if payload["predicateType"] == RECEIPT:
            return dict(payload["predicate"])
    raise AssertionError("no receipt in the bundle")


def revoke_principal(server: FiatServer, principal: str, reason: str) -> None:
    """Revoke ``principal`` through the admin API (in-process: no CLI start-up in a timing)."""
    from fiat.api.client import AuthorityClient
    from fiat.keys.admin_token import read_admin_token

    with AuthorityClient(server.url) as client:
        client.revoke(read_admin_token(server.home / "keys"), "principal", principal, reason)


def host_pids(*needles: str) -> set[int]:
    """Live processes of this host whose command line holds every one of ``needles`` (from ``/proc``)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and all(n in cmdline for n in needles) and "bwrap" not in cmdline:
            found.add(int(entry.name))
    return found


def publish(server: FiatServer, bundle: Path) -> None:
    """Publish a policy bundle through the admin API (in-process: no CLI start-up in a timing)."""
    import base64

    from fiat.api.client import AuthorityClient
    from fiat.authorize.policy import read_bundle_files
    from fiat.keys.admin_token import read_admin_token

    files = {k: base64.b64encode(v).decode() for k, v in read_bundle_files(bundle).items()}
    with AuthorityClient(server.url) as client:
        client.publish(read_admin_token(server.home / "keys"), files)
