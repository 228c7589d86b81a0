"""The assurance level end to end: ``fiat serve`` with three real ``fiat witness serve`` processes,
quorum 2, and ``fiat verify`` (the CLI, in a subprocess) on a bundle fetched from the server.

The bundle's checkpoint carries the cosignatures the log collected; the verifier counts those of
the trust root's witnesses (docs/formats.md, "Witnesses and assurance") and says so: ``witnessed
by k of 3`` with k the number of witnesses whose cosignature verifies on it (at least the quorum).
The same bundle against a trust root asking for all three fails at ``witness-quorum`` when fewer
cosigned, and one without witness keys reads it as ``signed by the log``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from fiat.config import load_config
from fiat.home import init_home, log_keys
from fiat.keys.admin_token import read_admin_token
from fiat.tlog import cosignature, note
from fiat.tlog.checkpoint import Checkpoint
from fiat.tlog.proof_file import TlogProof
from fiat.verify.trust_root import parse_cosigner_vkey
from support.evidence import make_execution
from support.processes import FiatServer, fiat_text, ok
from support.witnesses import running, three_witnesses

ENV = {"FIAT_LOG_WITNESS_QUORUM": "2", "FIAT_LOG_WITNESS_INTERVAL_MS": "200", "FIAT_LOG_WITNESS_TIMEOUT_MS": "1000"}


def cosigners(cp_note: bytes, vkeys: list[str]) -> list[str]:
    return [n for n, _ in cosignature.verified_cosigners(note.parse(cp_note), [parse_cosigner_vkey(v) for v in vkeys])]


def test_fiat_verify_says_witnessed_by_k_of_3(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home)
    execution = make_execution(home)
    log_vkey = log_keys(load_config(home, require=True))[0].verifier.encode()
    with running(three_witnesses(tmp_path, log_vkey)) as ws:
        for w in ws:
            ok(
                fiat_text(
                    "keys",
                    "add",
                    "--role",
                    "witness",
                    "--name",
                    w.name,
                    "--vkey",
                    w.vkey,
                    "--url",
                    w.url,
                    "--home",
                    home,
                    env=ENV,
                )
            )
        vkeys = [w.vkey for w in ws]
        root_path = tmp_path / "trust-root.json"
        ok(fiat_text("trust-root", "export", "--home", home, "-o", root_path, env=ENV))
        server = FiatServer(home, env=ENV).start()
        try:
            deadline = time.monotonic() + 20
            while len(cosigners(httpx.get(f"{server.url}/log/checkpoint").content, vkeys)) < 2:
                assert time.monotonic() < deadline, "no quorum-cosigned checkpoint"
                time.sleep(0.1)
            token = read_admin_token(home / "keys")
            r = httpx.get(f"{server.url}/v1/bundles/{execution.jti}", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        finally:
            server.stop()
    bundle = r.json()
    notes = {
        TlogProof.parse(p.encode()).checkpoint
        for p in [bundle["permit"]["tlogProof"], *(s["tlogProof"] for s in bundle["statements"])]
    }
    k = min(len(cosigners(n, vkeys)) for n in notes)
    assert 2 <= k <= 3
    print(f"\nthe served bundle: witnessed by {k} of 3")
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(json.dumps(bundle))

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
