"""``POST /v1/authorize``: a decision and, when allowed, a permit bound to the runtime key.

``POST /v1/authorize/permissible``: which (action, resource) candidates some request by a
principal could be permitted under the active policy (:meth:`Authority.permissible`), for a
gateway that lists only tools a principal could call; proven with the runtime key's DPoP
(RFC 9449 §4.3) exactly as ``POST /v1/authorize``. A listing, never a grant.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fiat.api.context import ApiContext
from fiat.api.models import AuthorizeBody, PermissibleBody
from fiat.api.problems import problem_responses, refuse_while_draining, refused
from fiat.authorize.authority import AuthorizationRequest
from fiat.authorize.policy import PolicyError
from fiat.errors import AuthorizationError, MalformedRequestError


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth, metrics = ctx.authority, ctx.metrics

    @app.post(
        "/v1/authorize",
        tags=["authorize"],
        response_class=JSONResponse,
        # 409: the permit a renewal names already has its one successor (docs/formats.md, "Renewal and revocation").
        responses=problem_responses(400, 401, 403, 409, 413, 503),
    )
    async def authorize(body: AuthorizeBody, request: Request) -> JSONResponse:
        # The proof is checked in a worker thread (its jti is written to the store's replay cache);
        # decided by the authority's decider thread; awaited without holding a worker thread
        # while the evidence becomes durable.
        # A draining server (fiat.serving) grants nothing: no new permit, no renewal.
        refuse_while_draining(ctx.drain, "no new permits or renewals are granted")
        kid, _ = await asyncio.to_thread(ctx.credentials.runtime_proof, request)
        if kid != body.runtimeKid:
            raise ctx.credentials.refuse(401, "the DPoP proof's key is not the runtime key named in the request")
        started = time.perf_counter()
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
                    None if body.scope is None else [pair.model_dump() for pair in body.scope],
                )
            )
            result = await asyncio.wrap_future(pending)
        except AuthorizationError as exc:
            invalid = isinstance(exc, MalformedRequestError)
            metrics["requests_invalid_total" if invalid else "authorizations_refused_total"] += 1
            ctx.telemetry.observe_authorize(time.perf_counter() - started, "refused")
            raise refused(exc) from exc
        metrics[f"decisions_{result.decision}_total"] += 1
        ctx.telemetry.observe_authorize(time.perf_counter() - started, result.decision)
        return JSONResponse(result.to_json())  # already JSON types: no response-model encoding pass

    @app.post(
        "/v1/authorize/permissible",
        tags=["authorize"],
        response_class=JSONResponse,
        # 422: Cedar cannot evaluate the active bundle for this principal.
        responses=problem_responses(400, 401, 403, 413, 422),
    )
    async def permissible(body: PermissibleBody, request: Request) -> JSONResponse:
        # The same proof as POST /v1/authorize: one DPoP header, by an enrolled key, for this URL;
        # the authority then asks that key be an active, unrevoked runtime key.
        kid, _ = await asyncio.to_thread(ctx.credentials.runtime_proof, request)
        pairs = [(c.action, c.resource) for c in body.candidates]
        try:
            digest, flags = await asyncio.to_thread(auth.permissible, kid, body.principal, pairs)
        except (AuthorizationError, PolicyError) as exc:
            invalid = isinstance(exc, MalformedRequestError)
            metrics["requests_invalid_total" if invalid else "authorizations_refused_total"] += 1
            raise refused(exc) from exc
        return JSONResponse({"policyDigest": digest, "permissible": flags})
