"""End-to-end tests of the log's HTTP read API (C2SP tlog-tiles) and of ``fiat log verify``.

A real ``fiat log serve`` child process listens on a free port on 127.0.0.1 and
is queried with httpx (and with http.client where a path must go out exactly as
written). The log holds just over 65,536 entries, so it has three tile levels.
Auditing runs ``fiat log verify`` as a child process against that server, then
against servers that show a split view or a rollback under the same key.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support.processes import EXIT_ERROR, EXIT_FAILED, EXIT_INVALID, EXIT_OK, clean_env, err, fiat, free_port
from support.processes import FiatServer as Server

ORIGIN = "e2e.example/fiat-log"
BULK = 70_000
SPECIAL = [b"", b"\x00\xff\n" * 7, b"z" * 65_535, b"last entry"]
SIZE = BULK + len(SPECIAL)  # 70,004
OCTET = "application/octet-stream"

# tlog-tiles geometry of a tree of SIZE leaves, spelled out.
assert SIZE == 70_004
L0_FULL, L0_LAST_WIDTH = 273, 116  # 273 full level-0 tiles, then tile 273 with 116 hashes
L1_LAST_WIDTH = 17  # level 1 holds 273 hashes: tile 0 full, tile 1 with 17
L2_WIDTH = 1  # level 2 holds 1 hash


def entry(i: int) -> bytes:
    return b"e2e entry %d" % i if i < BULK else SPECIAL[i - BULK]


# -- helpers ------------------------------------------------------------------------


def verify(url: str, vkey: str, auditor: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return fiat("log", "verify", "--url", url, "--vkey", vkey, "--home", auditor, *extra)


def verify_json(url: str, vkey: str, auditor: Path, expect: int) -> dict[str, object]:
    p = verify(url, vkey, auditor, "--json")
    assert p.returncode == expect, f"exit {p.returncode}\nstdout: {p.stdout.decode()}\nstderr: {err(p)}"
    doc: dict[str, object] = json.loads(p.stdout)
    return doc


def append_in_process(home: Path, entries: list[bytes]) -> int:
    """Append through fiat.wiring.open_log; return the new tree size."""
    from fiat.config import load_config
    from fiat.wiring import open_log

    with clean_env():
        log = open_log(load_config(home, require=True))
        try:
            results = log.append_many(entries) if entries else []
            return results[-1].checkpoint.size if results else log.checkpoint().size
        finally:
            log.close()
            log.store.close()


def leaf(e: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + e).digest()


def mth_pow2(hashes: list[bytes]) -> bytes:
    """RFC 6962 root of a power-of-two number of subtree hashes, independent of fiat."""
    assert hashes
    assert len(hashes) & (len(hashes) - 1) == 0
    while len(hashes) > 1:
        hashes = [hashlib.sha256(b"\x01" + hashes[i] + hashes[i + 1]).digest() for i in range(0, len(hashes), 2)]
    return hashes[0]


def split32(data: bytes) -> list[bytes]:
    assert len(data) % 32 == 0
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def max_age(cache_control: str) -> int | None:
    m = re.search(r"max-age=(\d+)", cache_control)
    return int(m.group(1)) if m else None


@pytest.fixture(scope="module")
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Server]:
    """A factory of servers that are all terminated when the module's tests are done."""
    started: list[Server] = []

    def finalize() -> None:
        for s in started:
            s.stop()

    request.addfinalizer(finalize)

    def start(home: Path) -> Server:
        s = Server(home, log=True).start()
        started.append(s)
        return s

    return start


@dataclass(frozen=True)
class Base:
    home: Path
    vkey: str


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    """A closed, never-served home holding SIZE entries; tests serve copies of it."""
    from fiat.home import init_home

    home = tmp_path_factory.mktemp("base") / "home"
    with clean_env():
        report = init_home(home, ORIGIN)
    assert append_in_process(home, [entry(i) for i in range(SIZE)]) == SIZE
    return Base(home, report.vkey)


def copy_home(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)  # copy2 keeps keys/log.pem at 0600
    return dst


