"""End-to-end tests of the ``fiat`` command line: real processes, real files, no mocks.

Every command runs as ``python -m fiat.cli.main ...`` in a child process with a
scrubbed environment (no inherited ``FIAT_*`` variables, no colour), and the
documented exit codes are checked: 0 ok, 1 verification failed, 2 invalid
input, 3 operational error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support import EXAMPLES
from support.processes import EXIT_ERROR, EXIT_FAILED, EXIT_INVALID, FiatServer, clean_env, err, fiat, ok

PROOF_HEADER = b"c2sp.org/tlog-proof@v1"


# -- helpers ------------------------------------------------------------------------


def out(p: subprocess.CompletedProcess[bytes]) -> str:
    return p.stdout.decode("utf-8")


def init(home: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, object]:
    return json.loads(out(ok(fiat("init", "--home", home, "--json", *extra, env=env))))


def vkey(home: Path) -> str:
    return out(ok(fiat("log", "vkey", "--home", home))).strip()


def read_log(home: Path) -> tuple[int, list[bytes]]:
    """(tree size, all entries) read in-process through the public API."""
    from fiat.config import load_config
    from fiat.wiring import open_log

    with clean_env():
        log = open_log(load_config(home, require=True))
        try:
            size = log.checkpoint().size
            return size, log.read_entries(0, size)
        finally:
            log.close()
            log.store.close()


def append_in_process(home: Path, entries: list[bytes]) -> None:
    from fiat.config import load_config
    from fiat.wiring import open_log

    with clean_env():
        log = open_log(load_config(home, require=True))
        try:
            log.append_many(entries)
        finally:
            log.close()
            log.store.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- fiat init ----------------------------------------------------------------------


def test_init_creates_home_config_and_private_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    report = init(home)
    assert report["home"] == str(home)
    assert {"fiat.toml", "keys/log.pem"} <= set(report["created"])
    assert report["kept"] == []
    assert (home / "fiat.toml").is_file()
    key = home / "keys" / "log.pem"
    assert key.is_file()
    assert mode(key) == 0o600
    assert mode(home) == 0o700
    # Every private key the home holds is 0600.
    pems = sorted((home / "keys").glob("*.pem"))
    assert key in pems
    for pem in pems:
        assert mode(pem) == 0o600, pem
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # The config written is valid TOML naming the default origin.
    import tomllib

    cfg = tomllib.loads((home / "fiat.toml").read_text())
    assert cfg["log"]["origin"] == "fiat.local/log"
    assert report["vkey"] == vkey(home)
    # An empty log exists: its checkpoint has size 0.
    assert read_log(home) == (0, [])


def test_init_is_idempotent_and_keeps_the_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = init(home)
    key = home / "keys" / "log.pem"
    key_bytes = key.read_bytes()
    config_bytes = (home / "fiat.toml").read_bytes()

    second = init(home, "--origin", "other.example/log")  # --origin only applies to new homes
    assert second["created"] == []
    assert {"fiat.toml", "keys/log.pem"} <= set(second["kept"])
    assert len(second["kept"]) == len(first["created"])
    assert second["vkey"] == first["vkey"]
    assert key.read_bytes() == key_bytes
    assert (home / "fiat.toml").read_bytes() == config_bytes
    assert mode(key) == 0o600

    # Human output of a re-run says what was kept.
    p = ok(fiat("init", "--home", home))
    assert "kept" in out(p)
    assert "created" not in out(p)
    assert key.read_bytes() == key_bytes


def test_init_never_overwrites_an_existing_key(tmp_path: Path) -> None:
    donor = tmp_path / "donor"
    donor_vkey = init(donor)["vkey"]

    # A home whose key file exists before `fiat init` ever ran keeps that key.
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    shutil.copy2(donor / "keys" / "log.pem", home / "keys" / "log.pem")
    report = init(home)
    assert "fiat.toml" in report["created"]
    assert "keys/log.pem" in report["kept"]
    assert report["vkey"] == donor_vkey
    assert (home / "keys" / "log.pem").read_bytes() == (donor / "keys" / "log.pem").read_bytes()

    # Losing fiat.toml does not cost the key either: init recreates only the config.
    (home / "fiat.toml").unlink()
    report = init(home)
    assert report["created"] == ["fiat.toml"]
    assert report["vkey"] == donor_vkey


def test_init_recreates_permissions_of_an_existing_home_dir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    init(home)
    assert mode(home) == 0o700


# -- home resolution and configuration -----------------------------------------------


def test_home_resolution_flag_env_and_default(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    flag_home, env_home = tmp_path / "flag", tmp_path / "env"

    # Default: ./.fiat relative to the working directory.
    p = ok(fiat("init", "--json", cwd=cwd))
    assert json.loads(out(p))["home"] == ".fiat"
    assert (cwd / ".fiat" / "fiat.toml").is_file()
    default_vkey = out(ok(fiat("log", "vkey", cwd=cwd))).strip()

    # $FIAT_HOME when there is no --home.
    p = ok(fiat("init", "--json", cwd=cwd, env={"FIAT_HOME": str(env_home)}))
    assert json.loads(out(p))["home"] == str(env_home)
    assert (env_home / "keys" / "log.pem").is_file()
    env_vkey = out(ok(fiat("log", "vkey", cwd=cwd, env={"FIAT_HOME": str(env_home)}))).strip()
    assert env_vkey != default_vkey

    # --home wins over $FIAT_HOME.
    p = ok(fiat("init", "--home", flag_home, "--json", cwd=cwd, env={"FIAT_HOME": str(env_home)}))
    doc = json.loads(out(p))
    assert doc["home"] == str(flag_home)
    assert doc["vkey"] not in (default_vkey, env_vkey)
    assert sorted(x.name for x in cwd.iterdir()) == [".fiat"]


def test_missing_home_is_an_operational_error(tmp_path: Path) -> None:
    p = fiat("log", "vkey", "--home", tmp_path / "nowhere")
    assert p.returncode == EXIT_ERROR
    assert "fiat init" in err(p)
    assert "nowhere" in err(p)


def test_env_override_sets_origin_of_a_new_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    report = init(home, env={"FIAT_LOG_ORIGIN": "example.org/env-log"})
    assert str(report["vkey"]).startswith("example.org/env-log+")
    assert 'origin = "example.org/env-log"' in (home / "fiat.toml").read_text()
    # Without the variable the home keeps the origin written at init.
    assert vkey(home).startswith("example.org/env-log+")
    # And the --origin flag does the same for a new home.
    other = tmp_path / "other"
    assert str(init(other, "--origin", "flag.example/log")["vkey"]).startswith("flag.example/log+")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh home with the default origin, made in-process (the tests using it are about other commands)."""
    from fiat.home import init_home

    h = tmp_path / "home"
    with clean_env():
        init_home(h)
    return h


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"FIAT_SERVER_PORT": "abc"}, "FIAT_SERVER_PORT"),
        ({"FIAT_SERVER_PORT": "70000"}, "server.port"),
        ({"FIAT_LOG_BATCH_MAX_ENTRIES": "0"}, "batch_max_entries"),
        ({"FIAT_STORAGE_BACKEND": "postgres"}, "postgres"),
        ({"FIAT_LOG_ORIGIN": "has space"}, "log.origin"),
    ],
)
def test_invalid_env_override_is_an_operational_error(home: Path, env: dict[str, str], needle: str) -> None:
    p = fiat("log", "vkey", "--home", home, env=env)
    assert p.returncode == EXIT_ERROR, err(p)
    assert needle in err(p)
    assert "error:" in err(p)
    assert "Traceback" not in err(p)


