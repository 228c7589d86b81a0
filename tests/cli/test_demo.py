"""`fiat demo` (what `make run` runs): the five `fiat run` scenarios and the agent session through the
MCP gateway behave as designed, for real."""

from __future__ import annotations

import socket
from pathlib import Path

from fiat.verify import Bundle, TrustRoot, verify
from support.processes import fiat_text, free_port


def test_demo_plays_every_scenario_and_verifies_the_evidence(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    proc = fiat_text(
        "demo", "--home", home, "--port", str(free_port()), "--no-serve", env={"COLUMNS": "200"}, timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for outcome in ("completed", "denied", "halted at revocation", "halted at environment"):
        assert outcome in out, out
    # The agent session: each tool call's row, the model-readable denial, the delegation refusal.
    for row in (
        "MCP: allowed tool call",
        "MCP: denied tool call",
        "MCP: approval granted, retry completed",
        "MCP: revoked mid-call, halted",
        "MCP: delegated sub-agent, parent revoked, halted",
        "MCP: the planner's session (parent), halted",
    ):
        assert row in out, out
    assert "the model reads:" in out and "Denied by policy: desk___refund was not called. Why:" in out, out
    assert "outside the planner's scope" in out and "delegation refused" in out, out
    assert "covered by the revocation of" in out, out
    assert out.count("✓ verified") == 9, out
    # The demo home's page controls need no admin token (fiat.api.routes.demo).
    assert "\ndemo_controls = true\n" in (home / "fiat.toml").read_text()
    # The evidence on disk verifies independently of the demo's own check.
    root = TrustRoot.parse((home / "trust-root.json").read_bytes())
    bundles = sorted((home / "evidence").glob("*.json"))
    assert len(bundles) == 9
    outcomes, parents = [], {}
    for path in bundles:
        bundle = Bundle.parse(path.read_bytes())
        assert verify(bundle, root).verified, path
        receipt = next(s for s in bundle.statements if s.statement.predicate_type.endswith("/receipt/v1"))
        outcomes.append(receipt.statement.predicate["outcome"])
        parents[path.name] = bundle.action_request.get("parent")
    assert sorted(outcomes) == ["completed"] * 4 + ["halted"] * 5
    delegated = [name for name, parent in parents.items() if parent]
    assert len(delegated) == 1 and "delegated" in delegated[0], parents
    # the tool calls' receipts carry the digests of their arguments and results
    calls = [p for p in bundles if "desk" in p.name]
    assert len(calls) == 4
    for path in calls:
        receipt = next(
            s for s in Bundle.parse(path.read_bytes()).statements if s.statement.predicate_type.endswith("/receipt/v1")
        )
        assert set(receipt.statement.predicate["argumentsDigest"]) == {"sha256"}
        assert set(receipt.statement.predicate["resultDigest"]) == {"sha256"}


def test_demo_on_a_busy_port_says_so_and_does_nothing(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    with socket.socket() as busy:  # somebody else's server
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = fiat_text("demo", "--home", home, "--port", str(port), "--no-serve", env={"COLUMNS": "200"}, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"port {port} is already in use" in proc.stderr and "--port" in proc.stderr, proc.stderr
    assert "trust" not in proc.stderr, proc.stderr  # not a misleading trust failure
    assert not home.exists()  # nothing was set up against the wrong server
