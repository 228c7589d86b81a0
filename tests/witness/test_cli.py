"""``fiat witness init / add-log / vkey / status / serve``: outputs, files and errors that say what to do."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx

from fiat.tlog import cosignature, note
from support.processes import EXIT_ERROR, err, fiat_text, ok
from support.witnesses import WitnessProc, make_witness_home
from witness.conftest import MemoryLog


def test_init_makes_a_private_witness_home_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "w"
    first = json.loads(ok(fiat_text("witness", "init", "--home", home, "--name", "witness.test/a", "--json")).stdout)
    assert first["name"] == "witness.test/a"
    assert set(first["created"]) == {"fiat.toml", "keys/witness.pem", "keys/witness-mldsa.key", "witness-logs.txt"}
    name, alg, public = cosignature.parse_vkey(first["vkey"])
    assert (name, alg, len(public)) == ("witness.test/a", 0x04, 32)
    assert cosignature.parse_vkey(first["mldsaVkey"])[1] == 0x06
    for f in ("fiat.toml", "keys/witness.pem", "keys/witness-mldsa.key", "witness-logs.txt"):
        assert stat.S_IMODE((home / f).stat().st_mode) == 0o600, f
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    again = json.loads(ok(fiat_text("witness", "init", "--home", home, "--name", "witness.test/a", "--json")).stdout)
    assert again["created"] == [] and again["vkey"] == first["vkey"]  # keys are never replaced
    assert ok(fiat_text("witness", "vkey", "--home", home)).stdout == first["vkey"] + "\n"
    assert ok(fiat_text("witness", "vkey", "--mldsa", "--home", home)).stdout == first["mldsaVkey"] + "\n"


def test_init_errors(tmp_path: Path) -> None:
    p = fiat_text("witness", "init", "--home", tmp_path / "x", "--name", "bad name")
    assert p.returncode == EXIT_ERROR and "not a valid witness name" in err(p) and "witness.example/w1" in err(p)
    ok(fiat_text("witness", "init", "--home", tmp_path / "y", "--name", "witness.test/y"))
    p = fiat_text("witness", "init", "--home", tmp_path / "y", "--name", "witness.test/other")
    assert p.returncode == EXIT_ERROR and "already the home of the witness 'witness.test/y'" in err(p)


def test_commands_on_a_home_that_is_not_a_witness_home(tmp_path: Path) -> None:
    p = fiat_text("witness", "status", "--home", tmp_path / "none")
    assert p.returncode == EXIT_ERROR and "no Fiat home" in err(p)
    ok(fiat_text("init", "--home", tmp_path / "authority"))
    p = fiat_text("witness", "serve", "--home", tmp_path / "authority")
    assert p.returncode == EXIT_ERROR and "not a witness home" in err(p) and "fiat witness init" in err(p)


def test_add_log_appends_a_line_and_refuses_bad_or_duplicate_keys(tmp_path: Path) -> None:
    home = make_witness_home(tmp_path, "witness.test/b")
    log = MemoryLog()
    out = json.loads(
        ok(
            fiat_text("witness", "add-log", "--home", home, "--vkey", log.vkey, "--url", "http://l.test/log", "--json")
        ).stdout
    )
    assert out["origin"] == log.origin and out["url"] == "http://l.test/log"
    assert (home / "witness-logs.txt").read_text().endswith(f"log {log.vkey} http://l.test/log\n")
    p = fiat_text("witness", "add-log", "--home", home, "--vkey", log.vkey)
    assert p.returncode == EXIT_ERROR and "already has this log key" in err(p)
    p = fiat_text("witness", "add-log", "--home", home, "--vkey", "nonsense")
    assert p.returncode == EXIT_ERROR and "fiat log vkey" in err(p)
    p = fiat_text("witness", "add-log", "--home", home, "--vkey", MemoryLog().vkey, "--url", "file:///etc")
    assert p.returncode == EXIT_ERROR and "not an http:// or https:// URL" in err(p)
    status = json.loads(ok(fiat_text("witness", "status", "--home", home, "--json")).stdout)
    assert [(x["origin"], x["size"], x["configured"]) for x in status["logs"]] == [(log.origin, None, True)]
    assert "never cosigned" in ok(fiat_text("witness", "status", "--home", home)).stdout


def test_a_broken_logs_file_stops_serve_and_a_later_break_keeps_the_last_good_logs(tmp_path: Path) -> None:
    log = MemoryLog(entries=1)
    home = make_witness_home(tmp_path, "witness.test/c", [log.vkey])
    logs = home / "witness-logs.txt"
    good = logs.read_text()
    logs.write_text(good + "witness w1 nonsense\n")
    p = fiat_text("witness", "serve", "--home", home, "--port", "0", timeout=30)
    assert p.returncode == EXIT_ERROR and "witness-logs.txt:" in err(p) and "do not belong" in err(p)
    logs.write_text(good)
    w = WitnessProc(home, "witness.test/c").start()
    try:
        logs.write_text(good + "log broken\n")
        r = httpx.post(w.url + "/add-checkpoint", content=log.request(0))
        assert r.status_code == 200, r.text  # still the log of the last good read
        assert "still using the logs read before" in w.text()
    finally:
        w.stop()


def test_serve_on_a_busy_port_says_so(tmp_path: Path) -> None:
    home = make_witness_home(tmp_path, "witness.test/d")
    w = WitnessProc(home, "witness.test/d").start()
    try:
        p = fiat_text("witness", "serve", "--home", home, "--port", str(w.port), timeout=30)
        assert p.returncode == EXIT_ERROR and "already in use" in err(p) and "--port" in err(p)
    finally:
        w.stop()
    assert w.proc.returncode == 0  # SIGTERM: a clean exit


def test_without_mldsa_the_witness_answers_one_ed25519_cosignature(tmp_path: Path) -> None:
    log = MemoryLog(entries=2)
    home = make_witness_home(tmp_path, "witness.test/ed-only", [log.vkey])
    cfg = home / "fiat.toml"
    cfg.write_text(cfg.read_text().replace("mldsa = true", "mldsa = false"))
    p = fiat_text("witness", "vkey", "--mldsa", "--home", home)
    assert p.returncode == EXIT_ERROR and "no ML-DSA-44 key" in err(p) and "witness.mldsa = true" in err(p)
    w = WitnessProc(home, "witness.test/ed-only").start()
    try:
        r = httpx.post(w.url + "/add-checkpoint", content=log.request(0))
        assert r.status_code == 200
        (line,) = r.text.splitlines()
        sig = note.parse(log.checkpoint_text().encode() + b"\n" + r.content).signatures[0]
        _, _, ed = cosignature.parse_vkey(w.vkey)
        assert sig.key_id == cosignature.ed25519_key_id(w.name, ed) and line.startswith("\u2014 witness.test/ed-only ")
    finally:
        w.stop()


def test_key_files_readable_by_others_are_refused(tmp_path: Path) -> None:
    home = make_witness_home(tmp_path, "witness.test/keys")
    for name in ("witness-mldsa.key", "witness.pem"):
        key = home / "keys" / name
        key.chmod(0o644)
        p = fiat_text("witness", "serve", "--home", home, "--port", "0", timeout=30)
        assert p.returncode == EXIT_ERROR and "readable by other users" in err(p) and f"chmod 600 {key}" in err(p)
        key.chmod(0o600)
    (home / "keys" / "witness-mldsa.key").write_text("not a seed\n")
    p = fiat_text("witness", "vkey", "--home", home)
    assert p.returncode == EXIT_ERROR and "does not hold an ML-DSA-44 seed" in err(p)