def test_invalid_env_override_refuses_init_of_a_new_home(tmp_path: Path) -> None:
    p = fiat("init", "--home", tmp_path / "new", env={"FIAT_SERVER_PORT": "abc"})
    assert p.returncode == EXIT_ERROR
    assert "FIAT_SERVER_PORT" in err(p)
    assert "'abc'" in err(p)
    assert not (tmp_path / "new" / "keys" / "log.pem").exists()


def test_bad_toml_is_an_operational_error(home: Path) -> None:
    (home / "fiat.toml").write_text("[log]\norigin = \n")
    p = fiat("log", "vkey", "--home", home)
    assert p.returncode == EXIT_ERROR
    assert "not valid TOML" in err(p)
    assert "fiat.toml" in err(p)


def test_unknown_setting_is_an_operational_error(home: Path) -> None:
    (home / "fiat.toml").write_text('[log]\norigin = "fiat.local/log"\nfoo = 1\n')
    p = fiat("log", "vkey", "--home", home)
    assert p.returncode == EXIT_ERROR
    assert "unknown setting log.foo" in err(p)


def test_wrongly_typed_setting_is_an_operational_error(home: Path) -> None:
    (home / "fiat.toml").write_text('[server]\nport = "eighty"\n')
    p = fiat("log", "vkey", "--home", home)
    assert p.returncode == EXIT_ERROR
    assert "server.port" in err(p)
    assert "integer" in err(p)


