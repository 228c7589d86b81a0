"""The verifier must not overstate (issue 11): what a receipt claims, the rest of the bundle may refute.

Each attack is a real bundle: the permit and decision logged by a real home, revocations and
the receipt signed, logged and bundled by its real authority (``support.receipts``), the
receipt signed by the permit's own runtime key (whoever holds it can claim anything). The
rules are in docs/formats.md, "What a receipt may claim", and in ``fiat.verify.verifier``.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fiat.authorize.permit import Constraints
from fiat.enforce.governed import governed as fiat_governed
from fiat.errors import MalformedError
from fiat.formats.encoding import b64std, b64std_decode, b64url, b64url_decode
from fiat.formats.statement import RECEIPT
from fiat.tlog import note
from fiat.verify import Bundle, TrustRoot, VerificationResult, verify
from fiat.verify.trust_root import MAX_LINEAGE_DEPTH
from support import EXAMPLES
from support.evidence import Execution, make_execution, make_home
from support.processes import FiatServer, cli_env, fiat, ok
from support.receipts import Revoke, claimed_execution

#: A permit without maxDuration or heartbeatIntervalMs (a policy without those annotations).
PLAIN = Constraints()


def describe(result: VerificationResult) -> str:
    return "\n".join(f"{s.status:4} {s.name}: {s.detail}" for s in result.steps)


def fails_at(ex: Execution, step: str, says: str) -> None:
    result = verify(ex.bundle, ex.trust_root())
    assert result.failed is not None and result.failed.name == step, describe(result)
    assert says in result.failed.detail, describe(result)


def verifies(ex: Execution) -> VerificationResult:
    result = verify(ex.bundle, ex.trust_root())
    assert result.verified, describe(result)
    return result


@pytest.fixture
def t(tmp_path: Path) -> float:
    """The home (``tmp_path / "home"``) is made first; then the next whole second, from which on
    its keys are valid: the permit is issued then, the rest follows."""
    make_home(tmp_path / "home")
    return float(int(time.time()) + 1)


# -- the attack, whole ---------------------------------------------------------------------


def test_receipt_after_expiry_and_revocation_with_no_verifications_fails(tmp_path: Path, t: float) -> None:
    """Posted after the permit expired and was revoked: completed, 3,000 s past exp, zero verifications."""
    ex = claimed_execution(
        tmp_path / "home",
        now=t,
        constraints=PLAIN,
        revocations=[Revoke("permit", t + 10)],
        receipt={"end": t + 60 + 3000, "verifications": 0},
    )
    assert any(s.statement.predicate_type.endswith("/revocation/v1") for s in ex.bundle.statements)
    fails_at(ex, "receipt", "was revoked at")


# -- rule: revoked before the start ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["permit", "principal", "runtime"])
def test_execution_started_after_a_revocation_fails(tmp_path: Path, t: float, kind: str) -> None:
    ex = claimed_execution(
        tmp_path / "home",
        now=t,
        revocations=[Revoke(kind, t + 1)],
        receipt={
            "start": t + 20,
            "execution_start": t + 20,
            "end": t + 21,
            "outcome": "halted",
            "exit_code": None,
            "halt_reason": "revocation: revoked",
        },
    )
    fails_at(ex, "receipt", "a revoked permit never runs")


def test_execution_started_after_a_renewed_permit_was_revoked_fails(tmp_path: Path, t: float) -> None:
    first = make_execution(tmp_path / "home", now=t, with_receipt=False)
    ex = claimed_execution(
        tmp_path / "home",
        now=t,
        revocations=[Revoke("permit", t + 1, target=first.jti)],
        receipt={"start": t + 20, "execution_start": t + 20, "end": t + 22, "renewed_from": [first.jti]},
    )
    fails_at(ex, "receipt", f"the permit it renewed, {first.jti}")


def test_revocation_within_the_halt_bound_of_the_start_is_a_race_an_honest_guard_can_lose(
    tmp_path: Path, t: float
) -> None:
    """Revoked 3 s before the start (a guard may hold a trust state from before it): halted, verifies."""
    ex = claimed_execution(
        tmp_path / "home",
        now=t,
        revocations=[Revoke("permit", t + 1)],
        receipt={
            "start": t + 4,
            "execution_start": t + 4,
            "end": t + 5,
            "outcome": "halted",
            "exit_code": None,
            "halt_reason": "revocation: the permit was revoked",
        },
    )
    verifies(ex)


# -- rule: ran on after a revocation ---------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_run_that_did_not_halt_after_a_revocation_fails(tmp_path: Path, t: float, outcome: str) -> None:
    ex = claimed_execution(
        tmp_path / "home",
        now=t,
        revocations=[Revoke("permit", t + 10)],
        receipt={
            "end": t + 30,
            "verifications": 200,
            "outcome": outcome,
            "exit_code": 0 if outcome == "completed" else 3,
        },
    )
    fails_at(ex, "receipt", "without halting")


def test_run_halted_by_a_revocation_verifies_and_says_so(tmp_path: Path, t: float) -> None:
    ex = claimed_execution(
        tmp_path / "home",
        now=t,
        revocations=[Revoke("permit", t + 10)],
        receipt={
            "end": t + 11,
            "verifications": 40,
            "outcome": "halted",
            "exit_code": None,
            "halt_reason": "revocation: the permit was revoked: test",
        },
    )
    result = verifies(ex)
    assert (result.outcome, result.halt_reason) == ("halted", "revocation: the permit was revoked: test")


def test_revocation_after_the_end_refutes_nothing(tmp_path: Path, t: float) -> None:
    verifies(
        claimed_execution(
            tmp_path / "home", now=t, revocations=[Revoke("permit", t + 30), Revoke("principal", t + 31)], receipt={}
        )
    )


# -- rule: ended after the permit expired ----------------------------------------------------------


def test_completed_run_ending_after_the_permit_expired_fails(tmp_path: Path, t: float) -> None:
    ex = claimed_execution(
        tmp_path / "home", now=t, constraints=PLAIN, receipt={"end": t + 60 + 30, "verifications": 1000}
    )
    fails_at(ex, "receipt", "after the permit chain expired")


def test_halted_run_ending_after_the_permit_expired_verifies(tmp_path: Path, t: float) -> None:
    """A guard halts at expiry and then gives the action its grace: a halted end may lie past exp."""
    ex = claimed_execution(
        tmp_path / "home",
        now=t,
        constraints=PLAIN,
        receipt={
            "end": t + 60 + 30,
            "verifications": 240,
            "outcome": "halted",
            "exit_code": None,
            "halt_reason": "permit-expiry: the permit expired and was not renewed",
        },
    )
    verifies(ex)


# -- rule: too few verifications -------------------------------------------------------------------


def test_zero_verifications_for_a_3000_s_run_fails_even_without_a_recorded_heartbeat(tmp_path: Path, t: float) -> None:
    ex = claimed_execution(
        tmp_path / "home", now=t, ttl=3600, constraints=PLAIN, receipt={"end": t + 3000, "verifications": 0}
    )
    fails_at(ex, "receipt", "none recorded: the longest a guard accepts")


def test_verification_count_is_held_to_the_permits_heartbeat(tmp_path: Path, t: float) -> None:
    """250 ms heartbeat, 50 s run: at least floor(50 / 4) - 2 = 10 verifications."""
    home = tmp_path / "home"
    hb = Constraints(heartbeat_interval_ms=250)
    fails_at(
        claimed_execution(home, now=t, constraints=hb, receipt={"end": t + 50, "verifications": 9}),
        "receipt",
        "records at least 10",
    )
    verifies(claimed_execution(home, now=t, constraints=hb, receipt={"end": t + 50, "verifications": 10}))


def test_verification_count_is_held_to_the_receipts_own_heartbeat(tmp_path: Path, t: float) -> None:
    home = tmp_path / "home"
    claim = {"end": t + 50, "verifications": 0}
    # An older receipt (no heartbeatMs) under a permit without one: a 60 s heartbeat is assumed.
    verifies(claimed_execution(home, now=t, constraints=PLAIN, receipt=claim))
    fails_at(
        claimed_execution(home, now=t, constraints=PLAIN, receipt={**claim, "heartbeat_ms": 250}),
        "receipt",
        "the receipt's heartbeatMs",
    )


# -- rule: the outcome's own consistency -----------------------------------------------------------


def test_completed_with_a_nonzero_exit_code_fails(tmp_path: Path, t: float) -> None:
    fails_at(claimed_execution(tmp_path / "home", now=t, receipt={"exit_code": 1}), "receipt", "not 0")


def test_halted_without_a_reason_fails(tmp_path: Path, t: float) -> None:
    ex = claimed_execution(tmp_path / "home", now=t, receipt={"outcome": "halted", "exit_code": None})
    fails_at(ex, "receipt", "names no halt")


# -- lineage: linear in depth, capped by the trust root --------------------------------------------


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> list[Execution]:
    """A root execution and 24 generations of descendants, each minted with ``parent``."""
    home = tmp_path_factory.mktemp("lineage") / "home"
    chain = [make_execution(home)]
    for _ in range(24):
        chain.append(make_execution(home, parent=chain[-1].jti))
    return chain


def test_deep_lineage_verifies_in_linear_time(lineage: list[Execution]) -> None:
    deepest = lineage[-1]
    assert len(deepest.bundle.ancestors) == 24
    root = deepest.trust_root()
    start = time.perf_counter()
    result = verify(deepest.bundle, root)
    elapsed = time.perf_counter() - start
    assert result.verified, describe(result)
    # Before, each ancestor was verified once per descendant path (2^24 times for the root);
    # now once: 25 bundles of a few signatures and proofs each.
    assert elapsed < 2.0, f"{elapsed:.2f} s for a lineage of 24"


def test_lineage_deeper_than_the_trust_root_allows_fails(lineage: list[Execution]) -> None:
    ex = lineage[5]
    root = TrustRoot.parse(json.dumps({**ex.trust_root().to_json(), "maxLineageDepth": 4}).encode())
    result = verify(ex.bundle, root)
    assert result.failed is not None and result.failed.name == "lineage", describe(result)
    assert "5 ancestors deep; the trust root accepts at most 4 (maxLineageDepth)" in result.failed.detail
    assert verify(lineage[4].bundle, root).verified


def test_trust_root_lineage_depth_is_bounded_and_defaults_to_the_authoritys(lineage: list[Execution]) -> None:
    exported = lineage[0].trust_root().to_json()
    assert exported["maxLineageDepth"] == MAX_LINEAGE_DEPTH == 32
    older = {k: v for k, v in exported.items() if k != "maxLineageDepth"}
    assert TrustRoot.parse(json.dumps(older).encode()).max_lineage_depth == 32
    for bad in (33, -1, True, "8"):
        with pytest.raises(MalformedError, match="maxLineageDepth"):
            TrustRoot.parse(json.dumps({**exported, "maxLineageDepth": bad}).encode())


# -- base64: one spelling per value ----------------------------------------------------------------


def _unused_bits_set(text: str) -> str:
    """The same bytes, with the last character's unused low bits set (RFC 4648 §3.5)."""
    pad = len(text) - len(text.rstrip("="))
    assert pad in (1, 2), "no unused bits when the length is a multiple of 3"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    i = len(text) - pad - 1
    unused = 0b1111 if pad == 2 else 0b11
    return text[:i] + alphabet[alphabet.index(text[i]) | unused] + text[i + 1 :]


