"""``POST /v1/receipts`` (a runtime's execution receipt, logged once: idempotent) and
``GET /v1/bundles/{jti}`` (the evidence bundle)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request

from fiat.api.context import ApiContext
from fiat.api.models import ReceiptBody
from fiat.api.problems import problem_responses, refused
from fiat.errors import AuthorizationError, ConflictError, FiatError, MalformedError
from fiat.formats.dsse import Envelope


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth, metrics = ctx.authority, ctx.metrics

    @app.post("/v1/receipts", tags=["evidence"], responses=problem_responses(400, 403, 409, 413))
    def receipt(body: ReceiptBody) -> dict[str, Any]:
        try:
            envelope = Envelope.from_json(body.envelope)
            index = auth.record_receipt(envelope)
        except (MalformedError, ConflictError) as exc:
            raise refused(exc) from exc  # 400; 409: a different receipt for this permit is logged
        except AuthorizationError as exc:
            metrics["auth_failures_total"] += 1  # a receipt not provably from the permit's runtime
            raise refused(exc) from exc
        ctx.telemetry.observe_receipt_once(index, *_outcome(envelope.payload))
        return {"logIndex": index}

    @app.get("/v1/bundles/{jti}", tags=["evidence"], responses=problem_responses(400, 401, 403, 404))
    def bundle(jti: str, request: Request) -> dict[str, Any]:
        ctx.credentials.admin_or_enrolled(request)
        try:
            return auth.bundle(jti)
        except FiatError as exc:
            raise refused(exc, default=404) from exc


def _outcome(payload: bytes) -> tuple[object, object]:
    """A logged receipt's ``outcome`` and ``haltReason`` (its in-toto predicate; docs/formats.md)."""
    try:
        predicate = json.loads(payload).get("predicate", {})
        return predicate.get("outcome"), predicate.get("haltReason")
    except (ValueError, AttributeError):
        return None, None
