"""`fiat demo` (what `make run` runs): the five scenarios behave as designed, for real."""

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
    assert out.count("✓ verified") == 4, out
    # The evidence on disk verifies independently of the demo's own check.
    root = TrustRoot.parse((home / "trust-root.json").read_bytes())
    bundles = sorted((home / "evidence").glob("*.json"))
    assert len(bundles) == 4
    outcomes = []
    for path in bundles:
        bundle = Bundle.parse(path.read_bytes())
        assert verify(bundle, root).verified, path
        receipt = next(s for s in bundle.statements if s.statement.predicate_type.endswith("/receipt/v1"))
        outcomes.append(receipt.statement.predicate["outcome"])
    assert sorted(outcomes) == ["completed", "completed", "halted", "halted"]


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
