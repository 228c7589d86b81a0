"""Real parts for witnessed-guard and split-view tests: keys, a trust root, signed trust states,
a forked log (one log key, two histories) and an HTTP server of one history's tiles.

* :class:`World` — fresh Ed25519 keys of every role a guard checks (authority, log, runtime,
  witnesses) and the :class:`~fiat.verify.TrustRoot` naming them; :meth:`World.state` signs a
  trust state (the authority's JWS, docs/formats.md "Trust state") embedding a checkpoint note;
  :meth:`World.cosign` adds C2SP tlog-cosignature lines with the witnesses' real keys.
* :class:`ForkedLog` — two real :class:`~fiat.prove.log.TransparencyLog` instances over two
  SQLite stores, signed by one log key: a common prefix, then different entries on each side.
* :class:`TileServer` — a real HTTP server of one side's tiles and checkpoint at
  ``/log/tile/...`` and ``/log/checkpoint`` (tlog-tiles), where a guard's trust monitor reads
  them (its authority's ``/log``); other paths answer 404.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.enforce.guard import GuardSettings, Runtime, Session
from fiat.enforce.trust import TrustMonitor
from fiat.establish.measure import default_measurer
from fiat.formats.jws import jwk_thumbprint
from fiat.persist.sqlite.log import SQLiteLogStore
from fiat.prove.log import TransparencyLog
from fiat.tlog import note
from fiat.tlog.checkpoint import SignedCheckpoint
from fiat.tlog.cosignature import cosign, parse_vkey
from fiat.tlog.tiles import parse_path
from fiat.verify import TrustedKey, TrustRoot
from fiat.verify.trust_state import TRUST_STATE_TYP

ORIGIN = "fiat.test/forked-log"
ISSUER, AUDIENCE = "fiat.test", "fiat-runtime"


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def trusted(role: str, name: str, key: Ed25519PrivateKey, **kw: Any) -> TrustedKey:
    """A trust-root key for ``key``, valid from an hour ago unless ``valid_from`` says otherwise."""
    public = _raw(key)
    valid_from = kw.pop("valid_from", time.time() - 3600)
    return TrustedKey(jwk_thumbprint(public), role, name, public, valid_from, **kw)


@dataclass
class World:
    """Keys of every role and the trust root that names them (see the module docstring)."""

    witnesses: int = 3
    quorum: int = 2
    #: Extra keyword arguments of a witness's trust-root key, by witness name (validity, url).
    witness_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Witness keys held elsewhere (a real ``fiat witness serve``), listed in the trust root too.
    external: list[TrustedKey] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.authority = Ed25519PrivateKey.generate()
        self.log_key = Ed25519PrivateKey.generate()
        self.signer = note.Signer(ORIGIN, self.log_key)
        self.runtime = Ed25519PrivateKey.generate()
        self.witness: dict[str, Ed25519PrivateKey] = {
            f"witness{i}.test/w": Ed25519PrivateKey.generate() for i in range(1, self.witnesses + 1)
        }
        self.epoch = 0
        self.root = self.make_root()

    def make_root(self, quorum: int | None = None) -> TrustRoot:
        keys = [
            trusted("authority", "authority", self.authority),
            trusted("log", ORIGIN, self.log_key),
            trusted("runtime", "runtime", self.runtime),
            *(trusted("witness", n, k, **self.witness_keys.get(n, {})) for n, k in self.witness.items()),
            *self.external,
        ]
        return TrustRoot(ISSUER, AUDIENCE, ORIGIN, tuple(keys), self.quorum if quorum is None else quorum)

    @property
    def authority_kid(self) -> str:
        return jwk_thumbprint(_raw(self.authority))

    @property
    def runtime_kid(self) -> str:
        return jwk_thumbprint(_raw(self.runtime))

    def names(self) -> list[str]:
        return list(self.witness)

    def cosign(
        self, checkpoint: bytes, names: Iterable[str], ts: int | None = None, key: Ed25519PrivateKey | None = None
    ) -> bytes:
        """``checkpoint`` with a cosignature (timestamp ``ts``, default now) by each witness of ``names``
        (with ``key`` instead of the witness's own, to forge one)."""
        when = int(time.time()) if ts is None else ts
        for name in names:
            checkpoint = cosign(checkpoint, name, key or self.witness[name], when)
        return checkpoint

    def state(self, checkpoint: bytes, at: float | None = None) -> str:
        """A complete trust state signed by the authority now (or at ``at``), embedding ``checkpoint``."""
        now = time.time() if at is None else at
        self.epoch += 1
        claims = {
            "iss": ISSUER,
            "iat": int(now),
            "time": round(now, 3),
            "epoch": self.epoch,
            "revocationsSince": 0,
            "revocationEpoch": 0,
            "revocations": [],
            "checkpoint": checkpoint.decode("utf-8"),
        }
        return jwt.encode(
            claims, self.authority, algorithm="EdDSA", headers={"kid": self.authority_kid, "typ": TRUST_STATE_TYP}
        )


def witness_key(vkey: str, url: str | None = None) -> TrustedKey:
    """The trust-root key of a witness from its Ed25519 cosigner vkey (C2SP tlog-cosignature, type
    0x04; ``fiat witness vkey`` prints it), with its tlog-witness ``url``."""
    name, alg, public = parse_vkey(vkey)
    if alg != note.ALG_COSIGNATURE_V1:
        raise ValueError(f"{vkey[:40]!r} is not an Ed25519 cosigner vkey")
    return TrustedKey(jwk_thumbprint(public), "witness", name, public, time.time() - 3600, url=url)


class ForkedLog:
    """One log key, two histories: ``common`` shared entries, then ``a`` and ``b`` different ones."""

    def __init__(self, directory: Path, signer: note.Signer, common: int, a: int, b: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.a = TransparencyLog(SQLiteLogStore(directory / "side-a.db"), signer)
        self.b = TransparencyLog(SQLiteLogStore(directory / "side-b.db"), signer)
        shared = [f"entry {i}".encode() for i in range(common)]
        for side, extra, tag in ((self.a, a, "A"), (self.b, b, "B")):
            side.start()
            entries = shared + [f"side {tag} entry {i}".encode() for i in range(extra)]
            if entries:
                side.append_many(entries, timeout=30)

    def grow(self, side: str, entries: Sequence[bytes]) -> SignedCheckpoint:
        log = self.a if side == "a" else self.b
        log.append_many(list(entries), timeout=30)
        return log.checkpoint()

    @property
    def checkpoint_a(self) -> SignedCheckpoint:
        return self.a.checkpoint()

    @property
    def checkpoint_b(self) -> SignedCheckpoint:
        return self.b.checkpoint()

    def close(self) -> None:
        self.a.close()
        self.b.close()


class _TileHandler(BaseHTTPRequestHandler):
    server: _TileHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        log = self.server.log
        body: bytes | None = None
        path = self.path.split("?", 1)[0]
        try:
            if path == "/log/checkpoint":
                body = log.checkpoint().note_bytes
            elif path.startswith("/log/tile/"):
                tile = parse_path(path[len("/log/") :])
                if not tile.is_entries:
                    body = log.read_tile(tile.level, tile.index, tile.width)
        except Exception:
            body = None
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _TileHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, log: TransparencyLog) -> None:
        super().__init__(("127.0.0.1", 0), _TileHandler)
        self.log = log


class TileServer:
    """A real HTTP server of ``log``'s tiles and checkpoint under ``/log`` (see the module docstring)."""

    def __init__(self, log: TransparencyLog) -> None:
        self.httpd = _TileHTTPServer(log)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> TileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"


def checked_session(
    world: World, monitor: TrustMonitor, tmp_path: Path, settings: GuardSettings, jti: str = "pmt_test"
) -> Session:
    """A guard session whose permit is valid for ten minutes and bound to this very environment, so
    that every step but the trust-state ones holds (its client is never used by ``check``)."""
    argv = [sys.executable, "-c", "pass"]
    measurer = default_measurer(argv, str(tmp_path), [], ["PATH"])
    s = Session(
        None,  # type: ignore[arg-type]
        world.root,
        Runtime(world.runtime_kid, world.runtime),
        monitor,
        measurer,
        PRINCIPAL,
        ACTION,
        RESOURCE,
        {"command": {"argv": argv, "cwd": str(tmp_path)}},
        settings=settings,
    )
    now = time.time()
    s.claims = {
        "jti": jti,
        "iat": int(now),
        "exp": int(now) + 600,
        "environment": {"digest": {"sha256": measurer.measure()["digest"]}},
    }
    return s
