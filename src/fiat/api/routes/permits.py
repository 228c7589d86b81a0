"""``POST /v1/permits/{jti}/consume``: the runtime bound to a single-use permit (cnf) uses it, once."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from fiat.api.context import ApiContext
from fiat.api.problems import problem_responses, refuse_while_draining, refused
from fiat.errors import AuthorizationError


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth = ctx.authority

    @app.post("/v1/permits/{jti}/consume", tags=["authorize"], responses=problem_responses(401, 403, 409, 413, 503))
    def consume(jti: str, request: Request) -> dict[str, Any]:
        refuse_while_draining(ctx.drain, "single-use permits are not consumed")  # fiat.serving
        kid, _ = ctx.credentials.runtime_proof(request)
        try:
            auth.consume(jti, kid)
        except AuthorizationError as exc:
            raise refused(exc, title="Refused") from exc
        return {"permitId": jti, "consumed": True}