@given(st.binary(min_size=1, max_size=200).filter(lambda b: len(b) % 3 != 0))
def test_non_canonical_base64_is_refused_everywhere(data: bytes) -> None:
    canonical = b64std(data)
    flipped = _unused_bits_set(canonical)
    assert flipped != canonical and base64.b64decode(flipped) == data  # a lenient decoder accepts it
    assert b64std_decode(canonical, "t") == data
    assert note.b64decode_strict(canonical, "t") == data
    with pytest.raises(MalformedError, match="non-canonical"):
        b64std_decode(flipped, "t")
    with pytest.raises(MalformedError, match="non-canonical"):
        note.b64decode_strict(flipped, "t")
    # base64url (JWS, JWK): the same rule, unpadded.
    url = b64url(data)
    url_flipped = _unused_bits_set(canonical).rstrip("=").replace("+", "-").replace("/", "_")
    assert b64url_decode(url, "t") == data
    with pytest.raises(MalformedError, match="non-canonical"):
        b64url_decode(url_flipped, "t")


def test_dsse_payload_and_signature_with_unused_bits_set_are_refused(tmp_path: Path) -> None:
    """Every signature (64 bytes: 4 unused bits) and each payload whose length leaves unused bits;
    resources of three lengths make sure some decision payload does."""
    changed = {"payload": 0, "sig": 0}
    for extra in ("", "x", "xx"):
        bj = make_execution(tmp_path / "home", resource=f"service:payments{extra}").bundle_json()
        for i, statement in enumerate(bj["statements"]):
            env = statement["envelope"]
            for where, text in (("payload", env["payload"]), ("sig", env["signatures"][0]["sig"])):
                if len(base64.b64decode(text)) % 3 == 0:
                    continue
                tampered = json.loads(json.dumps(bj))
                target = tampered["statements"][i]["envelope"]
                if where == "payload":
                    target["payload"] = _unused_bits_set(text)
                else:
                    target["signatures"][0]["sig"] = _unused_bits_set(text)
                with pytest.raises(MalformedError, match="non-canonical"):
                    Bundle.parse(json.dumps(tampered).encode())
                changed[where] += 1
    assert changed["sig"] == 6 and changed["payload"] >= 1, changed


