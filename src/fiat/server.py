"""``fiat serve``: the authority's HTTP JSON API and the transparency log, in one server.

* ``POST /v1/authorize`` — a decision (and a permit); the caller proves the runtime key
  with an RFC 9449 DPoP proof.
* ``GET /v1/approvals[?status=pending]`` — what approvers are asked (an enrolled key or admin);
* ``GET /v1/approvals/{id}``, ``POST /v1/approvals/{id}`` — read / decide an approval
  (the decision is an approval statement signed by an approver key).
* ``POST /v1/permits/{jti}/consume`` — use a single-use permit (DPoP by its ``cnf`` key).
* ``POST /v1/revocations``, ``POST /v1/enrollments``, ``POST /v1/policies`` — admin (bearer).
* ``GET /v1/trust/state``, ``GET /v1/trust/stream`` (server-sent events) — the signed trust state.
* ``GET /metrics`` (Prometheus text), ``GET /healthz``, ``/log/...`` (C2SP tlog-tiles), ``/docs``.

Errors are RFC 9457 problem details (``application/problem+json``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from fiat import __version__
from fiat.authorize.authority import (
    ApprovalError,
    Authority,
    AuthorizationError,
    AuthorizationRequest,
    MalformedRequestError,
)
from fiat.authorize.dpop import DpopError, DpopKeyNotEnrolled, DpopVerifier
from fiat.authorize.policy import PolicyError
from fiat.config import Config
from fiat.errors import FiatError, MalformedError
from fiat.formats.dsse import Envelope
from fiat.formats.encoding import b64url_decode
from fiat.prove.http import log_routes

log = logging.getLogger("fiat.server")

MAX_BODY = 1 << 20
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# -- admin credential ------------------------------------------------------------------------


def ensure_admin_token(keys_dir: Path) -> str:
    """The admin bearer token (created 0600 on first use; never printed by the server)."""
    path = keys_dir / ADMIN_TOKEN_FILE
    if not path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("fiat_admin_" + secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip()


# -- problem details --------------------------------------------------------------------------


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, kind: str = "about:blank") -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind


def problem(status: int, title: str, detail: str, instance: str = "", kind: str = "about:blank") -> JSONResponse:
    body = {"type": kind, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (413), declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    await problem(413, "Payload Too Large", f"request bodies are limited to {self.limit} bytes")(
                        scope, receive, send
                    )
                    return
        if scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)  # streaming responses (SSE) must not be buffered
            return
        # Read the (possibly chunked) body up to the limit before the application sees it.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await problem(413, "Payload Too Large", f"request bodies are limited to {self.limit} bytes")(
                    scope, receive, send
                )
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# -- wire models ------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AuthorizeBody(Strict):
    principal: str = Field(min_length=1, max_length=1024)
    action: str = Field(min_length=1, max_length=1024)
    resource: str = Field(min_length=1, max_length=1024)
    context: dict[str, Any] = Field(default_factory=dict)
    parent: str | None = Field(default=None, max_length=256)
    runtimeKid: str = Field(min_length=1, max_length=128)
    evidence: dict[str, Any] | None = None
    approvalId: str | None = Field(default=None, max_length=128)
    renews: str | None = Field(default=None, max_length=256)


class ApprovalBody(Strict):
    envelope: dict[str, Any]


class RevocationBody(Strict):
    kind: str = Field(pattern="^(permit|principal|runtime)$")
    target: str = Field(min_length=1, max_length=1024)
    reason: str = Field(min_length=1, max_length=2048)


class EnrollmentBody(Strict):
    role: str = Field(pattern="^(runtime|approver|witness)$")
    name: str = Field(min_length=1, max_length=256)
    publicKey: str = Field(min_length=43, max_length=43)


class PolicyBody(Strict):
    files: dict[str, str]  # file name -> base64 content


# -- the trust-state broadcaster ------------------------------------------------------------------


class TrustBroadcaster:
    """Signs the trust state every interval, and at once on a revocation; fans it out to subscribers."""

    def __init__(self, authority: Authority, interval: float) -> None:
        self.authority = authority
        self.interval = interval
        self.epoch = 0
        self.latest: str = ""
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._wake = asyncio.Event()
        self._sign_lock = threading.Lock()

    def sign(self) -> str:
        with self._sign_lock:
            self.epoch += 1
            self.latest = self.authority.trust_state(0, self.epoch)
            return self.latest

    async def publish_now(self) -> None:
        state = await asyncio.to_thread(self.sign)
        for q in list(self._subscribers):
            if q.full():
                q.get_nowait()
            q.put_nowait(state)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.authority.reload_keys)
                changed = await asyncio.to_thread(self.authority.reload_policy)
                await asyncio.to_thread(self.authority.expire_approvals)
                if changed:
                    log.info("policy changed; pushing the trust state")
                await self.publish_now()
            except Exception as exc:  # keep ticking; guards will see staleness if this persists
                log.error("trust state tick failed: %s", exc)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue(maxsize=4)
        if self.latest:
            q.put_nowait(self.latest)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        self._subscribers.discard(q)


# -- the application ----------------------------------------------------------------------------------


def create_app(cfg: Config, *, trust_interval: float = 1.0, authority: Authority | None = None) -> FastAPI:
    auth = authority or Authority(cfg)
    admin_hash = hashlib.sha256(ensure_admin_token(cfg.keys_dir).encode()).digest()
    dpop = DpopVerifier()
    metrics: Counter[str] = Counter()
    broadcaster = TrustBroadcaster(auth, trust_interval)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Decisions wait on the log's group commit: more concurrent requests make bigger batches.
        anyio.to_thread.current_default_thread_limiter().total_tokens = 128
        task = asyncio.create_task(broadcaster.run())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.to_thread(auth.close)

    app = FastAPI(
        title="Fiat authority",
        version=__version__,
        description="Authorize before anything runs; every decision is signed evidence in the transparency log.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.authority = auth
    app.state.broadcaster = broadcaster
    app.state.metrics = metrics

    # -- errors as RFC 9457 problem details
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, request.url.path, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics["requests_invalid_total"] += 1
        errors = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in exc.errors()[:10]
        )
        return problem(400, "Bad Request", errors or "the request is not valid", request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(exc.status_code, str(exc.detail), str(exc.detail), request.url.path)
        for name, value in (exc.headers or {}).items():  # e.g. Allow on 405 (RFC 9110 §15.5.6)
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        metrics["errors_total"] += 1
        return problem(500, "Internal Server Error", "the server failed; nothing was granted", request.url.path)

    def runtime_proof(request: Request) -> tuple[str, bytes]:
        proofs = request.headers.getlist("dpop")
        if len(proofs) > 1:  # RFC 9449 §4.3 step 1: exactly one
            metrics["auth_failures_total"] += 1
            raise Problem(401, "Unauthorized", "send exactly one DPoP header")
        try:
            return dpop.verify(proofs[0] if proofs else None, request.method, str(request.url), allow=auth.is_enrolled)
        except DpopKeyNotEnrolled as exc:
            metrics["auth_failures_total"] += 1
            raise Problem(403, "Forbidden", exc.reason) from exc
        except DpopError as exc:
            metrics["auth_failures_total"] += 1
            raise Problem(401, "Unauthorized", exc.reason) from exc

    def require_admin(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            hashlib.sha256(token.strip().encode()).digest(), admin_hash
        )
        if not ok:
            metrics["auth_failures_total"] += 1
            raise Problem(401, "Unauthorized", "this endpoint needs the admin bearer token (<home>/keys/admin.token)")

    def admin_or_enrolled(request: Request) -> None:
        """The admin token, or a DPoP proof by any enrolled key (runtimes, approvers)."""
        if request.headers.get("authorization"):
            require_admin(request)
        else:
            runtime_proof(request)  # refuses keys that are not enrolled

    # -- endpoints
    @app.post("/v1/authorize", tags=["authorize"], response_class=JSONResponse)
    async def authorize(body: AuthorizeBody, request: Request) -> JSONResponse:
        # Checked on the event loop; decided by the authority's decider thread; awaited
        # without holding a worker thread while the evidence becomes durable.
        kid, _ = runtime_proof(request)
        if kid != body.runtimeKid:
            metrics["auth_failures_total"] += 1
            raise Problem(401, "Unauthorized", "the DPoP proof's key is not the runtime key named in the request")
        try:
            pending = auth.submit(
                AuthorizationRequest(
                    body.principal,
                    body.action,
                    body.resource,
                    body.runtimeKid,
                    body.context,
                    body.parent,
                    body.evidence,
                    body.approvalId,
                    body.renews,
                )
            )
            result = await asyncio.wrap_future(pending)
        except MalformedRequestError as exc:
            metrics["requests_invalid_total"] += 1
            raise Problem(400, "Bad Request", str(exc)) from exc
        except AuthorizationError as exc:
            metrics["authorizations_refused_total"] += 1
            raise Problem(403, "Forbidden", str(exc)) from exc
        metrics[f"decisions_{result.decision}_total"] += 1
        return JSONResponse(result.to_json())  # already JSON types: no response-model encoding pass

    @app.get("/v1/approvals", tags=["approvals"])
    def list_approvals(request: Request, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        admin_or_enrolled(request)
        if status not in (None, "pending", "approved", "denied", "expired", "used") or not 1 <= limit <= 1000:
            raise Problem(400, "Bad Request", "status is pending|approved|denied|expired|used; limit 1..1000")
        return auth.approvals(status, limit)

    @app.get("/v1/approvals/{approval_id}", tags=["approvals"])
    def get_approval(approval_id: str, request: Request) -> dict[str, Any]:
        admin_or_enrolled(request)
        try:
            return auth.approval(approval_id)
        except ApprovalError as exc:
            raise Problem(404, "Not Found", str(exc)) from exc

    @app.post("/v1/approvals/{approval_id}", tags=["approvals"])
    def decide_approval(approval_id: str, body: ApprovalBody) -> dict[str, Any]:
        try:
            envelope = Envelope.from_json(body.envelope)
        except MalformedError as exc:
            raise Problem(400, "Bad Request", str(exc)) from exc
        try:
            return auth.decide_approval(approval_id, envelope)
        except ApprovalError as exc:
            metrics["auth_failures_total" if "signed" in str(exc) else "approvals_refused_total"] += 1
            status = 404 if str(exc).startswith("no approval") else 409 if "already" in str(exc) else 403
            raise Problem(status, "Approval refused", str(exc)) from exc

    @app.post("/v1/permits/{jti}/consume", tags=["authorize"])
    def consume(jti: str, request: Request) -> dict[str, Any]:
        kid, _ = runtime_proof(request)
        try:
            auth.consume(jti, kid)
        except AuthorizationError as exc:
            status = 409 if "already used" in str(exc) else 403
            raise Problem(status, "Refused", str(exc)) from exc
        return {"permitId": jti, "consumed": True}

    @app.post("/v1/receipts", tags=["evidence"])
    def receipt(body: ApprovalBody) -> dict[str, Any]:
        try:
            envelope = Envelope.from_json(body.envelope)
            index = auth.record_receipt(envelope)
        except MalformedError as exc:
            raise Problem(400, "Bad Request", str(exc)) from exc
        except AuthorizationError as exc:
            metrics["auth_failures_total"] += 1
            raise Problem(403, "Forbidden", str(exc)) from exc
        return {"logIndex": index}

    @app.get("/v1/bundles/{jti}", tags=["evidence"])
    def bundle(jti: str, request: Request) -> dict[str, Any]:
        admin_or_enrolled(request)
        try:
            return auth.bundle(jti)
        except FiatError as exc:
            raise Problem(404, "Not Found", str(exc)) from exc

    @app.post("/v1/revocations", tags=["admin"])
    async def revoke(body: RevocationBody, request: Request) -> dict[str, Any]:
        require_admin(request)
        try:
            epoch, index = await asyncio.to_thread(auth.revoke, body.kind, body.target, body.reason)
        except AuthorizationError as exc:
            raise Problem(400, "Bad Request", str(exc)) from exc
        await broadcaster.publish_now()  # pushed at once, not at the next tick
        return {"revocationEpoch": epoch, "logIndex": index}

    @app.post("/v1/enrollments", tags=["admin"])
    def enroll(body: EnrollmentBody, request: Request) -> dict[str, Any]:
        require_admin(request)
        try:
            public = b64url_decode(body.publicKey, "publicKey")
            rec = auth.enroll(body.role, body.name, public)
        except (MalformedError, FiatError) as exc:
            raise Problem(400, "Bad Request", str(exc)) from exc
        return rec.trusted().to_json()

    @app.post("/v1/policies", tags=["admin"])
    def publish(body: PolicyBody, request: Request) -> dict[str, Any]:
        require_admin(request)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for name, content in body.files.items():
                if not SAFE_NAME.fullmatch(name):
                    raise Problem(400, "Bad Request", "file names are 1–128 of A–Z a–z 0–9 . _ - and start with no dot")
                try:
                    data = base64.b64decode(content, validate=True)
                except ValueError as exc:
                    raise Problem(400, "Bad Request", f"{name}: the content is not base64") from exc
                Path(tmp, name).write_bytes(data)
            try:
                version, digest, index = auth.publish_policy(Path(tmp))
            except PolicyError as exc:
                raise Problem(422, "Policy refused", str(exc).replace(tmp, "<bundle>")) from exc
        broadcaster.wake()
        return {"version": version, "digest": digest, "logIndex": index}

    @app.get("/v1/trust/state", tags=["trust"])
    def trust_state(since: int = 0) -> dict[str, Any]:
        if not 0 <= since < 2**63:
            raise Problem(400, "Bad Request", "since must be a revocation epoch (0 ≤ since < 2^63)")
        return {"state": auth.trust_state(since, broadcaster.epoch)}

    @app.get("/v1/trust/stream", tags=["trust"])
    async def trust_stream(request: Request) -> StreamingResponse:
        q = broadcaster.subscribe()

        async def events() -> AsyncIterator[bytes]:
            try:
                while not await request.is_disconnected():
                    try:
                        state = await asyncio.wait_for(q.get(), timeout=15)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    yield f"event: trust-state\ndata: {state}\n\n".encode()
            finally:
                broadcaster.unsubscribe(q)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> PlainTextResponse:
        lines = [f"fiat_{k} {v}" for k, v in sorted(metrics.items())]
        lines.append(f"fiat_log_tree_size {auth.log.checkpoint().size}")
        lines.append(f"fiat_trust_state_epoch {broadcaster.epoch}")
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        active = auth.policy
        return {
            "status": "ok",
            "time": time.time(),
            "logSize": auth.log.checkpoint().size,
            "policyVersion": None if active is None else active.version,
        }

    for route in log_routes(auth.log):
        app.router.routes.append(route)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return PlainTextResponse(
            f"Fiat {__version__}\nAPI: /docs\nlog: /log/checkpoint\nverifier key: {auth.log.verifier.encode()}\n"
        )

    app.add_middleware(BodyLimit)
    return app
