"""Witnesses over real HTTP for the log side's tests: C2SP tlog-witness ``add-checkpoint`` as the
spec text has it, served by uvicorn on a free port of 127.0.0.1 in this process, and the ways a
witness can misbehave (garbage answers, a cosignature by the wrong key, 5xx, silence).

The witness proper (``fiat witness serve``) is its own package; these are the counterpart the log's
collector is tested against before and beside it — they check what the spec requires of a client
(the old size, the consistency proof, the log's signature) and record every request they got.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from fiat.errors import FiatError
from fiat.tlog import cosignature, merkle, note, witness
from fiat.tlog.checkpoint import open_checkpoint
from fiat.verify.trust_root import cosigner_vkey

MODES = ("honest", "garbage", "wrong-key", "zero-time", "flaky")


@dataclass
class Seen:
    old_size: int
    proof_lines: int
    size: int
    status: int


@dataclass
class TestWitness:
    """One witness of ``mode`` for the log of ``log_vkey`` (a note verifier key)."""

    name: str
    log_verifier: note.Verifier
    mode: str = "honest"
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    size: int = 0
    root: bytes = merkle.EMPTY_ROOT
    seen: list[Seen] = field(default_factory=list)
    flaky_left: int = 2  # "flaky": answers 503 this many times first
    url: str = ""
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    __test__ = False  # not a test class

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes_raw()

    @property
    def vkey(self) -> str:
        return cosigner_vkey(self.name, self.public_key)

    def app(self) -> Starlette:
        async def add_checkpoint(request: Request) -> Response:
            body = await request.body()
            return self.handle(body)

        return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"])])

    def handle(self, body: bytes) -> Response:
        """tlog-witness §add-checkpoint, status rules in the spec's order."""
        try:
            req = witness.AddCheckpointRequest.parse(body)
        except FiatError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        try:
            cp = open_checkpoint(req.checkpoint, self.log_verifier)
        except FiatError as exc:
            return PlainTextResponse(str(exc), status_code=403)
        with self._lock:
            status, resp = self._check_and_update(req, cp.size, cp.root, cp.checkpoint.text())
            self.seen.append(Seen(req.old_size, len(req.proof), cp.size, status))
            return resp

    def _check_and_update(
        self, req: witness.AddCheckpointRequest, size: int, root: bytes, text: str
    ) -> tuple[int, Response]:
        if req.old_size > size:
            return 400, PlainTextResponse("old size beyond the checkpoint", status_code=400)
        if req.old_size != self.size:
            return 409, Response(witness.encode_size(self.size), 409, media_type=witness.SIZE_MEDIA_TYPE)
        if size == 0 and root != merkle.EMPTY_ROOT:
            return 422, PlainTextResponse("size 0 with a non-empty root", status_code=422)
        if req.old_size == 0 and req.proof:
            return 422, PlainTextResponse("a proof from size 0", status_code=422)
        if req.old_size == size:
            if root != self.root:
                return 422, PlainTextResponse("same size, another root", status_code=422)
        elif req.old_size > 0:
            try:
                merkle.verify_consistency(req.old_size, size, self.root, root, list(req.proof))
            except FiatError as exc:
                return 422, PlainTextResponse(str(exc), status_code=422)
        if self.mode == "flaky" and self.flaky_left > 0:
            self.flaky_left -= 1
            return 503, PlainTextResponse("try again", status_code=503)
        self.size, self.root = size, root
        ts = 0 if self.mode == "zero-time" else int(time.time())
        key = Ed25519PrivateKey.generate() if self.mode == "wrong-key" else self.key
        signed = note.parse(cosignature.cosign(req.checkpoint, self.name, key, ts))
        line = signed.signatures[-1]
        if self.mode == "garbage":
            return 200, Response(b"not a signature line at all\n", 200, media_type="text/plain")
        # An unknown key's line first: the client must ignore it (tlog-witness §add-checkpoint).
        other = note.Signature("someone.else/w9", 0x01020304, b"\x00" * 72)
        return 200, Response(witness.encode_signatures([other, line]), 200, media_type="text/plain")

    # -- serving -----------------------------------------------------------------------

    def start(self, port: int = 0) -> TestWitness:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the test witness did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def restart(w: TestWitness) -> TestWitness:
    """Start a stopped double again on its port, with the state it had (a witness restarted)."""
    return w.start(w.port)
