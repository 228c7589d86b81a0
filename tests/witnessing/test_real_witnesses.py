"""End to end with real processes: ``fiat serve`` and three ``fiat witness serve``, quorum 2.

Cosigned checkpoints at ``/log/checkpoint`` (every cosignature checked here from the witnesses'
vkeys alone), a bundle fetched from the server that ``fiat verify`` accepts under a quorum-2
trust root and says how witnessed it is (``witnessed by k of 3``; all three required, or none),
one witness killed (the quorum holds; appends take no longer), the witness restarted (caught up
with a consistency proof), and the server restarted (it knows no witness's size: the 409 answers
tell it, tlog-witness §add-checkpoint).
"""

from __future__ import annotations

import base64
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fiat.config import load_config
from fiat.home import init_home, log_keys
from fiat.keys.admin_token import read_admin_token
from fiat.tlog import note
from fiat.tlog.checkpoint import Checkpoint, open_checkpoint
from fiat.tlog.proof_file import TlogProof
from support.evidence import make_execution
from support.processes import FiatServer, fiat_text, ok
from support.witnesses import enroll, running, three_witnesses

from .test_server import ENV, cosigned_by, wait_checkpoint


def independently_cosigned(cp_note: bytes, vkey: str) -> bool:
    """tlog-cosignature §Ed25519 checked by hand from the vkey's bytes: key ID = SHA-256(name || 0x0A ||
    0x04 || key)[:4], signature = u64 timestamp || Ed25519 over "cosignature/v1\ntime <t>\n<text>"."""
    name, kid_hex, key_b64 = vkey.split("+", 2)
    material = base64.b64decode(key_b64)
    assert material[0] == 0x04
    assert hashlib.sha256(name.encode() + b"\n" + material).digest()[:4].hex() == kid_hex
    text, _, sigs = cp_note.decode().partition("\n\n")
    for line in sigs.splitlines():
        if not line.startswith(f"\u2014 {name} "):
            continue
        raw = base64.b64decode(line.rsplit(" ", 1)[1])
        if raw[:4].hex() != kid_hex or len(raw) != 4 + 8 + 64:
            continue
        ts = int.from_bytes(raw[4:12], "big")
        try:
            Ed25519PublicKey.from_public_bytes(material[1:]).verify(
                raw[12:], f"cosignature/v1\ntime {ts}\n{text}\n".encode()
            )
            return ts > 0
        except InvalidSignature:
            return False
    return False


def revoke_latencies(url: str, token: str, n: int, tag: str) -> list[float]:
    """``n`` revocations through the server (each one a log append), their latencies in seconds."""
    out = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
        for i in range(n):
            t = time.perf_counter()
            r = client.post(
                f"{url}/v1/revocations", json={"kind": "principal", "target": f"agent:{tag}-{i}", "reason": "test"}
            )
            out.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    return sorted(out)


def p99(values: list[float]) -> float:
    return values[max(0, int(len(values) * 0.99) - 1)]


def assert_assurance(
    bundle: dict[str, Any], bundle_path: Path, root_path: Path, vkeys: list[str], tmp_path: Path
) -> None:
    """The assurance level of the served bundle (docs/formats.md, "Witnesses and assurance"), said by
    ``fiat verify`` (the CLI, in a subprocess): ``witnessed by k of 3`` with k the number of witnesses
    whose cosignature verifies on it (at least the quorum). The same bundle against a trust root asking
    for all three fails at ``witness-quorum`` when fewer cosigned, and one without witness keys reads it
    as ``signed by the log``."""
    notes = {
        TlogProof.parse(p.encode()).checkpoint
        for p in [bundle["permit"]["tlogProof"], *(s["tlogProof"] for s in bundle["statements"])]
    }
    k = min(len(cosigned_by(n, vkeys)) for n in notes)
    assert 2 <= k <= 3
    print(f"\nthe served bundle: witnessed by {k} of 3")
    text = fiat_text("verify", bundle_path, "--trust-root", root_path)
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"\nassurance: witnessed by {k} of 3 (the trust root requires 2)\n" in text.stdout
    report = json.loads(fiat_text("verify", bundle_path, "--trust-root", root_path, "--json").stdout)
    assert report["assurance"] == {
        "level": "witnessed",
        "witnessed": k,
        "witnesses": 3,
        "quorum": 2,
        "text": f"witnessed by {k} of 3",
    }
    assert all(Checkpoint.parse_text(note.parse(n).text).size >= 1 for n in notes)

    # All three required: verified only if all three cosigned every checkpoint the bundle holds.
    root = json.loads(root_path.read_text())
    root["witnesses"]["quorum"] = 3
    strict = tmp_path / "strict-root.json"
    strict.write_text(json.dumps(root))
    three = json.loads(fiat_text("verify", bundle_path, "--trust-root", strict, "--json").stdout)
    assert three["verified"] is (k == 3)
    if k < 3:
        assert three["failedStep"] == "witness-quorum"
    # A trust root without witness keys: the log's signature is all that counts.
    root["witnesses"]["quorum"] = 0
    root["keys"] = [key for key in root["keys"] if key["role"] != "witness"]
    bare = tmp_path / "bare-root.json"
    bare.write_text(json.dumps(root))
    plain = json.loads(fiat_text("verify", bundle_path, "--trust-root", bare, "--json").stdout)
    assert plain["verified"] is True
    assert plain["assurance"] == {
        "level": "log",
        "witnessed": 0,
        "witnesses": 0,
        "quorum": 0,
        "text": "signed by the log",
    }


