"""Witnesses over real HTTP for the log side's tests: C2SP tlog-witness ``add-checkpoint`` as the
spec text has it, served by uvicorn on a free port of 127.0.0.1 in this process, and the ways a
witness can misbehave (garbage answers, a cosignature by the wrong key, 5xx, silence).

The witness proper (``fiat witness serve``) is its own package; these are the counterpart the log's
collector is tested against before and beside it — they check what the spec requires of a client
(the old size, the consistency proof, the log's signature) and record every request they got.
A :class:`TestWitness` can also date its cosignatures off the real clock (``time_offset``,
``fixed_time``). :class:`RawWitness` misbehaves below HTTP: it sends whatever bytes it is given,
as slowly as it is told (a witness dribbling its headers, or answering without end).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
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
    time_offset: int = 0  # added to the real clock for the cosignature timestamps (a clock ahead)
    fixed_time: int | None = None  # every cosignature dated this (a witness answering a cached one)
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
        ts = int(time.time()) + self.time_offset if self.fixed_time is None else self.fixed_time
        ts = 0 if self.mode == "zero-time" else ts
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


class RawWitness:
    """A "witness" at the socket level, on a free port of 127.0.0.1: to every connection it reads
    the request (one ``recv``) and sends the pieces ``answer()`` yields, ``pause`` seconds apart,
    until they end or the client hangs up. ``sent`` counts the bytes the kernel took, ``held`` the
    seconds each connection lasted until the client hung up (or the answer ended)."""

    def __init__(self, answer: Callable[[], Iterable[bytes]], pause: float = 0.0) -> None:
        self.answer, self.pause = answer, pause
        self.sent = 0
        self.held: list[float] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        start = time.monotonic()
        with conn:
            conn.recv(1 << 16)
            try:
                for piece in self.answer():
                    if self._stopped.is_set():
                        break
                    conn.sendall(piece)
                    with self._lock:
                        self.sent += len(piece)
                    if self.pause:
                        time.sleep(self.pause)
            except OSError:
                pass  # the client hung up
        with self._lock:
            self.held.append(time.monotonic() - start)

    def stop(self) -> None:
        self._stopped.set()
        self._sock.close()
