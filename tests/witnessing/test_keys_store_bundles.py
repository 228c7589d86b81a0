"""Witness keys with URLs (keyring, trust root, ``fiat keys add --vkey``), the witnessed checkpoint's
storage (schema 6 and its migration), and bundles proven against one chosen checkpoint."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.config import load_config
from fiat.errors import MalformedError
from fiat.formats.jws import jwk_thumbprint
from fiat.home import init_home, log_keys, trust_root
from fiat.persist.sqlite import SCHEMA_VERSION, SQLiteLogStore
from fiat.prove.witnessing import WitnessCollector, WitnessEndpoint, cosigners
from fiat.tlog import note
from fiat.tlog.proof_file import TlogProof
from fiat.verify import Bundle, TrustedKey
from fiat.verify.trust_root import check_witness_url, cosigner_vkey, parse_cosigner_vkey
from fiat.verify.verifier import verify
from fiat.wiring import open_evidence
from support.evidence import dump, make_execution
from support.processes import EXIT_INVALID, fiat_text, ok
from support.witness_double import TestWitness


def witness_key(name: str = "witness.example/w1") -> tuple[str, bytes, str]:
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    return name, public, cosigner_vkey(name, public)


def test_cosigner_vkeys_parse_and_log_vkeys_do_not() -> None:
    name, public, vkey = witness_key()
    assert parse_cosigner_vkey(vkey) == (name, public)
    log_vkey = note.Verifier.from_public_key(name, public).encode()  # type 0x01: a log's, not a cosigner's
    with pytest.raises(MalformedError, match="type 0x04"):
        parse_cosigner_vkey(log_vkey)
    head, kid, key = vkey.split("+", 2)
    with pytest.raises(MalformedError, match="key ID does not match"):
        parse_cosigner_vkey(f"{head}+{int(kid, 16) ^ 1:08x}+{key}")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://w.example",
        "javascript:alert(1)",
        "http://",
        "https://w.example/?q=1",
        "https://w.example/#f",
        "https://w.example/?",  # an empty query or fragment is still one: a prefix has neither
        "https://w.example/#",
        "https://user:pw@w.example",
        "https://w.example:99999",
        "https://w.example/a b",
        42,
    ],
)
def test_a_witness_url_must_be_a_plain_http_url(url: object) -> None:
    with pytest.raises(MalformedError):
        check_witness_url(url)


def test_trust_root_keys_carry_a_witness_url_and_only_witness_keys_do() -> None:
    name, public, _ = witness_key()
    base = {
        "kid": jwk_thumbprint(public),
        "role": "witness",
        "name": name,
        "alg": "Ed25519",
        "publicKey": TrustedKey(jwk_thumbprint(public), "witness", name, public, 0).to_json()["publicKey"],
        "validFrom": "2026-01-01T00:00:00Z",
    }
    key = TrustedKey.from_json({**base, "url": "https://witness.example/w1"})
    assert key.url == "https://witness.example/w1" and key.to_json()["url"] == key.url
    with pytest.raises(MalformedError, match="only witness keys have a url"):
        TrustedKey.from_json({**base, "role": "runtime", "url": "https://witness.example/w1"})
    with pytest.raises(MalformedError):
        TrustedKey.from_json({**base, "url": "file:///etc/passwd"})


def test_fiat_keys_add_registers_a_witness_from_its_vkey(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home)
    name, _, vkey = witness_key("witness.example/w1")
    add = ("keys", "add", "--role", "witness", "--home", home)
    wrong = fiat_text(*add, "--name", "witness.example/other", "--vkey", vkey)
    assert wrong.returncode == EXIT_INVALID and "witness.example/w1" in wrong.stderr
    bad = fiat_text(*add, "--name", name, "--vkey", vkey, "--url", "ftp://witness.example")
    assert bad.returncode != 0
    not_witness = fiat_text(
        "keys", "add", "--role", "runtime", "--name", "n", "--url", "https://w.example", "--home", home
    )
    assert not_witness.returncode == EXIT_INVALID
    # Attack: a witness named like the log would sign lines that pose as the log's own signature.
    origin = load_config(home, require=True).log.origin
    _, _, log_named = witness_key(origin)
    posing = fiat_text(*add, "--name", origin, "--vkey", log_named)
    assert posing.returncode == EXIT_INVALID and "the log's own origin" in posing.stderr, posing.stderr
    done = ok(fiat_text(*add, "--name", name, "--vkey", vkey, "--url", "http://127.0.0.1:8760", "--json"))
    rec = json.loads(done.stdout)
    assert rec["url"] == "http://127.0.0.1:8760" and "file" not in rec  # public only: no private key here
    assert not list((home / "keys").glob("witness-*.pem"))
    root = json.loads(
        ok(fiat_text("trust-root", "export", "--home", home, env={"FIAT_LOG_WITNESS_QUORUM": "1"})).stdout
    )
    assert root["witnesses"] == {"quorum": 1}  # log.witness_quorum
    (w,) = [k for k in root["keys"] if k["role"] == "witness"]
    assert w["url"] == "http://127.0.0.1:8760" and w["vkey"] == vkey
    override = json.loads(
        ok(
            fiat_text(
                "trust-root", "export", "--home", home, "--witness-quorum", "0", env={"FIAT_LOG_WITNESS_QUORUM": "1"}
            )
        ).stdout
    )
    assert override["witnesses"] == {"quorum": 0}
    too_many = fiat_text("trust-root", "export", "--home", home, env={"FIAT_LOG_WITNESS_QUORUM": "2"})
    assert too_many.returncode == EXIT_INVALID


def test_a_version_5_database_gains_the_witnessed_checkpoint_table(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home)
    path = load_config(home, require=True).database_path
    db = sqlite3.connect(path)
    db.execute("DROP TABLE log_witnessed")
    db.execute("PRAGMA user_version = 5")
    db.commit()
    db.close()
    store = SQLiteLogStore(path)
    try:
        assert store.witnessed_checkpoint() is None
        assert store.set_witnessed_checkpoint(3, b"three")
        assert not store.set_witnessed_checkpoint(2, b"two")
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    db.close()


def test_bundles_prove_against_the_witnessed_checkpoint_and_verify(tmp_path: Path) -> None:
    home = tmp_path / "home"
    execution = make_execution(home)
    cfg = load_config(home, require=True)
    recorder = open_evidence(cfg)
    witness = TestWitness("witness.example/w1", log_keys(cfg)[0].verifier).start()
    collector = WitnessCollector(
        recorder.log, [WitnessEndpoint(witness.name, witness.public_key, witness.url)], quorum=1, interval_s=0.2
    )
    try:
        # An older checkpoint chosen: every proof carries that checkpoint's note, not the latest one.
        older = recorder.log.checkpoint()
        recorder.log.append(b"an entry after the bundle's")
        pinned = recorder._bundle_at(execution.jti, older, True, None)
        notes = {pinned.permit_proof.checkpoint, *(s.tlog_proof.checkpoint for s in pinned.statements)}
        assert notes == {older.note_bytes}
        assert verify(Bundle.parse(dump(pinned.to_json())), trust_root(cfg)).verified

        collector.start()
        recorder.witnesses, recorder.witness_timeout = collector, 3.0
        bundle = recorder.bundle(execution.jti)
        proofs = [bundle.permit_proof, *(s.tlog_proof for s in bundle.statements)]
        (cp_note,) = {p.checkpoint for p in proofs}
        assert cosigners(cp_note, [(witness.name, witness.public_key)]), "proven against the cosigned checkpoint"
        assert TlogProof.parse(proofs[0].encode()).checkpoint == cp_note
        result = verify(Bundle.parse(dump(bundle.to_json())), trust_root(cfg))
        assert result.verified, [s.to_json() for s in result.steps if s.status != "pass"]

        # Without a collector (`fiat bundle export`), the stored cosigned checkpoint when it covers them.
        recorder.witnesses = None
        again = recorder.bundle(execution.jti)
        assert {again.permit_proof.checkpoint} == {recorder.log.witnessed_checkpoint().note_bytes}  # type: ignore[union-attr]
    finally:
        collector.close()
        witness.stop()
        recorder.close()
