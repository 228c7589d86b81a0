"""Admin calls (the bearer token): ``POST /v1/revocations``, ``/v1/enrollments``, ``/v1/policies``."""

from __future__ import annotations

import asyncio
import base64
import re
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from fiat.api.context import ApiContext
from fiat.api.models import EnrollmentBody, PolicyBody, RevocationBody
from fiat.api.problems import Problem, problem_responses, refused
from fiat.authorize.policy import PolicyError
from fiat.errors import AuthorizationError, FiatError
from fiat.formats.encoding import b64url_decode

SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth, broadcaster = ctx.authority, ctx.broadcaster

    @app.post("/v1/revocations", tags=["admin"], responses=problem_responses(400, 401, 403, 413))
    async def revoke(body: RevocationBody, request: Request) -> dict[str, Any]:
        ctx.credentials.require_admin(request)
        try:
            epoch, index = await asyncio.to_thread(auth.revoke, body.kind, body.target, body.reason)
        except AuthorizationError as exc:
            raise refused(exc) from exc
        await broadcaster.publish_now()  # pushed at once, not at the next tick
        return {"revocationEpoch": epoch, "logIndex": index}

    @app.post("/v1/enrollments", tags=["admin"], responses=problem_responses(400, 401, 413))
    def enroll(body: EnrollmentBody, request: Request) -> dict[str, Any]:
        ctx.credentials.require_admin(request)
        try:
            public = b64url_decode(body.publicKey, "publicKey")
            rec = auth.enroll(body.role, body.name, public, tuple(body.groups or ()), body.identity, url=body.url)
        except FiatError as exc:
            raise refused(exc) from exc
        return rec.trusted().to_json()

    @app.post("/v1/policies", tags=["admin"], responses=problem_responses(400, 401, 413, 422))
    def publish(body: PolicyBody, request: Request) -> dict[str, Any]:
        ctx.credentials.require_admin(request)
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
                raise refused(exc, title="Policy refused", detail=str(exc).replace(tmp, "<bundle>")) from exc
        broadcaster.wake()
        return {"version": version, "digest": digest, "logIndex": index}