@pytest.fixture(scope="module")
def site(base: Base, servers: Callable[[Path], Server], tmp_path_factory: pytest.TempPathFactory) -> Server:
    """A server over a copy of the base log that no test changes."""
    return servers(copy_home(base.home, tmp_path_factory.mktemp("site") / "home"))


def raw_get(port: int, target: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """GET with the request target sent exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", target, headers=headers or {})
    r = conn.getresponse()
    r.body = r.read()  # type: ignore[attr-defined]
    conn.close()
    return r


# -- the read API -------------------------------------------------------------------


def test_index_page_names_the_log(site: Server, base: Base) -> None:
    r = httpx.get(f"http://127.0.0.1:{site.port}/")
    assert r.status_code == 200
    assert ORIGIN in r.text
    assert base.vkey in r.text


def test_checkpoint(site: Server, base: Base) -> None:
    from fiat.tlog.checkpoint import open_checkpoint
    from fiat.tlog.note import Verifier

    r = httpx.get(f"{site.url}/checkpoint")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    cc = r.headers["cache-control"]
    assert "immutable" not in cc
    age = max_age(cc)
    assert "no-cache" in cc or "no-store" in cc or (age is not None and age <= 60), cc
    lines = r.text.split("\n")
    assert lines[0] == ORIGIN
    assert lines[1] == str(SIZE)
    assert lines[3] == ""
    assert lines[4].startswith(f"\u2014 {ORIGIN} ")
    cp = open_checkpoint(r.content, Verifier.parse(base.vkey))
    assert cp.size == SIZE
    # The served checkpoint is the one `fiat log checkpoint` prints.
    p = fiat("log", "checkpoint", "--home", site.home)
    assert p.returncode == 0
    assert p.stdout == r.content


def test_full_tiles(site: Server) -> None:
    with httpx.Client(base_url=site.url) as c:
        tiles = {}
        for path in ("tile/0/000", "tile/0/001", f"tile/0/{L0_FULL - 1}", "tile/1/000"):
            r = c.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"] == OCTET
            assert len(r.content) == 8192
            assert int(r.headers["content-length"]) == 8192
            assert "immutable" in r.headers["cache-control"]
            tiles[path] = r.content
    # Level 0 holds RFC 6962 leaf hashes of the entries, in order.
    assert split32(tiles["tile/0/000"]) == [leaf(entry(i)) for i in range(256)]
    assert split32(tiles[f"tile/0/{L0_FULL - 1}"]) == [leaf(entry(i)) for i in range(256 * 272, 256 * 273)]
    # Level 1 hash n is the root of level-0 tile n.
    level1 = split32(tiles["tile/1/000"])
    assert level1[0] == mth_pow2(split32(tiles["tile/0/000"]))
    assert level1[1] == mth_pow2(split32(tiles["tile/0/001"]))


def test_partial_tiles(site: Server) -> None:
    with httpx.Client(base_url=site.url) as c:

        def get(path: str, width: int) -> bytes:
            r = c.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"] == OCTET
            assert len(r.content) == 32 * width, path
            assert "cache-control" in r.headers
            return r.content

        last0 = get(f"tile/0/{L0_FULL}.p/{L0_LAST_WIDTH}", L0_LAST_WIDTH)
        assert split32(last0) == [leaf(entry(i)) for i in range(256 * L0_FULL, SIZE)]
        # A narrower view of the same tile is a prefix of it.
        assert get(f"tile/0/{L0_FULL}.p/1", 1) == last0[:32]
        assert get(f"tile/0/{L0_FULL}.p/100", 100) == last0[: 32 * 100]
        level1 = get(f"tile/1/001.p/{L1_LAST_WIDTH}", L1_LAST_WIDTH)
        full1 = c.get("tile/1/000").content
        level2 = get(f"tile/2/000.p/{L2_WIDTH}", L2_WIDTH)
    # The single level-2 hash is the root of the first 65,536 leaves: the root of tile/1/000.
    assert level2 == mth_pow2(split32(full1))
    assert split32(level1)[0] == mth_pow2([leaf(entry(i)) for i in range(256 * 256, 256 * 257)])


NOT_FOUND = [
    # Beyond what the tree holds.
    f"tile/0/{L0_FULL}.p/{L0_LAST_WIDTH + 1}",
    f"tile/0/{L0_FULL}.p/255",
    f"tile/0/{L0_FULL}",  # its full tile does not exist yet
    f"tile/0/{L0_FULL + 1}",
    f"tile/0/{L0_FULL + 1}.p/1",
    f"tile/1/001.p/{L1_LAST_WIDTH + 1}",
    "tile/1/001",
    "tile/1/002.p/1",
    "tile/2/000",
    "tile/2/000.p/2",
    "tile/2/001.p/1",
    "tile/3/000.p/1",
    "tile/63/000.p/1",
    f"tile/entries/{L0_FULL}",
    f"tile/entries/{L0_FULL}.p/{L0_LAST_WIDTH + 1}",
    f"tile/entries/{L0_FULL + 1}.p/1",
    "tile/0/x001/000",
    "tile/0/x999/x999/x999/x999/x999/x999/999",
    # Malformed.
    "tile/64/000",
    "tile/99999999999999999999999999/000",
    "tile/0/000.p/99999999999999999999999999",
    "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
    "tile/0/" + "x999/" * 2000 + "999",
    "tile/00/000",
    "tile/01/000",
    "tile/-1/000",
    "tile/+1/000",
    "tile/foo/000",
    "tile/0/0000",
    "tile/0/00",
    "tile/0/1",
    "tile/0/+01",
    "tile/0/%20000",
    "tile/0/%D9%A0%D9%A0%D9%A0",  # Arabic-Indic digits
    "tile/0/000.p/0",
    "tile/0/000.p/256",
    "tile/0/000.p/05",
    "tile/0/000.p/1e2",
    "tile/0/000.p/",
    "tile/0/000.P/1",
    "tile/0/000.q/1",
    "tile/entries/000.p/0",
    "tile/entries/000.p/256",
    "tile/entries/x000/000",
    "tile/0/001/000",  # "x" missing
    "tile/0/x000/001",  # leading x000
    "tile/0/x1/000",
    "tile/0/000/",
    "tile/0/",
    "tile/",
    "tile/entries/",
    "tile/0/000%00",
    # Path tricks.
    "tile/../checkpoint",
    "tile/0/../../checkpoint",
    "tile/0/%2e%2e/%2e%2e/checkpoint",
    "tile/0/./000",
    "tile/./0/000",
    "tile//0/000",
    "tile/0//000",
    "tile/0/000/..",
    "tile/entries/../0/000",
]


def test_not_found(site: Server) -> None:
    for path in NOT_FOUND:
        r = raw_get(site.port, f"/log/{path}")
        assert r.status == 404, f"{path} -> {r.status}"
        assert "immutable" not in (r.getheader("cache-control") or ""), path
        assert not r.body.startswith(ORIGIN.encode()), path  # no checkpoint leaked via path tricks
    for path in ("/log", "/log/", "/log/tiles/0/000", "/logx/checkpoint", "/log/tile/"):
        assert raw_get(site.port, path).status == 404, path
    assert httpx.get(f"{site.url}/checkpoint").status_code == 200


def test_entry_bundles(site: Server) -> None:
    from fiat.tlog.tiles import parse_bundle

    with httpx.Client(base_url=site.url, headers={"Accept-Encoding": "identity"}) as c:
        cases = [(0, 256), (1, 256), (L0_FULL - 1, 256), (L0_FULL, L0_LAST_WIDTH)]
        for index, width in cases:
            suffix = "" if width == 256 else f".p/{width}"
            r = c.get(f"tile/entries/{index:03d}{suffix}")
            assert r.status_code == 200
            assert r.headers["content-type"] == OCTET
            assert "content-encoding" not in r.headers
            if width == 256:
                assert "immutable" in r.headers["cache-control"]
            entries = parse_bundle(r.content, width)
            assert entries == [entry(i) for i in range(256 * index, 256 * index + width)]
            tile = c.get(f"tile/0/{index:03d}{suffix}").content
            assert b"".join(leaf(e) for e in entries) == tile
        # The last bundle carries the empty entry and one of the maximum size, 65,535 bytes.
        assert b"" in entries
        assert b"z" * 65_535 in entries
        # A narrower partial bundle is a prefix of the wider one.
        r = c.get(f"tile/entries/{L0_FULL}.p/3")
        assert parse_bundle(r.content, 3) == entries[:3]


def test_entry_bundle_gzip(site: Server) -> None:
    path = f"{site.url}/tile/entries/{L0_FULL}.p/{L0_LAST_WIDTH}"
    with httpx.Client() as c:
        plain = c.get(path, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert "content-encoding" not in plain.headers
        with c.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as r:
            assert r.status_code == 200
            assert r.headers["content-encoding"] == "gzip"
            assert "accept-encoding" in r.headers.get("vary", "").lower()
            assert r.headers["content-type"] == OCTET
            raw = b"".join(r.iter_raw())
        assert raw[:2] == b"\x1f\x8b"
        assert len(raw) < len(plain.content)
        assert gzip.decompress(raw) == plain.content
        # httpx's transparent decoding agrees.
        assert c.get(path, headers={"Accept-Encoding": "gzip"}).content == plain.content
        full = f"{site.url}/tile/entries/000"
        assert gzip.decompress(raw_get(site.port, "/log/tile/entries/000", {"Accept-Encoding": "gzip"}).body) == (
            c.get(full, headers={"Accept-Encoding": "identity"}).content
        )


def _send_raw(port: int, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def test_server_survives_hostile_requests(site: Server) -> None:
    port = site.port
    assert _send_raw(port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64)
    assert _send_raw(port, tls_hello).startswith(b"HTTP/1.1 400")
    assert _send_raw(port, b"GET /log/" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 4")
    junk = b"X-Junk: " + b"j" * 100_000 + b"\r\n"
    _send_raw(port, b"GET /log/checkpoint HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + junk + b"\r\n")
    _send_raw(port, b"GET /log/tile/0/000 HTTP/1.1\r\nHo", read=False)  # hang up mid-request
    _send_raw(port, b"GET /log/tile/0/000 HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    # Many connections at once, opened and dropped.
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
    for s in socks:
        s.close()
    # Methods other than GET/HEAD are refused.
    with httpx.Client(base_url=site.url) as c:
        assert c.post("checkpoint", content=b"x").status_code == 405
        assert c.put("tile/0/000", content=b"x" * 8192).status_code == 405
        assert c.delete("tile/0/000").status_code == 405
        head = c.head("tile/0/000")
        assert head.status_code == 200
        assert head.content == b""
        # Still healthy and still serving the same log.
        assert site.proc.poll() is None
        r = c.get("checkpoint")
        assert r.status_code == 200
        assert r.text.split("\n")[1] == str(SIZE)
        assert len(c.get("tile/0/000").content) == 8192


# -- fiat log verify ----------------------------------------------------------------


def _impostor_vkey(origin: str) -> str:
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    material = b"\x01" + public
    import base64

    key_id = hashlib.sha256(origin.encode() + b"\n" + material).digest()[:4].hex()
    return f"{origin}+{key_id}+{base64.b64encode(material).decode()}"


def _remembered(auditor: Path) -> list[Path]:
    return sorted((auditor / "audit").glob("*.checkpoint"))


def test_audit_append_split_view_and_rollback(base: Base, servers: Callable[[Path], Server], tmp_path: Path) -> None:
    auditor = tmp_path / "auditor"
    live = servers(copy_home(base.home, tmp_path / "live"))

    # 1. A first audit recomputes the whole tree from tiles and bundles.
    p = verify(live.url, base.vkey, auditor)
    assert p.returncode == EXIT_OK, err(p)
    tiles, bundles = (L0_FULL + 1) + 2 + 1, L0_FULL + 1
    summary = p.stdout.decode().strip().split("\n")[-1]
    assert summary == f"verified {ORIGIN}: {SIZE} entries, {tiles} tiles, {bundles} entry bundles"
    for step in ("checkpoint-signature", "entry-bundle", "tile-hashes", "root-hash"):
        assert step in p.stdout.decode()
    [remembered] = _remembered(auditor)
    assert remembered.read_bytes() == httpx.get(f"{live.url}/checkpoint").content

    # 2. Another process appends while the server runs; the server shows the new tree.
    p = fiat("log", "append", "--lines", "--home", live.home, stdin=b"more 1\nmore 2\nmore 3\n")
    assert p.returncode == EXIT_OK, err(p)
    assert p.stdout.decode().split() == [str(SIZE), str(SIZE + 1), str(SIZE + 2)]
    grown = SIZE + 3
    assert httpx.get(f"{live.url}/checkpoint").text.split("\n")[1] == str(grown)
    assert httpx.get(f"{live.url}/tile/entries/{L0_FULL}.p/{L0_LAST_WIDTH + 3}").status_code == 200

    # 3. The next audit checks consistency with the size seen before.
    doc = verify_json(live.url, base.vkey, auditor, EXIT_OK)
    assert doc["verified"] is True
    assert doc["treeSize"] == grown
    assert doc["previousSize"] == SIZE
    assert "consistency" in doc["steps"]
    seen = remembered.read_bytes()
    assert seen.split(b"\n")[1] == str(grown).encode()
    live.stop()

    # 4. Split view: a second home with the same key (same origin) but different entries.
    fork = tmp_path / "fork"
    (fork / "keys").mkdir(parents=True)
    shutil.copy2(live.home / "fiat.toml", fork / "fiat.toml")
    shutil.copy2(live.home / "keys" / "log.pem", fork / "keys" / "log.pem")
    assert append_in_process(fork, [b"forked entry %d" % i for i in range(grown + 5)]) == grown + 5
    forked = servers(fork)
    forked_cp = httpx.get(f"{forked.url}/checkpoint").content
    from fiat.tlog.checkpoint import open_checkpoint
    from fiat.tlog.note import Verifier

    assert open_checkpoint(forked_cp, Verifier.parse(base.vkey)).size == grown + 5  # validly signed
    doc = verify_json(forked.url, base.vkey, auditor, EXIT_FAILED)
    assert doc["verified"] is False
    assert doc["step"] == "consistency"
    assert "split view" in str(doc["reason"])
    assert remembered.read_bytes() == seen  # a failed audit does not move what the auditor trusts
    forked.stop()

    # 5. Rollback: the same log served at an older, smaller size.
    old = servers(copy_home(base.home, tmp_path / "old"))
    p = verify(old.url, base.vkey, auditor)
    assert p.returncode == EXIT_FAILED, err(p)
    assert "consistency" in err(p)
    assert "rollback" in err(p)
    assert str(SIZE) in err(p)
    assert str(grown) in err(p)
    assert remembered.read_bytes() == seen
    old.stop()


def test_audit_with_wrong_vkey_fails(site: Server, tmp_path: Path) -> None:
    auditor = tmp_path / "auditor"
    doc = verify_json(site.url, _impostor_vkey(ORIGIN), auditor, EXIT_FAILED)
    assert doc["verified"] is False
    assert doc["step"] in ("checkpoint-signature", "note-signature")
    p = verify(site.url, _impostor_vkey("other.example/log"), auditor)
    assert p.returncode == EXIT_FAILED
    assert "checkpoint-signature" in err(p) or "note-signature" in err(p)
    assert _remembered(auditor) == []
    # A vkey that does not parse is invalid input.
    assert verify(site.url, "not-a-vkey", auditor).returncode == EXIT_INVALID


def test_audit_unreachable_is_an_operational_error(site: Server, base: Base, tmp_path: Path) -> None:
    auditor = tmp_path / "auditor"
    dead = f"http://127.0.0.1:{free_port()}/log"
    p = verify(dead, base.vkey, auditor)
    assert p.returncode == EXIT_ERROR
    assert "127.0.0.1" in err(p)
    doc = verify_json(dead, base.vkey, auditor, EXIT_ERROR)
    assert doc["verified"] is False
    assert doc["step"] == "fetch"
    # A live server but the wrong prefix: HTTP 404 is an operational error too, not a verdict.
    p = verify(f"http://127.0.0.1:{site.port}/nolog", base.vkey, auditor)
    assert p.returncode == EXIT_ERROR
    assert "404" in err(p)
    assert _remembered(auditor) == []
