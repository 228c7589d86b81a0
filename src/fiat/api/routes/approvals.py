"""The approval routes.

* ``GET /v1/approvals[?status=&limit=]`` — what approvers are asked (approver keys and admin only);
* ``GET /v1/approvals/{id}`` — one request in full;
* ``POST /v1/approvals/{id}`` — decide, with a signed approval statement.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from fiat.api.context import ApiContext
from fiat.api.models import ApprovalBody
from fiat.api.problems import Problem, problem_responses, refused
from fiat.errors import ApprovalError, BadSignatureError, MalformedError
from fiat.formats.dsse import Envelope


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth, metrics = ctx.authority, ctx.metrics

    @app.get("/v1/approvals", tags=["approvals"], responses=problem_responses(400, 401, 403))
    def list_approvals(request: Request, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        # Only approvers (and the admin) see the queue: a runtime reads its own approval by id.
        ctx.credentials.admin_or_approver(request)
        if status not in (None, "pending", "approved", "denied", "expired", "used") or not 1 <= limit <= 1000:
            raise Problem(400, "Bad Request", "status is pending|approved|denied|expired|used; limit 1..1000")
        return auth.approvals(status, limit)

    @app.get("/v1/approvals/{approval_id}", tags=["approvals"], responses=problem_responses(401, 403, 404))
    def get_approval(approval_id: str, request: Request) -> dict[str, Any]:
        ctx.credentials.admin_or_enrolled(request)
        try:
            return auth.approval(approval_id)
        except ApprovalError as exc:
            raise refused(exc) from exc

    @app.post("/v1/approvals/{approval_id}", tags=["approvals"], responses=problem_responses(400, 403, 404, 409, 413))
    def decide_approval(approval_id: str, body: ApprovalBody) -> dict[str, Any]:
        try:
            envelope = Envelope.from_json(body.envelope)
        except MalformedError as exc:
            raise refused(exc) from exc
        try:
            return auth.decide_approval(approval_id, envelope)
        except ApprovalError as exc:
            metrics["auth_failures_total" if isinstance(exc, BadSignatureError) else "approvals_refused_total"] += 1
            raise refused(exc, title="Approval refused") from exc