def test_unknown_section_is_an_operational_error(home: Path) -> None:
    (home / "fiat.toml").write_text("[bogus]\nx = 1\n")
    p = fiat("log", "vkey", "--home", home)
    assert p.returncode == EXIT_ERROR
    assert "unknown section" in err(p)


def test_unknown_section_message_names_the_section(home: Path) -> None:
    (home / "fiat.toml").write_text("[bogus]\nx = 1\n")
    p = fiat("log", "vkey", "--home", home)
    assert p.returncode == EXIT_ERROR
    assert "[bogus]" in err(p)


def test_init_with_invalid_origin_leaves_no_broken_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = fiat("init", "--home", home, "--origin", "bad origin")
    assert p.returncode in (EXIT_INVALID, EXIT_ERROR)
    assert "bad origin" in err(p)
    # A corrected re-run must be able to create the home.
    init(home, "--origin", "good.example/log")


def test_group_readable_key_is_refused(home: Path) -> None:
    key = home / "keys" / "log.pem"
    os.chmod(key, 0o644)
    for args in (("log", "vkey"), ("init",)):
        p = fiat(*args, "--home", home)
        assert p.returncode == EXIT_ERROR, (args, err(p))
        assert "chmod 600" in err(p), err(p)
        assert str(key) in err(p)
    p = fiat("log", "append", "--lines", "--home", home, stdin=b"x\n")
    assert p.returncode == EXIT_ERROR
    assert "chmod 600" in err(p)
    os.chmod(key, 0o600)
    assert read_log(home)[0] == 0  # nothing was appended with the unsafe key


# -- fiat log vkey / checkpoint -------------------------------------------------------