def test_three_real_witnesses_quorum_two(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home)
    execution = make_execution(home)
    log_vkey = log_keys(load_config(home, require=True))[0].verifier.encode()
    log_verifier = log_keys(load_config(home, require=True))[0].verifier
    with running(three_witnesses(tmp_path, log_vkey)) as ws:
        enroll(home, ws, ENV)
        vkeys = [w.vkey for w in ws]
        root_path = tmp_path / "trust-root.json"
        ok(fiat_text("trust-root", "export", "--home", home, "-o", root_path, env=ENV))
        assert json.loads(root_path.read_text())["witnesses"] == {"quorum": 2}
        token = read_admin_token(home / "keys")
        server = FiatServer(home, env=ENV).start()
        try:
            cp_note = wait_checkpoint(server.url, 1, vkeys, 3)
            assert all(independently_cosigned(cp_note, v) for v in vkeys)
            assert open_checkpoint(cp_note, log_verifier).size >= 1  # the log's signature still verifies

            r = httpx.get(f"{server.url}/v1/bundles/{execution.jti}", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            bundle = r.json()
            proofs = [bundle["permit"]["tlogProof"], *(s["tlogProof"] for s in bundle["statements"])]
            notes = {TlogProof.parse(p.encode()).checkpoint for p in proofs}
            assert len(notes) == 1 and len(cosigned_by(next(iter(notes)), vkeys)) >= 2
            bundle_path = tmp_path / "bundle.json"
            bundle_path.write_text(json.dumps(bundle))
            verified = fiat_text("verify", bundle_path, "--trust-root", root_path, "--json")
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert_assurance(bundle, bundle_path, root_path, vkeys, tmp_path)

            healthy = revoke_latencies(server.url, token, 40, "healthy")
            ws[0].kill()
            dead = revoke_latencies(server.url, token, 40, "dead")
            # Appends never wait for a witness: a dead one costs them nothing measurable.
            assert p99(dead) < max(0.25, 3 * p99(healthy)), (healthy, dead)
            print(
                f"append (POST /v1/revocations) p50/p99 ms: all witnesses {statistics.median(healthy) * 1000:.1f}/"
                f"{p99(healthy) * 1000:.1f}, one killed {statistics.median(dead) * 1000:.1f}/{p99(dead) * 1000:.1f}"
            )
            size = int(httpx.get(f"{server.url}/v1/health").json()["logSize"])
            grown = wait_checkpoint(server.url, size, vkeys, 2)
            assert sorted(cosigned_by(grown, vkeys)) == sorted([ws[1].name, ws[2].name])
            # The quorum was stored as soon as two answered; the dead witness's own submission fails
            # after its retries (log.witness_timeout_ms), and then its row says so.
            deadline = time.monotonic() + 10
            while True:
                health = httpx.get(f"{server.url}/v1/health").json()["witnesses"]
                down = next(s for s in health["witnesses"] if s["name"] == ws[0].name)
                if down["lastError"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert down["lastError"] and (down["cosignedSize"] or 0) < size, down

            ws[0].restart()
            caught = wait_checkpoint(server.url, size, vkeys, 3)
            assert ws[0].name in cosigned_by(caught, vkeys)
        finally:
            server.stop()

        # A restarted server believes every witness at size 0: each answers 409 with its size, and
        # the resubmission from there (with a proof) is cosigned.
        make_execution(home)  # the log grew while the server was down
        with FiatServer(home, env=ENV) as again:
            size = int(httpx.get(f"{again.url}/v1/health").json()["logSize"])
            final = wait_checkpoint(again.url, size, vkeys, 3)
            assert len(cosigned_by(final, vkeys)) == 3
            statuses = httpx.get(f"{again.url}/v1/health").json()["witnesses"]["witnesses"]
            assert all(s["knownSize"] >= size for s in statuses)
