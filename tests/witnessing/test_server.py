"""End to end with ``fiat serve``: three witnesses over real HTTP, quorum 2.

The witnesses here are the protocol doubles of :mod:`support.witness_double` (in this process,
reached by the server over TCP like any witness); :mod:`test_real_witnesses` runs the same
checks against ``fiat witness serve`` processes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from fiat.config import load_config
from fiat.formats import jws
from fiat.formats.encoding import b64url
from fiat.home import init_home, log_keys
from fiat.keys.admin_token import read_admin_token
from fiat.tlog import cosignature, note
from fiat.tlog.checkpoint import Checkpoint, open_checkpoint
from fiat.tlog.proof_file import TlogProof
from fiat.verify.trust_root import parse_cosigner_vkey
from support.evidence import make_execution
from support.processes import FiatServer, fiat_text, ok
from support.processes import fiat as fiat_cli
from support.witness_double import TestWitness, restart
from support.witnesses import enroll

ENV = {"FIAT_LOG_WITNESS_QUORUM": "2", "FIAT_LOG_WITNESS_INTERVAL_MS": "200", "FIAT_LOG_WITNESS_TIMEOUT_MS": "1000"}


def cosigned_by(cp_note: bytes, vkeys: list[str]) -> list[str]:
    """The witnesses whose cosignature on ``cp_note`` verifies, checked from their vkeys alone."""
    keys = [parse_cosigner_vkey(v) for v in vkeys]
    return [n for n, ts in cosignature.verified_cosigners(note.parse(cp_note), keys) if ts > 0]


def wait_checkpoint(url: str, size: int, vkeys: list[str], count: int, timeout: float = 15.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{url}/log/checkpoint").content
        cp = Checkpoint.parse_text(note.parse(body).text)
        if cp.size >= size and len(cosigned_by(body, vkeys)) >= count:
            return body
        assert time.monotonic() < deadline, f"/log/checkpoint did not reach size {size} with {count} cosignatures"
        time.sleep(0.1)


def test_fiat_serve_serves_quorum_cosigned_checkpoints_and_bundles_verify(
    tmp_path: Path, witnesses: list[TestWitness]
) -> None:
    home = tmp_path / "home"
    init_home(home)
    execution = make_execution(home)
    log_verifier = log_keys(load_config(home, require=True))[0].verifier
    ws = [TestWitness(f"witness.example/w{i}", log_verifier).start() for i in (1, 2, 3)]
    witnesses.extend(ws)
    enroll(home, ws, ENV)
    vkeys = [w.vkey for w in ws]
    root_path = tmp_path / "trust-root.json"
    fiat_text("trust-root", "export", "--home", home, "-o", root_path, check=True, env=ENV)
    root = json.loads(root_path.read_text())
    assert root["witnesses"] == {"quorum": 2}
    assert sorted(k["url"] for k in root["keys"] if k["role"] == "witness") == sorted(w.url for w in ws)

    with FiatServer(home, env=ENV) as server:
        size = open_checkpoint(wait_checkpoint(server.url, 1, vkeys, 2), log_verifier).size
        assert size >= 1
        body = httpx.get(f"{server.url}/v1/trust/root").json()
        assert body["witnesses"] == {"quorum": 2}

        # A bundle from the server proves every entry against one checkpoint the quorum cosigned.
        token = read_admin_token(home / "keys")
        r = httpx.get(f"{server.url}/v1/bundles/{execution.jti}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        bundle = r.json()
        proofs = [bundle["permit"]["tlogProof"], *(s["tlogProof"] for s in bundle["statements"])]
        notes = {TlogProof.parse(p.encode()).checkpoint for p in proofs}
        assert len(notes) == 1, "one checkpoint for the whole bundle"
        assert len(cosigned_by(notes.pop(), vkeys)) >= 2
        bundle_path = tmp_path / "bundle.json"
        bundle_path.write_text(json.dumps(bundle))
        verified = fiat_text("verify", bundle_path, "--trust-root", root_path, "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr

        # Trust states embed the cosigned checkpoint once it is no smaller than the plain one embedded.
        deadline = time.monotonic() + 10
        while True:
            state = httpx.get(f"{server.url}/v1/trust/state").json()["state"]
            embedded = jws.parse(state).claims["checkpoint"].encode()
            if len(cosigned_by(embedded, vkeys)) >= 2:
                break
            assert time.monotonic() < deadline, "trust states never embedded the cosigned checkpoint"
            time.sleep(0.2)

        # A witness enrolled over the API with its URL is in the trust root with it.
        extra = TestWitness("witness.example/w4", log_verifier)
        r = httpx.post(
            f"{server.url}/v1/enrollments",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "role": "witness",
                "name": extra.name,
                "publicKey": b64url(extra.public_key),
                "url": "https://witness.example/w4",
            },
        )
        assert r.status_code == 200 and r.json()["url"] == "https://witness.example/w4", r.text
        bad = httpx.post(
            f"{server.url}/v1/enrollments",
            headers={"Authorization": f"Bearer {token}"},
            json={"role": "runtime", "name": "n", "publicKey": b64url(extra.public_key), "url": "https://x.example"},
        )
        assert bad.status_code == 400, bad.text
        # Attack: a witness enrolled under the log's own origin would sign lines posing as the log's.
        posing = httpx.post(
            f"{server.url}/v1/enrollments",
            headers={"Authorization": f"Bearer {token}"},
            json={"role": "witness", "name": log_verifier.name, "publicKey": b64url(extra.public_key)},
        )
        assert posing.status_code == 400 and "named like the log" in posing.text, posing.text
        listed = httpx.get(f"{server.url}/v1/trust/root").json()["keys"]
        assert any(k.get("url") == "https://witness.example/w4" for k in listed)

        health = httpx.get(f"{server.url}/v1/health").json()["witnesses"]
        assert health["configured"] and health["quorum"] == 2
        assert sum(c["verified"] for c in health["cosigners"]) >= 2
        assert {s["name"] for s in health["witnesses"]} == {w.name for w in ws}
        metrics = httpx.get(f"{server.url}/metrics").text
        assert f'fiat_witness_cosigned_size{{witness="{ws[0].name}"}}' in metrics
        assert "fiat_witnessed_checkpoint_age_seconds" in metrics

        # One witness down: the quorum holds for new entries.
        ws[0].stop()
        later = make_execution(home)
        grown = wait_checkpoint(server.url, size + 1, vkeys, 2)
        assert sorted(cosigned_by(grown, vkeys)) == sorted([ws[1].name, ws[2].name])
        r = httpx.get(f"{server.url}/v1/bundles/{later.jti}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200

        # Restarted (its state kept), it is caught up: the newest checkpoint, with a consistency
        # proof from the size it holds.
        ws[0].seen.clear()
        restart(ws[0])
        final = open_checkpoint(grown, log_verifier).size
        caught = wait_checkpoint(server.url, final, vkeys, 3)
        assert ws[0].name in cosigned_by(caught, vkeys)
        assert ws[0].size >= final
        assert any(s.proof_lines > 0 for s in ws[0].seen), ws[0].seen


def test_fiat_log_serve_submits_to_the_witnesses_too(tmp_path: Path, witnesses: list[TestWitness]) -> None:
    home = tmp_path / "home"
    init_home(home)
    make_execution(home)
    log_verifier = log_keys(load_config(home, require=True))[0].verifier
    w = TestWitness("witness.example/w1", log_verifier).start()
    witnesses.append(w)
    enroll(home, [w])
    env = {**ENV, "FIAT_LOG_WITNESS_QUORUM": "1"}
    with FiatServer(home, log=True, env=env) as server:
        base = server.url.removesuffix("/log")
        body = wait_checkpoint(base, 1, [w.vkey], 1)
        assert open_checkpoint(body, log_verifier).size >= 1
    # `fiat log proof` proves against the cosigned checkpoint, which tlog-proof verifiers accept.
    proof_path = tmp_path / "entry.tlog-proof"
    ok(fiat_text("log", "proof", "0", "--home", home, "-o", proof_path))
    assert cosigned_by(TlogProof.parse(proof_path.read_bytes()).checkpoint, [w.vkey]) == [w.name]
    entry = tmp_path / "entry.bin"
    entry.write_bytes(ok(fiat_cli("log", "entry", "0", "--home", home)).stdout)
    ok(fiat_text("log", "verify-proof", proof_path, "--vkey", log_verifier.encode(), "--entry", entry))
