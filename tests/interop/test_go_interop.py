"""Interoperability with Go's reference packages, byte for byte.

Go's ``golang.org/x/mod/sumdb/note`` and ``golang.org/x/mod/sumdb/tlog`` are
the reference implementations of signed notes and tiled RFC 6962 logs. Two
small Go programs under ``tests/interop/go`` drive them against Fiat:

* ``fiatcheck`` is an independent client of a running ``fiat log serve``: it
  opens the checkpoint with ``note.Open``, recomputes the root from the tiles
  (``tlog.TileHashReader`` + ``tlog.TreeHash``) and from every entry bundle
  (``tlog.StoredHashes``), compares every hash tile with ``tlog.ReadTileData``,
  checks ``tlog.ProveRecord``/``tlog.CheckRecord`` inclusion,
  ``tlog.ProveTree``/``tlog.CheckTree`` consistency from an older checkpoint,
  and verifies ``fiat log proof`` files.
* ``notesign`` signs with ``note.Sign``, opens with ``note.Open`` and makes
  keys with ``note.GenerateKey``.

Everything goes through the real CLI (``fiat init``, ``fiat log append``,
``fiat log serve``, ``fiat log vkey``, ``fiat log proof``) in subprocesses.
The tests are skipped only when Go or Debian's golang-golang-x-mod-dev is
missing (``make system-deps`` installs them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.config import load_config
from fiat.home import log_signer
from fiat.tlog import note
from fiat.tlog.checkpoint import Checkpoint, sign_checkpoint
from fiat.tlog.note import Signer, Verifier
from support.processes import FiatServer
from support.processes import fiat as run_fiat

GOCODE = Path("/usr/share/gocode")
GO_SUMDB = GOCODE / "src/golang.org/x/mod/sumdb"
GO_SRC = Path(__file__).resolve().parent / "go"
#: The only non-standard-library packages the Go programs may import.
GO_ALLOWED_IMPORTS = {"golang.org/x/mod/sumdb/note", "golang.org/x/mod/sumdb/tlog"}

_missing = [
    what
    for what, ok in (
        ("the `go` command (Debian: golang-go)", shutil.which("go") is not None),
        (f"{GO_SUMDB / 'tlog'} (Debian: golang-golang-x-mod-dev)", (GO_SUMDB / "tlog").is_dir()),
        (f"{GO_SUMDB / 'note'} (Debian: golang-golang-x-mod-dev)", (GO_SUMDB / "note").is_dir()),
    )
    if not ok
]

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        bool(_missing), reason="Go interop needs " + " and ".join(_missing) + "; `make system-deps` installs them"
    ),
]

#: Growth steps: the empty log after ``fiat init``, one entry, past the first full tile, past 256**2
#: (so level-2 tiles exist and levels 0 and 1 each end in a partial tile).
GROWTH = (0, 1, 300, 70_000)
FINAL_SIZE = GROWTH[-1]
MAX_ENTRY = 0xFFFF
#: Entries of exactly the C2SP limit (uint16 length prefix), at tile edges.
MAX_SIZED = frozenset({2, 255, 256, 65_536, FINAL_SIZE - 1})
PROOF_INDEXES = (0, 1, 2, 255, 256, 257, 511, 65_535, 65_536, 65_537, FINAL_SIZE - 1)

GO_TIMEOUT = 120
CLI_TIMEOUT = 120


# -- helpers -------------------------------------------------------------------------------


fiat = functools.partial(run_fiat, timeout=CLI_TIMEOUT, check=True)


def http_get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # a fixed http://127.0.0.1 URL
        return bytes(resp.read())


def vkey_of(home: Path) -> str:
    return fiat("log", "vkey", "--home", home).stdout.decode().strip()


def entries_digest(entries: Sequence[bytes]) -> str:
    """What fiatcheck reports as entries_sha256: SHA-256 over the uint16 length-prefixed entries."""
    h = hashlib.sha256()
    for e in entries:
        h.update(struct.pack(">H", len(e)))
        h.update(e)
    return h.hexdigest()


def make_entries(rng: random.Random, start: int, count: int) -> list[bytes]:
    """Random-length entries that survive ``--lines``: no ``\\n`` or ``\\r``, otherwise any byte."""
    lengths = []
    for i in range(start, start + count):
        if i in MAX_SIZED:
            lengths.append(MAX_ENTRY)
            continue
        r = rng.random()
        if r < 0.05:
            lengths.append(0)
        elif r < 0.55:
            lengths.append(rng.randint(1, 32))
        elif r < 0.97:
            lengths.append(rng.randint(33, 300))
        else:
            lengths.append(rng.randint(301, 4000))
    blob = rng.randbytes(sum(lengths)).translate(bytes.maketrans(b"\n\r", b"NR"))
    out, pos = [], 0
    for n in lengths:
        out.append(blob[pos : pos + n])
        pos += n
    return out


@dataclass
class GoResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        assert self.returncode == 0, self.explain()
        data: dict[str, Any] = json.loads(self.stdout)
        assert data["ok"] is True
        return data

    def explain(self) -> str:
        return (
            f"{' '.join(self.args)}\nexit {self.returncode}\n"
            f"stdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}"
        )


@dataclass(frozen=True)
class GoTools:
    fiatcheck: Path
    notesign: Path

    def check(self, *args: str | Path, stdin: bytes | None = None) -> GoResult:
        return self._run(self.fiatcheck, args, stdin)

    def notesign_run(self, *args: str | Path, stdin: bytes | None = None) -> GoResult:
        return self._run(self.notesign, args, stdin)

    @staticmethod
    def _run(binary: Path, args: Sequence[str | Path], stdin: bytes | None) -> GoResult:
        argv = [str(binary), *map(str, args)]
        proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=GO_TIMEOUT)
        return GoResult(
            argv, proc.returncode, proc.stdout.decode("utf-8", errors="replace"), proc.stderr.decode(errors="replace")
        )


@dataclass
class Step:
    size: int
    checkpoint: Path  # the signed checkpoint served at this size, verbatim
    go: GoResult  # fiatcheck against the server at this size, given the previous checkpoint
    previous: int | None
    seconds: float
    proofs: list[tuple[int, Path, Path]] = field(default_factory=list)  # (index, proof file, entry file)


@dataclass
class GrownLog:
    home: Path
    vkey: str
    server: FiatServer
    entries: list[bytes]
    steps: list[Step]
    work: Path

    @property
    def url(self) -> str:
        return self.server.url

    def checkpoint_file(self, size: int) -> Path:
        return next(s.checkpoint for s in self.steps if s.size == size)

    def entry_file(self, index: int) -> Path:
        path = self.work / f"entry-{index}.bin"
        if not path.exists():
            path.write_bytes(self.entries[index])
        return path

    def proof_file(self, index: int) -> Path:
        path = self.work / f"proof-{index}-at-{len(self.entries)}.tlog-proof"
        if not path.exists():
            fiat("log", "proof", str(index), "--home", self.home, "-o", path)
        return path


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def go_tools(tmp_path_factory: pytest.TempPathFactory) -> GoTools:
    """Build both Go programs once, in GOPATH mode against Debian's golang.org/x/mod (no network)."""
    out = tmp_path_factory.mktemp("go-bin")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{out / 'gopath'}{os.pathsep}{GOCODE}",
        "GOCACHE": str(out / "cache"),
        "GOFLAGS": "",
    }
    built = {}
    for name in ("fiatcheck", "notesign"):
        src = GO_SRC / name
        listed = subprocess.run(
            ["go", "list", "-f", '{{join .Imports "\\n"}}', "."],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0, f"go list {src} failed:\n{listed.stderr}"
        foreign = {imp for imp in listed.stdout.split() if "." in imp.split("/")[0] and imp not in GO_ALLOWED_IMPORTS}
        assert not foreign, f"{src} may import only the standard library and {GO_ALLOWED_IMPORTS}, not {foreign}"
        binary = out / name
        proc = subprocess.run(
            ["go", "build", "-o", str(binary), "."], cwd=src, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"go build {src} failed:\n{proc.stderr}"
        built[name] = binary
    return GoTools(built["fiatcheck"], built["notesign"])


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory, go_tools: GoTools) -> Iterator[GrownLog]:
    """A fiat home grown through GROWTH by ``fiat log append --lines``, served by ``fiat log serve``.

    After each step fiatcheck verifies the live log, given the previous step's checkpoint as
    -old-checkpoint; results are recorded here and asserted by the tests.
    """
    work = tmp_path_factory.mktemp("go-interop")
    home = work / "home"
    fiat("init", "--home", home)
    vkey = vkey_of(home)
    server = FiatServer(home, log=True, output=work / "serve.log")
    rng = random.Random(20_240_601)
    entries: list[bytes] = []
    steps: list[Step] = []
    try:
        server.start()
        previous: Step | None = None
        for size in GROWTH:
            new = make_entries(rng, len(entries), size - len(entries))
            if new:
                done = fiat(
                    "log", "append", "--home", home, "--lines", "--json", stdin=b"".join(e + b"\n" for e in new)
                )
                indexes = json.loads(done.stdout)["indexes"]
                assert indexes == list(range(len(entries), size)), "fiat log append returned unexpected indexes"
                entries.extend(new)
            cp_path = work / f"checkpoint-{size}"
            cp_path.write_bytes(http_get(server.url + "/checkpoint"))
            args: list[str | Path] = ["-url", server.url, "-vkey", vkey]
            if previous is not None:
                args += ["-old-checkpoint", previous.checkpoint]
            t0 = time.monotonic()
            result = go_tools.check(*args)
            step = Step(size, cp_path, result, previous.size if previous else None, time.monotonic() - t0)
            # Proof files made at this size, verified later (against the grown log's tiles).
            for index in sorted({0, size // 2, size - 1}) if size else ():
                proof = work / f"proof-{index}-at-{size}.tlog-proof"
                fiat("log", "proof", str(index), "--home", home, "-o", proof)
                entry = work / f"entry-{index}.bin"
                entry.write_bytes(entries[index])
                step.proofs.append((index, proof, entry))
            steps.append(step)
            previous = step
        yield GrownLog(home, vkey, server, entries, steps, work)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def other_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another log with the same (default) origin but its own key, grown to one entry."""
    home = tmp_path_factory.mktemp("other") / "home"
    fiat("init", "--home", home)
    fiat("log", "append", "--home", home, "--lines", stdin=b"someone else's entry\n")
    return home


# -- the live log, as Go sees it -----------------------------------------------------------


def test_go_verifies_every_growth_step(grown: GrownLog) -> None:
    assert [s.size for s in grown.steps] == list(GROWTH)
    for step in grown.steps:
        summary = step.go.summary
        cp_text = step.checkpoint.read_bytes().decode()
        origin, size, root = cp_text.split("\n")[:3]
        assert summary["log_checked"] is True
        assert summary["origin"] == origin == Verifier.parse(grown.vkey).name
        assert summary["tree_size"] == step.size == int(size)
        assert summary["root"] == root
        assert summary["entries"] == step.size
        assert summary["entries_sha256"] == entries_digest(grown.entries[: step.size])
        assert summary["entry_bundles"] == -(-step.size // 256)
        if step.size:
            assert summary["record_proofs"] == min(step.size, 5000)  # all of them, or a sample of 5000
            assert any("tlog.TreeHash == checkpoint root" in c for c in summary["checks"])
            assert any("tlog.ReadTileData" in c for c in summary["checks"])
        else:
            assert root == note.b64(hashlib.sha256(b"").digest())
        if step.previous is None:
            assert "old_tree_size" not in summary
        else:
            assert summary["old_tree_size"] == step.previous
            assert "consistency_proof_length" in summary


def test_go_hash_tile_counts(grown: GrownLog) -> None:
    """Go fetched and matched every hash tile at every level (tlog.NewTiles at the tree's widths)."""

    def tiles(size: int) -> int:
        count, level = 0, 0
        while size >> (8 * level):
            count += -(-(size >> (8 * level)) // 256)
            level += 1
        return count

    for step in grown.steps:
        assert step.go.summary["hash_tiles"] == tiles(step.size)


def test_go_consistency_from_every_older_checkpoint(grown: GrownLog, go_tools: GoTools) -> None:
    for step in grown.steps[:-1]:
        result = go_tools.check(
            "-url", grown.url, "-vkey", grown.vkey, "-old-checkpoint", step.checkpoint, "-all-proofs", "0"
        )
        summary = result.summary
        assert summary["old_tree_size"] == step.size
        assert summary["tree_size"] == FINAL_SIZE


def test_go_checks_every_record_proof_at_300(grown: GrownLog) -> None:
    """All 300 entries: tlog.ProveRecord over the served tiles + tlog.CheckRecord against the root."""
    step = next(s for s in grown.steps if s.size == 300)
    assert step.go.summary["record_proofs"] == 300


# -- proof files ------------------------------------------------------------------------------


def test_go_verifies_fiat_proof_files(grown: GrownLog, go_tools: GoTools) -> None:
    args: list[str | Path] = ["-url", grown.url, "-vkey", grown.vkey, "-skip-log"]
    for index in PROOF_INDEXES:
        args += ["-proof", grown.proof_file(index), "-entry", grown.entry_file(index)]
    summary = go_tools.check(*args).summary
    proofs = summary["proofs"]
    assert [p["index"] for p in proofs] == list(PROOF_INDEXES)
    for p in proofs:
        assert p["tree_size"] == FINAL_SIZE
        assert p["matches_go_proof"] is True


def test_go_verifies_proof_files_from_every_step(grown: GrownLog, go_tools: GoTools) -> None:
    """Proofs made at sizes 1 and 300 (path of length 0 at size 1) still verify, and match Go's
    ProveRecord for that older tree over the tiles the grown log serves."""
    args: list[str | Path] = ["-url", grown.url, "-vkey", grown.vkey, "-skip-log"]
    expected = []
    for step in grown.steps:
        for index, proof, entry in step.proofs:
            args += ["-proof", proof, "-entry", entry]
            expected.append((index, step.size))
    assert expected
    proofs = go_tools.check(*args).summary["proofs"]
    assert [(p["index"], p["tree_size"]) for p in proofs] == expected
    assert all(p["matches_go_proof"] for p in proofs)
    assert proofs[0]["tree_size"] == 1 and proofs[0]["path_length"] == 0


def test_go_verifies_proof_offline(grown: GrownLog, go_tools: GoTools) -> None:
    summary = go_tools.check(
        "-vkey", grown.vkey, "-proof", grown.proof_file(65_536), "-entry", grown.entry_file(65_536)
    ).summary
    assert summary["log_checked"] is False
    assert summary["proofs"][0]["index"] == 65_536
    assert "matches_go_proof" not in summary["proofs"][0]


# -- what Go must reject -------------------------------------------------------------------------


def _assert_go_fails(result: GoResult, *needles: str) -> None:
    assert result.returncode == 1, "Go accepted what it must reject:\n" + result.explain()
    assert "fiatcheck: FAIL" in result.stderr, result.explain()
    for needle in needles:
        assert needle in result.stderr, result.explain()


def test_go_rejects_another_logs_key(grown: GrownLog, go_tools: GoTools, other_home: Path) -> None:
    other = vkey_of(other_home)
    assert other != grown.vkey
    assert Verifier.parse(other).name == Verifier.parse(grown.vkey).name  # same origin, different key
    _assert_go_fails(go_tools.check("-url", grown.url, "-vkey", other), "note.Open")


def test_go_rejects_a_key_for_another_origin(grown: GrownLog, go_tools: GoTools, tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    fiat("init", "--home", home, "--origin", "elsewhere.example/log")
    _assert_go_fails(go_tools.check("-url", grown.url, "-vkey", vkey_of(home)), "note.Open")


def test_go_rejects_tampered_old_checkpoints(
    grown: GrownLog, go_tools: GoTools, other_home: Path, tmp_path: Path
) -> None:
    original = grown.checkpoint_file(300).read_bytes()
    _origin, size, root, rest = original.decode().split("\n", 3)
    sig_line = rest.rstrip("\n").split("\n")[-1]
    sig_b64 = sig_line.rsplit(" ", 1)[1]
    raw = bytearray(note.b64decode_strict(sig_b64, "signature"))
    raw[10] ^= 0x01
    other_root = note.b64(hashlib.sha256(root.encode()).digest())
    tampered = {
        "size": original.replace(f"\n{size}\n".encode(), b"\n299\n", 1),
        "root": original.replace(root.encode(), other_root.encode(), 1),
        "signature": original.replace(sig_b64.encode(), note.b64(bytes(raw)).encode(), 1),
        "truncated": original[:-1],
        "other-log": fiat("log", "checkpoint", "--home", other_home).stdout,
    }
    for name, data in tampered.items():
        assert data != original, name
        path = tmp_path / f"tampered-{name}"
        path.write_bytes(data)
        result = go_tools.check("-url", grown.url, "-vkey", grown.vkey, "-old-checkpoint", path, "-all-proofs", "0")
        _assert_go_fails(result, "old checkpoint")


def test_go_rejects_a_validly_signed_fork(grown: GrownLog, go_tools: GoTools, tmp_path: Path) -> None:
    """A checkpoint signed by the log's own key but for another tree (a split view) fails consistency."""
    signer = log_signer(load_config(grown.home, require=True))
    fork = sign_checkpoint(Checkpoint(signer.name, 300, hashlib.sha256(b"fork").digest()), signer)
    path = tmp_path / "fork"
    path.write_bytes(fork.note_bytes)
    result = go_tools.check("-url", grown.url, "-vkey", grown.vkey, "-old-checkpoint", path, "-all-proofs", "0")
    _assert_go_fails(result, "old checkpoint root")
    bigger = sign_checkpoint(Checkpoint(signer.name, FINAL_SIZE + 1, hashlib.sha256(b"ahead").digest()), signer)
    path.write_bytes(bigger.note_bytes)
    result = go_tools.check("-url", grown.url, "-vkey", grown.vkey, "-old-checkpoint", path, "-all-proofs", "0")
    _assert_go_fails(result, "larger than the current")


def test_go_rejects_bad_proofs(grown: GrownLog, go_tools: GoTools, other_home: Path, tmp_path: Path) -> None:
    index = 256
    proof = grown.proof_file(index).read_bytes()
    entry = grown.entry_file(index)

    def check(proof_bytes: bytes, entry_path: Path = entry, vkey: str = grown.vkey) -> GoResult:
        path = tmp_path / "proof"
        path.write_bytes(proof_bytes)
        return go_tools.check("-vkey", vkey, "-proof", path, "-entry", entry_path)

    assert check(proof).returncode == 0
    wrong_entry = tmp_path / "wrong-entry"
    wrong_entry.write_bytes(grown.entries[index + 1])
    _assert_go_fails(check(proof, wrong_entry), "tlog.CheckRecord")
    lines = proof.split(b"\n")
    hash_line = lines[2]
    flipped = bytearray(note.b64decode_strict(hash_line.decode(), "hash"))
    flipped[0] ^= 0x80
    _assert_go_fails(check(proof.replace(hash_line, note.b64(bytes(flipped)).encode(), 1)), "tlog.CheckRecord")
    _assert_go_fails(check(proof.replace(b"index 256\n", b"index 257\n", 1)), "tlog.CheckRecord")
    _assert_go_fails(check(proof.replace(hash_line + b"\n", b"", 1)), "tlog.CheckRecord")
    _assert_go_fails(check(proof, vkey=vkey_of(other_home)), "note.Open")


class CorruptingProxy:
    """Forwards to the real server, passing each response body through ``corrupt(path, body)``."""

    def __init__(self, upstream: str, corrupt: Callable[[str, bytes], bytes]) -> None:
        origin = upstream.removesuffix("/log")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    status, body = 200, http_get(origin + self.path)
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
                if status == 200:
                    body = corrupt(self.path.removeprefix("/log/"), body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/log"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CorruptingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _flip(body: bytes, at: int) -> bytes:
    b = bytearray(body)
    b[at] ^= 0x01
    return bytes(b)


def test_go_rejects_a_corrupted_log(grown: GrownLog, go_tools: GoTools) -> None:
    """The checker is not vacuous: one flipped bit anywhere in what the log serves fails it."""
    last_level0 = f"tile/0/{FINAL_SIZE // 256:03d}.p/{FINAL_SIZE % 256}"
    cases: dict[str, tuple[Callable[[str, bytes], bytes], str]] = {
        "checkpoint signature": (
            lambda p, b: _flip(b, len(b) - 5) if p == "checkpoint" else b,
            "checkpoint: note.Open",
        ),
        "full level-0 hash tile": (lambda p, b: _flip(b, 100) if p == "tile/0/000" else b, "tlog.ReadTileData"),
        "partial level-0 hash tile": (lambda p, b: _flip(b, 0) if p == last_level0 else b, "inconsistent tile"),
        "level-1 hash tile": (lambda p, b: _flip(b, 31) if p.startswith("tile/1/") else b, "inconsistent tile"),
        "truncated partial tile": (lambda p, b: b[:-1] if p == last_level0 else b, "bytes, want"),
        "entry bytes": (lambda p, b: _flip(b, len(b) - 1) if p == "tile/entries/001" else b, "from the entries"),
        "entry bundle framing": (lambda p, b: b + b"\x00" if p == "tile/entries/002" else b, "entry bundle"),
    }
    for name, (corrupt, needle) in cases.items():
        with CorruptingProxy(grown.url, corrupt) as proxy:
            result = go_tools.check("-url", proxy.url, "-vkey", grown.vkey, "-all-proofs", "0")
        assert result.returncode == 1, f"{name}: Go accepted a corrupted log\n{result.explain()}"
        assert needle in result.stderr, f"{name}\n{result.explain()}"
    # The same proxy without corruption passes, so the failures above are the corruption's.
    with CorruptingProxy(grown.url, lambda p, b: b) as proxy:
        assert (
            go_tools.check("-url", proxy.url, "-vkey", grown.vkey, "-all-proofs", "0").summary["tree_size"]
            == FINAL_SIZE
        )


# -- signed notes, byte for byte ---------------------------------------------------------------------


def _texts(grown: GrownLog) -> list[str]:
    cp_text = note.parse(grown.checkpoint_file(FINAL_SIZE).read_bytes()).text
    return [
        cp_text,
        note.parse(grown.checkpoint_file(0).read_bytes()).text,
        "hello\n",
        "\n",
        "multi\nline\ntext with spaces and + and — em dash\n",
        "ünïcödé ✓ 日本語\nsecond line\n",
        "fiat.local/log\n1\n" + note.b64(hashlib.sha256(b"x").digest()) + "\nextension line\n",
    ]


def test_go_note_sign_matches_fiat(grown: GrownLog, go_tools: GoTools) -> None:
    signers = [
        log_signer(load_config(grown.home, require=True)),
        Signer("example.com/test", Ed25519PrivateKey.generate()),
        Signer("ünïcödé.example/log", Ed25519PrivateKey.generate()),
    ]
    for signer in signers:
        for text in _texts(grown):
            go = go_tools.notesign_run("-skey", signer.encode(), stdin=text.encode())
            assert go.returncode == 0, go.explain()
            ours = note.sign(text, [signer])
            assert go.stdout.encode() == ours, f"note.Sign differs for {signer.name!r}, text {text!r}"


def test_served_checkpoint_is_go_note_sign_output(grown: GrownLog, go_tools: GoTools) -> None:
    """The checkpoint the server hands out is exactly what Go's note.Sign makes of its text."""
    served = http_get(grown.url + "/checkpoint")
    text = note.parse(served).text
    skey = log_signer(load_config(grown.home, require=True)).encode()
    go = go_tools.notesign_run("-skey", skey, stdin=text.encode())
    assert go.returncode == 0, go.explain()
    assert go.stdout.encode() == served


def test_go_accepts_fiat_vkey(grown: GrownLog, go_tools: GoTools, other_home: Path) -> None:
    served = http_get(grown.url + "/checkpoint")
    opened = go_tools.notesign_run("-vkey", grown.vkey, stdin=served)
    assert opened.returncode == 0, opened.explain()
    info = json.loads(opened.stdout)
    v = Verifier.parse(grown.vkey)
    assert info["name"] == v.name
    assert info["key_hash"] == f"{v.key_id:08x}"
    assert info["text"] == note.parse(served).text
    assert [s["hash"] for s in info["sigs"]] == [f"{v.key_id:08x}"]
    # ... and rejects the note under another log's key with the same name.
    rejected = go_tools.notesign_run("-vkey", vkey_of(other_home), stdin=served)
    assert rejected.returncode == 1 and "note.Open" in rejected.stderr, rejected.explain()


def test_fiat_accepts_go_keys(go_tools: GoTools) -> None:
    for name in ("example.com/go-made", "sum.golang.org"):
        made = go_tools.notesign_run("-generate", name)
        assert made.returncode == 0, made.explain()
        keys = json.loads(made.stdout)
        signer = Signer.parse(keys["skey"])
        assert signer.encode() == keys["skey"]
        assert signer.verifier.encode() == keys["vkey"]
        assert Verifier.parse(keys["vkey"]).encode() == keys["vkey"]
        text = f"{name}\n42\n{note.b64(hashlib.sha256(name.encode()).digest())}\n"
        go = go_tools.notesign_run("-skey", keys["skey"], stdin=text.encode())
        assert go.returncode == 0, go.explain()
        assert go.stdout.encode() == note.sign(text, [signer])
        note.open_note(go.stdout.encode(), [Verifier.parse(keys["vkey"])])


# -- cosigned checkpoints: Go's note ignores the cosigners it does not know --------------------------


def spec_mldsa44_message(name: str, timestamp: int, cp: Checkpoint) -> bytes:
    """tlog-cosignature §ML-DSA-44 signed message, written out from the spec here (an independent
    check of :func:`fiat.tlog.cosignature.mldsa_message`): label ``"subtree/v1\\n\\0"``, the cosigner
    name and log origin each with a one-byte length, u64 timestamp, u64 start 0, u64 end = size, root."""
    return (
        b"subtree/v1\n\x00"
        + bytes([len(name)])
        + name.encode()
        + struct.pack(">Q", timestamp)
        + bytes([len(cp.origin)])
        + cp.origin.encode()
        + struct.pack(">QQ", 0, cp.size)
        + cp.root
    )


def test_go_opens_a_checkpoint_cosigned_with_ed25519_and_ml_dsa(go_tools: GoTools, other_home: Path) -> None:
    """The log's signature on a cosigned checkpoint still verifies with golang.org/x/mod/sumdb/note,
    which ignores signature lines of unknown signers (here: an Ed25519 cosignature/v1 and an ML-DSA-44
    one, each in its own line). Fiat's verifier counts the Ed25519 one for a trust-root witness."""
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

    from fiat.tlog import cosignature

    vkey = vkey_of(other_home)
    served = fiat("log", "checkpoint", "--home", other_home).stdout
    cp = Checkpoint.parse_text(note.parse(served).text)
    witness, pq = Ed25519PrivateKey.generate(), MLDSA44PrivateKey.generate()
    ts = int(time.time())
    cosigned = cosignature.cosign(served, "witness.example/w1", witness, ts)
    line = cosignature.mldsa_signature("witness.example/w2", pq, ts, cp.origin, cp.size, cp.root)
    assert len(line.signature) == 8 + 2420
    assert line.key_id == int.from_bytes(
        hashlib.sha256(b"witness.example/w2\n\x06" + pq.public_key().public_bytes_raw()).digest()[:4], "big"
    )
    pq.public_key().verify(line.signature[8:], spec_mldsa44_message("witness.example/w2", ts, cp))
    parsed = note.parse(cosigned)
    cosigned = note.Note(parsed.text, (*parsed.signatures, line)).encode()
    assert cosigned.startswith(served.split(b"\n\n")[0] + b"\n\n")
    assert len(note.parse(cosigned).signatures) == 3
    result = go_tools.notesign_run("-vkey", vkey, stdin=cosigned)
    assert result.returncode == 0, result.stderr
    opened = json.loads(result.stdout)
    assert opened["text"] == note.parse(served).text
    assert [s["name"] for s in opened["sigs"]] == [Verifier.parse(vkey).name]
    assert opened["unverified"] == 2  # the two cosignatures: known to Go as nothing, ignored
    # Fiat, too, verifies both cosignatures.
    parsed = note.parse(cosigned)
    pub = witness.public_key().public_bytes_raw()
    assert cosignature.verified_cosigners(parsed, [("witness.example/w1", pub)]) == [("witness.example/w1", ts)]
    pq_pub = pq.public_key().public_bytes_raw()
    got = cosignature.verified_mldsa_cosigners(parsed, cp.origin, cp.size, cp.root, [("witness.example/w2", pq_pub)])
    assert got == [("witness.example/w2", ts)]
    # And Go still refuses it when the log's own signature is broken, cosignatures or not.
    text, _, sigs = cosigned.decode().partition("\n\n")
    first, *rest = sigs.split("\n")
    prefix, b64sig = first.rsplit(" ", 1)
    raw = bytearray(note.b64decode_strict(b64sig, "signature"))
    raw[-1] ^= 1
    broken = (text + "\n\n" + "\n".join([f"{prefix} {note.b64(bytes(raw))}", *rest])).encode()
    bad = go_tools.notesign_run("-vkey", vkey, stdin=broken)
    assert bad.returncode == 1 and "note.Open" in bad.stderr, bad.stderr