def test_vkey_format(home: Path) -> None:
    v = vkey(home)
    origin, key_id_hex, key_b64 = v.split("+", 2)
    assert origin == "fiat.local/log"
    assert len(key_id_hex) == 8
    assert all(c in "0123456789abcdef" for c in key_id_hex)
    material = base64.b64decode(key_b64, validate=True)
    assert len(material) == 33
    assert material[0] == 0x01  # Ed25519
    # The public key is the one in keys/log.pem, and the key ID is per signed-note.
    private = serialization.load_pem_private_key((home / "keys" / "log.pem").read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    assert material[1:] == private.public_key().public_bytes_raw()
    expected_id = hashlib.sha256(origin.encode() + b"\n" + material).digest()[:4].hex()
    assert key_id_hex == expected_id


def test_checkpoint_prints_the_signed_note(home: Path) -> None:
    text = out(ok(fiat("log", "checkpoint", "--home", home)))
    lines = text.split("\n")
    assert lines[0] == "fiat.local/log"
    assert lines[1] == "0"
    assert base64.b64decode(lines[2]) == hashlib.sha256(b"").digest()  # RFC 6962 empty tree
    assert lines[3] == ""
    assert lines[4].startswith("\u2014 fiat.local/log ")
    assert text.endswith("\n")

    append_in_process(home, [b"one", b"two"])
    lines = out(ok(fiat("log", "checkpoint", "--home", home))).split("\n")
    assert lines[1] == "2"
    leaves = [hashlib.sha256(b"\x00" + e).digest() for e in (b"one", b"two")]
    assert base64.b64decode(lines[2]) == hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()


# -- fiat log append ------------------------------------------------------------------


def test_append_files_prints_indexes_in_order(home: Path, tmp_path: Path) -> None:
    files = []
    for i, content in enumerate([b"first", b"", b"third \xff binary\n"]):
        f = tmp_path / f"entry{i}.bin"
        f.write_bytes(content)
        files.append(f)
    p = ok(fiat("log", "append", *files, "--home", home))
    assert out(p).split() == ["0", "1", "2"]
    p = ok(fiat("log", "append", files[2], files[0], "--home", home))
    assert out(p).split() == ["3", "4"]
    assert read_log(home) == (5, [b"first", b"", b"third \xff binary\n", b"third \xff binary\n", b"first"])


def test_append_lines_from_stdin(home: Path) -> None:
    p = ok(fiat("log", "append", "--lines", "--home", home, stdin=b"alpha\nbeta\n\ngamma"))
    assert out(p).split() == ["0", "1", "2", "3"]
    assert read_log(home) == (4, [b"alpha", b"beta", b"", b"gamma"])


def test_append_json_output(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "e.txt"
    f.write_bytes(b"hello")
    ok(fiat("log", "append", "--lines", "--home", home, stdin=b"zero\n"))
    doc = json.loads(out(ok(fiat("log", "append", f, f, "--home", home, "--json"))))
    assert doc["indexes"] == [1, 2]
    assert doc["entries"] == [{"source": str(f), "index": 1}, {"source": str(f), "index": 2}]
    cp = doc["checkpoint"].split("\n")
    assert cp[0] == "fiat.local/log"
    assert cp[1] == "3"
    assert doc["checkpoint"] == out(ok(fiat("log", "checkpoint", "--home", home)))

    doc = json.loads(out(ok(fiat("log", "append", "--lines", "--home", home, "--json", stdin=b"a\nb\n"))))
    assert doc["indexes"] == [3, 4]
    assert [e["source"] for e in doc["entries"]] == ["stdin:1", "stdin:2"]


def test_append_size_limit(home: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"s")
    too_big = tmp_path / "too-big.bin"
    too_big.write_bytes(b"\xab" * 65_536)
    just_right = tmp_path / "just-right.bin"
    just_right.write_bytes(b"\xcd" * 65_535)

    p = fiat("log", "append", too_big, "--home", home)
    assert p.returncode == EXIT_INVALID
    assert "too-big.bin" in err(p)
    assert "65,535" in err(p)
    assert out(p) == ""
    assert read_log(home)[0] == 0

    # One oversized file in a batch refuses the whole batch: nothing is appended.
    p = fiat("log", "append", small, too_big, "--home", home)
    assert p.returncode == EXIT_INVALID
    assert "too-big.bin" in err(p)
    assert out(p) == ""
    assert read_log(home)[0] == 0

    p = fiat("log", "append", "--lines", "--home", home, stdin=b"ok\n" + b"x" * 65_536 + b"\n")
    assert p.returncode == EXIT_INVALID
    assert "stdin:2" in err(p)
    assert read_log(home)[0] == 0

    p = ok(fiat("log", "append", just_right, "--home", home))
    assert out(p).split() == ["0"]
    assert read_log(home) == (1, [b"\xcd" * 65_535])


def test_append_usage_errors(home: Path, tmp_path: Path) -> None:
    p = fiat("log", "append", "--home", home)
    assert p.returncode == EXIT_INVALID
    assert "nothing to append" in err(p)
    f = tmp_path / "f"
    f.write_bytes(b"f")
    p = fiat("log", "append", f, "--lines", "--home", home, stdin=b"x\n")
    assert p.returncode == EXIT_INVALID
    p = fiat("log", "append", tmp_path / "missing.bin", "--home", home)
    assert p.returncode == EXIT_INVALID
    assert "missing.bin" in err(p)
    assert read_log(home)[0] == 0


# -- fiat log proof / verify-proof ----------------------------------------------------


ENTRIES = [b"entry %d" % i for i in range(37)]


@pytest.fixture(scope="module")
def proof_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home holding ENTRIES (read-only for the tests that use it) and its vkey."""
    h = tmp_path_factory.mktemp("proofs") / "home"
    init(h, "--origin", "proof.example/log")
    ok(fiat("log", "append", "--lines", "--home", h, stdin=b"\n".join(ENTRIES) + b"\n"))
    return h, vkey(h)


@pytest.fixture(scope="module")
def proof_file(proof_home: tuple[Path, str]) -> Path:
    """A proof of entry 13 written by `fiat log proof -o` (read-only for the tests that use it)."""
    h, _ = proof_home
    path = h.parent / "entry.tlog-proof"
    p = ok(fiat("log", "proof", "13", "--home", h, "-o", path))
    assert "13" in err(p)
    return path


def make_vkey(origin: str) -> str:
    """A fresh Ed25519 verifier key for ``origin``, built per signed-note without Fiat's help."""
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    material = b"\x01" + public
    key_id = hashlib.sha256(origin.encode() + b"\n" + material).digest()[:4].hex()
    return f"{origin}+{key_id}+{base64.b64encode(material).decode()}"


def entry_file(tmp_path: Path, data: bytes) -> Path:
    f = tmp_path / f"entry-{hashlib.sha256(data).hexdigest()[:8]}.bin"
    f.write_bytes(data)
    return f


def verify_proof(proof: Path, v: str, entry: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return fiat("log", "verify-proof", proof, "--vkey", v, "--entry", entry, *extra)


def test_a_proof_is_held_to_a_witness_policy(proof_file: Path, proof_home: tuple[Path, str], tmp_path: Path) -> None:
    """tlog-proof §Verifying step 3 with ``--witness``/``--quorum``: the checkpoint's cosignatures
    (C2SP tlog-cosignature) by the given witnesses are counted; a forged one counts for nothing."""
    from fiat.tlog import cosignature
    from fiat.tlog.proof_file import TlogProof
    from fiat.verify.trust_root import cosigner_vkey

    _, v = proof_home
    keys = [(f"witness.test/w{i}", Ed25519PrivateKey.generate()) for i in (1, 2, 3)]
    vkeys = [cosigner_vkey(name, k.public_key().public_bytes_raw()) for name, k in keys]
    parsed = TlogProof.parse(proof_file.read_bytes())
    cp = parsed.checkpoint
    for name, k in keys[:2]:
        cp = cosignature.cosign(cp, name, k, 1_700_000_000)
    cosigned = tmp_path / "cosigned.tlog-proof"
    cosigned.write_bytes(TlogProof(parsed.index, parsed.path, cp, parsed.extra).encode())
    entry = entry_file(tmp_path, ENTRIES[13])
    policy = [a for vk in vkeys for a in ("--witness", vk)]
    p = ok(verify_proof(cosigned, v, entry, *policy, "--quorum", "2"))
    assert "witnessed by 2 of 3" in out(p)
    doc = json.loads(out(ok(verify_proof(cosigned, v, entry, *policy, "--quorum", "2", "--json"))))
    assert doc["cosigners"] == ["witness.test/w1", "witness.test/w2"] and "cosignatures" in doc["steps"]
    p = verify_proof(cosigned, v, entry, *policy, "--quorum", "3")
    assert p.returncode == EXIT_FAILED and "'cosignatures'" in err(p) and "2 valid" in err(p), err(p)
    # A cosignature line whose signature was altered: the witness's line is there, and counts for nothing.
    text = cp.decode()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    forged_line = last[:-6] + ("AAAA==" if not last.endswith("AAAA==") else "BBBB==")
    forged = tmp_path / "forged.tlog-proof"
    forged.write_bytes(
        TlogProof(parsed.index, parsed.path, text.replace(last, forged_line).encode(), parsed.extra).encode()
    )
    p = verify_proof(forged, v, entry, *policy, "--quorum", "2")
    assert p.returncode == EXIT_FAILED and "1 valid" in err(p), err(p)
    # A quorum larger than the keys given is a usage error, not a verdict.
    assert verify_proof(cosigned, v, entry, "--witness", vkeys[0], "--quorum", "2").returncode == EXIT_INVALID
    assert verify_proof(cosigned, v, entry, "--witness", v, "--quorum", "1").returncode == EXIT_INVALID


def test_proof_verifies(proof_home: tuple[Path, str], proof_file: Path, tmp_path: Path) -> None:
    h, v = proof_home
    data = proof_file.read_bytes()
    assert data.startswith(PROOF_HEADER + b"\nindex 13\n")
    # The embedded checkpoint is the log's current one, verbatim.
    assert data.endswith(ok(fiat("log", "checkpoint", "--home", h)).stdout)
    # Writing to stdout produces the same bytes.
    assert ok(fiat("log", "proof", "13", "--home", h)).stdout == data

    entry = entry_file(tmp_path, ENTRIES[13])
    p = ok(verify_proof(proof_file, v, entry))
    assert "verified" in out(p)
    doc = json.loads(out(ok(verify_proof(proof_file, v, entry, "--json"))))
    assert doc["verified"] is True
    assert doc["index"] == 13
    assert doc["treeSize"] == len(ENTRIES)
    assert doc["origin"] == "proof.example/log"
    assert "inclusion-proof" in doc["steps"]

    # The vkey may also come from a file; the proof from stdin.
    vfile = tmp_path / "log.vkey"
    vfile.write_text(v + "\n")
    p = fiat("log", "verify-proof", "-", "--vkey", vfile, "--entry", entry, stdin=data)
    ok(p)


def test_proof_for_every_position(proof_home: tuple[Path, str], tmp_path: Path) -> None:
    """First, last and a power-of-two boundary: proofs of different shapes all verify."""
    h, v = proof_home
    for index in (0, 32, len(ENTRIES) - 1):
        path = tmp_path / f"{index}.tlog-proof"
        ok(fiat("log", "proof", str(index), "--home", h, "-o", path))
        ok(verify_proof(path, v, entry_file(tmp_path, ENTRIES[index])))


def test_proof_wrong_entry_fails_inclusion(proof_home: tuple[Path, str], proof_file: Path, tmp_path: Path) -> None:
    _, v = proof_home
    p = verify_proof(proof_file, v, entry_file(tmp_path, ENTRIES[12]))
    assert p.returncode == EXIT_FAILED
    assert "inclusion-proof" in err(p)
    doc = json.loads(out(verify_proof(proof_file, v, entry_file(tmp_path, b"not in the log"), "--json")))
    assert doc == {"verified": False, "step": "inclusion-proof", "reason": doc["reason"]}


def _tamper_signature(proof: bytes) -> bytes:
    head, sep, sig_line = proof.rstrip(b"\n").rpartition(b"\n")
    prefix, _, sig_b64 = sig_line.rpartition(b" ")
    raw = bytearray(base64.b64decode(sig_b64))
    raw[-1] ^= 0x01  # a bit of the Ed25519 signature itself, not the key ID
    return head + sep + prefix + b" " + base64.b64encode(bytes(raw)) + b"\n"


def test_proof_tampered_signature_fails(proof_home: tuple[Path, str], proof_file: Path, tmp_path: Path) -> None:
    _, v = proof_home
    bad = tmp_path / "bad-sig.tlog-proof"
    bad.write_bytes(_tamper_signature(proof_file.read_bytes()))
    entry = entry_file(tmp_path, ENTRIES[13])
    p = verify_proof(bad, v, entry)
    assert p.returncode == EXIT_FAILED
    assert "note-signature" in err(p) or "checkpoint-signature" in err(p)
    doc = json.loads(out(verify_proof(bad, v, entry, "--json")))
    assert doc["verified"] is False
    assert doc["step"] in ("note-signature", "checkpoint-signature")


def test_proof_tampered_checkpoint_text_fails(proof_home: tuple[Path, str], proof_file: Path, tmp_path: Path) -> None:
    _, v = proof_home
    data = proof_file.read_bytes()
    size_line = b"\n%d\n" % len(ENTRIES)
    assert size_line in data
    bad = tmp_path / "bad-size.tlog-proof"
    bad.write_bytes(data.replace(size_line, b"\n%d\n" % (len(ENTRIES) + 1)))
    doc = json.loads(out(verify_proof(bad, v, entry_file(tmp_path, ENTRIES[13]), "--json")))
    assert doc["verified"] is False
    assert doc["step"] in ("note-signature", "checkpoint-signature")


def test_proof_wrong_vkey_fails(proof_home: tuple[Path, str], proof_file: Path, tmp_path: Path) -> None:
    _, v = proof_home
    entry = entry_file(tmp_path, ENTRIES[13])
    # Same origin, different key.
    other = make_vkey("proof.example/log")
    assert other.split("+")[0] == v.split("+")[0]
    p = verify_proof(proof_file, other, entry)
    assert p.returncode == EXIT_FAILED
    assert "note-signature" in err(p) or "checkpoint-signature" in err(p)
    # Different origin altogether.
    p = verify_proof(proof_file, make_vkey("stranger.example/log"), entry)
    assert p.returncode == EXIT_FAILED
    # A vkey that is not a vkey is invalid input.
    p = verify_proof(proof_file, "proof.example/log+zzzz+AAAA", entry)
    assert p.returncode == EXIT_INVALID


@pytest.mark.parametrize("kind", ["truncated", "garbage", "missing-header", "empty", "bad-index", "bad-hash"])
def test_malformed_proof_file_is_invalid_input(
    proof_home: tuple[Path, str], proof_file: Path, tmp_path: Path, kind: str
) -> None:
    _, v = proof_home
    data = proof_file.read_bytes()
    mangled = {
        "truncated": data[:40],
        "garbage": bytes(range(256)) * 4,
        "missing-header": data.split(b"\n", 1)[1],
        "empty": b"",
        "bad-index": data.replace(b"index 13\n", b"index 013\n"),
        "bad-hash": data.replace(b"index 13\n", b"index 13\nnot*base64\n"),
    }[kind]
    assert mangled != data
    bad = tmp_path / "malformed.tlog-proof"
    bad.write_bytes(mangled)
    entry = entry_file(tmp_path, ENTRIES[13])
    p = verify_proof(bad, v, entry)
    assert p.returncode == EXIT_INVALID, (p.returncode, err(p))
    assert "malformed tlog-proof" in err(p)
    assert "Traceback" not in err(p)


def test_malformed_proof_file_json(proof_home: tuple[Path, str], proof_file: Path, tmp_path: Path) -> None:
    _, v = proof_home
    bad = tmp_path / "malformed.tlog-proof"
    bad.write_bytes(b"garbage\n\ngarbage\n")
    p = verify_proof(bad, v, entry_file(tmp_path, ENTRIES[13]), "--json")
    assert p.returncode == EXIT_INVALID
    doc = json.loads(out(p))
    assert doc["verified"] is False
    assert doc["step"] == "parse"
    assert "tlog-proof" in doc["reason"]


def test_proof_truncated_inside_checkpoint_is_invalid_input(
    proof_home: tuple[Path, str], proof_file: Path, tmp_path: Path
) -> None:
    _, v = proof_home
    bad = tmp_path / "cut.tlog-proof"
    bad.write_bytes(proof_file.read_bytes()[:-10])
    p = verify_proof(bad, v, entry_file(tmp_path, ENTRIES[13]))
    assert p.returncode == EXIT_INVALID, err(p)


def test_proof_beyond_the_tree_is_a_clear_error(proof_home: tuple[Path, str], tmp_path: Path) -> None:
    h, _ = proof_home
    target = tmp_path / "nope.tlog-proof"
    for index in (len(ENTRIES), 10**6):
        p = fiat("log", "proof", str(index), "--home", h, "-o", target)
        assert p.returncode == EXIT_INVALID, err(p)
        assert f"entry {index} is not in the log of size {len(ENTRIES)}" in err(p)
        assert "Traceback" not in err(p)
        assert not target.exists()


def test_proof_unreadable_inputs(proof_home: tuple[Path, str], proof_file: Path, tmp_path: Path) -> None:
    _, v = proof_home
    p = verify_proof(tmp_path / "absent.tlog-proof", v, entry_file(tmp_path, ENTRIES[13]))
    assert p.returncode == EXIT_INVALID
    assert "absent.tlog-proof" in err(p)
    p = verify_proof(proof_file, v, tmp_path / "absent.bin")
    assert p.returncode == EXIT_INVALID
    assert "absent.bin" in err(p)


# -- fiat authorize against a running `fiat serve` ---------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A fresh home with the shipped example policies, served by a real `fiat serve` on 127.0.0.1."""
    home = tmp_path_factory.mktemp("served") / "home"
    init(home)
    ok(fiat("policy", "publish", EXAMPLES, "--home", home))
    with FiatServer(home) as server:
        yield home, server.url


def authorize_cli(served: tuple[Path, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    home, url = served
    return fiat("authorize", "--home", home, "--url", url, *args)


@pytest.mark.parametrize(
    ("action", "resource", "context", "policy"),
    [
        ("deploy", "service:docs", {"version": "1.2", "replicas": 3}, "platform-deploys"),
        ("shell:run", "repo:fiat", {"command": {"argv": ["make", "release"], "cwd": "."}}, "bot-shell-in-repo"),
    ],
)
def test_authorize_sends_environment_evidence_so_the_shipped_policies_permit(
    served: tuple[Path, str], action: str, resource: str, context: dict[str, object], policy: str
) -> None:
    # The shipped policies permit only from a verified environment: without Evidence, a denial.
    args = ("--principal", "agent:release-bot", "--action", action, "--resource", resource)
    result = json.loads(out(ok(authorize_cli(served, *args, "--context", json.dumps(context), "--json"))))
    assert result["decision"] == "allow", result
    assert result["determiningPolicies"] == [policy]
    assert result["reasons"] == [f"permitted by policy {policy} ({action.split(':')[0]}.cedar:2)"]
    p = ok(authorize_cli(served, *args, "--context", json.dumps(context)))
    assert out(p).startswith(f"allow: permitted by {policy}")
    assert f"- permitted by policy {policy} (" in out(p)


def test_authorize_denial_says_why(served: tuple[Path, str]) -> None:
    deploy = ("--action", "deploy", "--resource", "service:docs")
    p = authorize_cli(served, "--principal", "agent:x", *deploy, "--context", '{"version": "1", "replicas": 3}')
    assert p.returncode == EXIT_FAILED
    assert out(p).startswith("deny: no policy permits it (deny by default)")
    assert '- principal Agent::"x" is unknown to the entities' in out(p)
    p = authorize_cli(
        served, "--principal", "agent:release-bot", *deploy, "--context", '{"version": "1", "replicas": 60}'
    )
    assert p.returncode == EXIT_FAILED
    assert "- forbidden by policy replica-ceiling (deploy.cedar:15)" in out(p)
    result = json.loads(out(authorize_cli(served, "--principal", "agent:x", *deploy, "--context", "{}", "--json")))
    assert result["decision"] == "deny"
    assert any("to have an attribute" in r for r in result["reasons"]), result  # Cedar's diagnostics


# -- one JSON key style -------------------------------------------------------------------------


def test_camel_keys_converts_every_key_and_leaves_values_alone() -> None:
    from fiat.cli.common import camel_keys

    doc = {"tree_size": 1, "in_process": [{"per_s": 2, "name": "a_b"}], "ratio": 0.5, "http_closed": None}
    want = {"treeSize": 1, "inProcess": [{"perS": 2, "name": "a_b"}], "ratio": 0.5, "httpClosed": None}
    assert camel_keys(doc) == want


def test_bench_json_keys_are_camel_case() -> None:
    p = ok(fiat("bench", "verify", "--json", "--bundles", "1", "--seconds", "0.05"))
    doc = json.loads(out(p))

    def keys(obj: object) -> list[str]:
        if isinstance(obj, dict):
            return [k for k, v in obj.items() for k in (k, *keys(v))]
        if isinstance(obj, list):
            return [k for v in obj for k in keys(v)]
        return []

    assert "bundlesPerS" in doc and "floorPerBundleUs" in doc, doc
    assert not [k for k in keys(doc) if "_" in k], doc


def test_log_serve_on_a_busy_port_says_so_before_any_banner(home: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = fiat("log", "serve", "--home", home, "--host", "127.0.0.1", "--port", port)
    assert p.returncode == EXIT_ERROR, err(p)
    assert f"port {port} is already in use" in err(p) and "--port" in err(p), err(p)
    assert "serving the log" not in err(p)


def test_log_entry_of_a_plain_entry(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "e"
    f.write_bytes(b"\x00raw bytes\xff")
    ok(fiat("log", "append", f, "--home", home))
    assert ok(fiat("log", "entry", "0", "--home", home)).stdout == b"\x00raw bytes\xff"
    p = fiat("log", "entry", "0", "--decode", "--home", home)
    assert p.returncode == EXIT_INVALID and "neither a permit" in err(p), err(p)


def test_a_malformed_scope_is_refused_before_anything_runs(home: Path, tmp_path: Path) -> None:
    """``--scope ACTION@RESOURCE``: a pair without ``@`` or with a resource that is no entity name is a usage error."""
    marker = tmp_path / "ran"
    for bad, needle in (("deploy", "is not ACTION@RESOURCE"), ("deploy@no-colon", "neither Type::")):
        p = fiat(
            *("run", "--principal", "agent:a", "--action", "deploy", "--resource", "service:x", "--scope", bad),
            *("--home", home, "--", "touch", marker),
        )
        assert p.returncode == EXIT_INVALID, (bad, err(p))
        assert needle in err(p), err(p)
        p = fiat(
            "authorize", "--principal", "agent:a", "--action", "x", "--resource", "s:x", "--scope", bad, "--home", home
        )
        assert p.returncode == EXIT_INVALID and needle in err(p), err(p)
    assert not marker.exists()