# -- the verdict line --------------------------------------------------------------------------------


def _verdict(tmp_path: Path, ex: Execution) -> tuple[str, dict[str, Any]]:
    bundle, root = tmp_path / "bundle.json", tmp_path / "root.json"
    bundle.write_text(json.dumps(ex.bundle_json()))
    root.write_text(json.dumps(ex.trust_root().to_json()))
    human = fiat("verify", bundle, "--trust-root", root)
    assert human.returncode == 0, human.stdout + human.stderr
    as_json = fiat("verify", bundle, "--trust-root", root, "--json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    lines = human.stdout.decode().strip().splitlines()
    return lines[-1], json.loads(as_json.stdout)


def test_verdict_of_a_halted_run_says_where_and_why(tmp_path: Path, t: float) -> None:
    reason = "revocation: the permit was revoked: test"
    ex = claimed_execution(
        tmp_path / "home",
        now=t,
        revocations=[Revoke("permit", t + 1)],
        receipt={"end": t + 2, "outcome": "halted", "exit_code": None, "halt_reason": reason},
    )
    line, report = _verdict(tmp_path, ex)
    assert line.startswith("verified: halted at revocation (the permit was revoked: test)"), line
    assert f"execution {ex.jti}" in line
    assert (report["outcome"], report["exitCode"], report["haltReason"]) == ("halted", None, reason)


def test_verdict_of_a_failed_run_gives_its_exit_code(tmp_path: Path, t: float) -> None:
    ex = claimed_execution(tmp_path / "home", now=t, receipt={"outcome": "failed", "exit_code": 3})
    line, report = _verdict(tmp_path, ex)
    assert line.startswith("verified: failed (exit 3)"), line
    assert (report["outcome"], report["exitCode"], report["haltReason"]) == ("failed", 3, None)


def test_verdict_of_a_completed_run(tmp_path: Path, t: float) -> None:
    ex = claimed_execution(tmp_path / "home", now=t, receipt={})
    line, report = _verdict(tmp_path, ex)
    assert line == f"verified: execution {ex.jti} completed (exit 0) (containment: not recorded)", line
    assert (report["outcome"], report["exitCode"]) == ("completed", 0)


# -- real runs: honest receipts still verify, and the verdict says how they ended --------------------

PERMIT_RE = re.compile(r"permit (pmt_[A-Za-z0-9_-]+)")


def _receipt(path: Path) -> dict[str, Any]:
    bundle = Bundle.parse(path.read_bytes())
    (receipt,) = (s.statement.predicate for s in bundle.statements if s.statement.predicate_type == RECEIPT)
    return dict(receipt)


def test_real_fiat_run_and_governed_receipts_verify(tmp_path: Path) -> None:
    """``fiat run`` (completed across a renewal, failed, halted by ``fiat revoke``) and a
    ``fiat.governed`` block against a real ``fiat serve``: every bundle verifies and says how it ended."""
    home = tmp_path / "home"
    ok(fiat("init", "--home", home, "--json"))
    ok(fiat("policy", "publish", EXAMPLES, "--home", home, "--json"))
    root = tmp_path / "root.json"
    ok(fiat("trust-root", "export", "--home", home, "-o", root))
    env = cli_env(FIAT_RUNTIME_CONTAINMENT="process")
    who = ("--principal", "agent:release-bot", "--action", "shell:run", "--resource", "repo:fiat")
    with FiatServer(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "200"}) as server:

        def run(name: str, *command: str) -> subprocess.Popen[str]:
            argv = ["run", "--json", "--home", str(home), "--url", server.url, *who]
            return subprocess.Popen(
                [sys.executable, "-m", "fiat.cli.main", *argv, "--evidence", str(tmp_path / name), "--", *command],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        # The shell policy's permits live 30 s and are renewed with a third of that left: 23 s spans a renewal.
        completed = run("completed.json", "sleep", "23")
        halted = run("halted.json", "sleep", "60")
        try:
            failed = run("failed.json", "sh", "-c", "exit 3")
            assert failed.wait(60) == 3, failed.communicate()
            assert halted.stderr is not None
            permit = None
            for line in halted.stderr:
                if m := PERMIT_RE.search(line):
                    permit = m.group(1)
                    break
            assert permit, "the run to be revoked never named its permit"
            time.sleep(1)
            ok(fiat("revoke", "--permit", permit, "--reason", "test: stop", "--home", home, "--url", server.url))
            assert halted.wait(60) == 124
            with fiat_governed(
                action="shell:run",
                resource="repo:fiat",
                principal="agent:release-bot",
                context={"command": {"argv": ["governed"], "cwd": str(tmp_path)}},
                home=home,
                url=server.url,
            ) as g:
                time.sleep(1.5)
                g.check()
            ok(fiat("bundle", g.permit_id, "--home", home, "-o", tmp_path / "governed.json"))
            assert completed.wait(90) == 0, completed.communicate()
        finally:
            for proc in (completed, halted):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    for name, verdict in (
        ("completed.json", "completed (exit 0) (containment: process)"),
        ("failed.json", "verified: failed (exit 3)"),
        ("halted.json", "verified: halted at revocation (the permit"),
        ("governed.json", "completed (exit 0) (containment: none)"),
    ):
        proc = fiat("verify", tmp_path / name, "--trust-root", root)
        text = proc.stdout.decode()
        assert proc.returncode == 0, (name, text, proc.stderr.decode())
        assert verdict in text.strip().splitlines()[-1], (name, text)
    receipt = _receipt(tmp_path / "completed.json")
    assert receipt["renewedFrom"] and receipt["heartbeatMs"] == 250, receipt
    assert receipt["verifications"]["count"] >= 23 / 0.25 / 4, receipt
