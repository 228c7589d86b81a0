"""Keys by role, rotation and the trust root, through the real CLI and files."""

from __future__ import annotations

import functools
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.errors import KeyFileError, MalformedError, NoteVerificationError
from fiat.formats.jws import jwk_thumbprint
from fiat.keys.pem import load_private_key, write_private_key
from fiat.tlog import cosignature, note
from fiat.tlog.checkpoint import Checkpoint, open_with_any, sign_checkpoint
from fiat.verify import TrustRoot
from support.processes import fiat_text

fiat = functools.partial(fiat_text, check=True)


def keys(home: Path) -> list[dict[str, object]]:
    return json.loads(fiat("keys", "list", "--home", str(home), "--json").stdout)["keys"]


def test_init_creates_one_key_per_core_role(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fiat("init", "--home", str(home))
    roles = sorted(k["role"] for k in keys(home))
    assert roles == ["authority", "log", "runtime"]
    for k in keys(home):
        pem = home / "keys" / str(k["file"])
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        public = load_private_key(pem).public_key().public_bytes_raw()
        assert k["kid"] == jwk_thumbprint(public)
    assert stat.S_IMODE((home / "keys").stat().st_mode) == 0o700
    before = keys(home)
    fiat("init", "--home", str(home))
    assert keys(home) == before  # idempotent: no new key, none replaced


def test_add_and_rotate_keep_old_keys_verifying(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fiat("init", "--home", str(home))
    fiat("keys", "add", "--role", "approver", "--name", "alice", "--home", str(home))
    old = next(k for k in keys(home) if k["role"] == "authority")
    out = json.loads(fiat("keys", "rotate", "--role", "authority", "--home", str(home), "--json").stdout)
    assert out["old"]["kid"] == old["kid"] and out["old"]["validUntil"] == out["new"]["validFrom"]
    root = TrustRoot.parse(fiat("trust-root", "export", "--home", str(home)).stdout.encode())
    authorities = root.by_role("authority")
    assert len(authorities) == 2
    retired = next(k for k in authorities if k.kid == old["kid"])
    assert retired.valid_until is not None and retired.valid_at(retired.valid_from)
    assert not retired.valid_at(retired.valid_until)
    assert root.by_role("approver")[0].name == "alice"
    # The rotation is a logged statement: the log grew by one entry.
    cp = fiat("log", "checkpoint", "--home", str(home)).stdout.splitlines()
    assert cp[1] == "1"


def test_log_key_rotation_keeps_old_proofs_valid_and_bounds_the_retired_key(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fiat("init", "--home", str(home))
    old_vkey = fiat("log", "vkey", "--home", str(home)).stdout.strip()
    (tmp_path / "e1").write_bytes(b"before the rotation")
    fiat("log", "append", "--home", str(home), str(tmp_path / "e1"))
    fiat("log", "proof", "0", "--home", str(home), "-o", str(tmp_path / "p0"))
    out = json.loads(fiat("keys", "rotate", "--role", "log", "--home", str(home), "--json").stdout)
    # The retired key vouches for trees up to the one that logs its own retirement.
    assert out["old"]["maxTreeSize"] == out["logIndex"] + 1 == 2
    new_vkey = fiat("log", "vkey", "--home", str(home)).stdout.strip()
    assert new_vkey != old_vkey and new_vkey.split("+")[0] == old_vkey.split("+")[0]  # same origin
    # New checkpoints are signed by the new key; the old proof still verifies with the old key.
    (tmp_path / "e2").write_bytes(b"after the rotation")
    fiat("log", "append", "--home", str(home), str(tmp_path / "e2"))
    cp = fiat("log", "checkpoint", "--home", str(home)).stdout.encode()
    note.open_note(cp, [note.Verifier.parse(new_vkey)])
    with pytest.raises(NoteVerificationError):
        note.open_note(cp, [note.Verifier.parse(old_vkey)])
    ok = fiat("log", "verify-proof", str(tmp_path / "p0"), "--vkey", old_vkey, "--entry", str(tmp_path / "e1"))
    assert ok.returncode == 0
    # The trust root lists both log keys; the retired one with its bound.
    root = TrustRoot.parse(fiat("trust-root", "export", "--home", str(home)).stdout.encode())
    logs = {k.kid: k for k in root.by_role("log")}
    assert len(logs) == 2
    retired = next(k for k in logs.values() if k.valid_until is not None)
    assert retired.max_tree_size == 2
    assert len(root.log_verifiers(tree_size=2)) == 2 and len(root.log_verifiers(tree_size=3)) == 1
    # A checkpoint signed by the retired key for a larger tree is refused.
    from fiat.keys.keyring import KeyRing
    from fiat.keys.pem import load_private_key

    ring = KeyRing(home / "keys")
    rec = ring.find(retired.kid)
    assert rec is not None and rec.file is not None
    forged = sign_checkpoint(
        Checkpoint(root.log_origin, 3, b"\x05" * 32),
        note.Signer(root.log_origin, load_private_key(home / "keys" / rec.file)),
    )
    keys = [note.Verifier.from_public_key(root.log_origin, k.public_key) for k in root.by_role("log")]
    with pytest.raises(NoteVerificationError, match="retired log key"):
        open_with_any(forged.note_bytes, keys, [k.max_tree_size for k in root.by_role("log")])
    # The log reopens: its stored checkpoint verifies under the current or a retired key.
    fiat("log", "append", "--home", str(home), str(tmp_path / "e2"))


def test_trust_root_quorum_needs_witness_keys(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fiat("init", "--home", str(home))
    assert fiat("trust-root", "export", "--witness-quorum", "1", "--home", str(home), check=False).returncode == 2
    fiat("keys", "add", "--role", "witness", "--name", "witness.example/w1", "--home", str(home))
    root = TrustRoot.parse(fiat("trust-root", "export", "--witness-quorum", "1", "--home", str(home)).stdout.encode())
    assert root.witness_quorum == 1
    w = root.by_role("witness")[0]
    assert root.to_json()["keys"][-1]["vkey"].startswith("witness.example/w1+")
    assert w.name == "witness.example/w1"


def test_trust_root_rejects_a_kid_that_is_not_the_thumbprint(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fiat("init", "--home", str(home))
    doc = json.loads(fiat("trust-root", "export", "--home", str(home)).stdout)
    doc["keys"][0]["kid"] = doc["keys"][1]["kid"]
    with pytest.raises(MalformedError, match="thumbprint"):
        TrustRoot.from_json(doc)


def test_passphrase_protected_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "k.pem"
    write_private_key(path, key, passphrase="correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert load_private_key(path, "correct horse").private_bytes_raw() == key.private_bytes_raw()
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_private_key(path, "wrong")
    monkeypatch.delenv("FIAT_KEY_PASSPHRASE", raising=False)
    with pytest.raises(KeyFileError, match="FIAT_KEY_PASSPHRASE"):
        load_private_key(path)
    with pytest.raises(KeyFileError, match="never overwrites"):
        write_private_key(path, Ed25519PrivateKey.generate())


def test_cosignature_v1_round_trip_and_tamper() -> None:
    log = note.Signer("example.com/log", Ed25519PrivateKey.generate())
    cp = sign_checkpoint(Checkpoint("example.com/log", 5, b"\x07" * 32), log)
    wkey = Ed25519PrivateKey.generate()
    signed = cosignature.cosign(cp.note_bytes, "witness.example/w1", wkey, 1_700_000_000)
    parsed = note.parse(signed)
    public = wkey.public_key().public_bytes_raw()
    assert cosignature.verified_cosigners(parsed, [("witness.example/w1", public)]) == [
        ("witness.example/w1", 1_700_000_000)
    ]
    # The log signature is still there and still verifies; the witness line is ignored by it.
    note.open_note(signed, [log.verifier])
    # Wrong name or key: not counted. A flipped bit in the cosignature: not counted.
    assert cosignature.verified_cosigners(parsed, [("witness.example/w2", public)]) == []
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert cosignature.verified_cosigners(parsed, [("witness.example/w1", other)]) == []
    sig = parsed.signatures[-1]
    flipped = note.Signature(sig.name, sig.key_id, sig.signature[:-1] + bytes([sig.signature[-1] ^ 1]))
    bad = note.Note(parsed.text, (*parsed.signatures[:-1], flipped))
    assert cosignature.verified_cosigners(bad, [("witness.example/w1", public)]) == []


def test_a_key_rotated_in_the_second_it_began_keeps_a_period(tmp_path: Path) -> None:
    # Validity is recorded in whole seconds and ends exclusively: rotating at once must not
    # leave the old key an empty period (what it signed in its one second would not verify).
    from fiat.keys.keyring import KeyRing

    ring = KeyRing(tmp_path / "keys")
    old, _ = ring.create("authority", "authority")
    retired, new, _ = ring.rotate("authority")
    assert retired.kid == old.kid and retired.valid_until is not None
    assert retired.valid_from < retired.valid_until == new.valid_from
    assert retired.valid_at(retired.valid_from) and not retired.valid_at(retired.valid_until)
    assert new.valid_at(new.valid_from)
    trusted = retired.trusted()  # as a verifier sees it in the trust root
    assert trusted.valid_at(retired.valid_from) and not trusted.valid_at(retired.valid_until)


def test_approver_groups_and_identity_are_set_at_enrolment_and_exported(tmp_path: Path) -> None:
    """`fiat keys add --role approver --group … --identity …`: listed, in the trust root, kept by rotation."""
    home = tmp_path / "h"
    fiat("init", "--home", str(home))
    added = fiat(
        *("keys", "add", "--role", "approver", "--name", "alice", "--group", "ops", "--group", "sec"),
        *("--identity", "user:alice", "--home", str(home)),
    ).stdout
    assert "groups: ops, sec" in added and "identity user:alice" in added, added
    solo = fiat("keys", "add", "--role", "approver", "--name", "carol", "--home", str(home)).stdout
    assert "groups: none" in solo and "identity user:carol" in solo, solo
    (alice,) = [k for k in keys(home) if k["name"] == "alice"]
    assert alice["groups"] == ["ops", "sec"] and alice["identity"] == "user:alice"
    listed = fiat("keys", "list", "--home", str(home)).stdout
    assert "identity user:alice, groups ops,sec" in listed and "identity user:carol, groups none" in listed, listed
    exported = json.loads(fiat("trust-root", "export", "--home", str(home)).stdout)
    (entry,) = [k for k in exported["keys"] if k["name"] == "alice"]
    assert entry["groups"] == ["ops", "sec"] and entry["identity"] == "user:alice"
    root = TrustRoot.from_json(exported)
    a, c = (next(k for k in root.by_role("approver") if k.name == n) for n in ("alice", "carol"))
    assert a.approves_group("ops") and a.approves_group("sec") and not a.approves_group("payments-owners")
    assert not c.approves_group("ops") and c.approves_group("default")  # no group: only @approval naming none
    assert a.principal == 'User::"alice"' and c.principal == 'User::"carol"'
    # A trust root from before groups (approver keys without groups or identity) still loads.
    for k in exported["keys"]:
        k.pop("groups", None)
        k.pop("identity", None)
    old = TrustRoot.from_json(exported)
    assert all(k.groups == () and k.identity is None for k in old.keys)
    # Groups belong to approver keys only, and are well-formed.
    bad = dict(exported, keys=[dict(exported["keys"][0], groups=["ops"])])  # the authority key
    with pytest.raises(MalformedError, match="only approver keys"):
        TrustRoot.from_json(bad)
    refused = fiat_text("keys", "add", "--role", "runtime", "--name", "n", "--group", "ops", "--home", str(home))
    assert refused.returncode == 2 and "approver keys" in refused.stderr, refused.stderr
    refused = fiat_text("keys", "add", "--role", "approver", "--name", "d", "--group", "o p", "--home", str(home))
    assert refused.returncode != 0 and "not a group name" in refused.stderr, refused.stderr
    # A rotated approver key keeps who holds it and its groups.
    fiat("keys", "rotate", "--role", "approver", "--name", "alice", "--home", str(home))
    current = [k for k in keys(home) if k["name"] == "alice" and "validUntil" not in k]
    assert len(current) == 1 and current[0]["groups"] == ["ops", "sec"] and current[0]["identity"] == "user:alice"
