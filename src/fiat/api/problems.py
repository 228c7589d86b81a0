"""Errors as RFC 9457 problem details (``application/problem+json``).

The status of a refusal is chosen by the exception's TYPE (:data:`STATUS_BY_TYPE`),
never by its message: the message is the problem's ``detail`` and nothing else.

The OpenAPI document says so too: each route declares the error statuses it can answer
with :func:`problem_responses`, every one as ``application/problem+json`` with the
:data:`PROBLEM_SCHEMA` (``#/components/schemas/ProblemDetails``). A request that fails
validation is a 400 problem (:func:`install_handlers`), so FastAPI's own ``422
HTTPValidationError`` entry, which would promise a body this server never sends, is taken
out of the document (:func:`declare_problems`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from http import HTTPStatus
from time import monotonic
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fiat.api.events import MAX_SUBSCRIBERS, EventHub
from fiat.authorize.dpop import DpopError, DpopKeyNotEnrolled
from fiat.authorize.policy import PolicyError
from fiat.errors import (
    ApprovalError,
    AuthorizationError,
    BadSignatureError,
    ConflictError,
    MalformedError,
    MalformedRequestError,
    NotFoundError,
)
from fiat.serving import Drain

log = logging.getLogger("fiat.server")

PROBLEM_JSON = "application/problem+json"

#: Exception type → HTTP status (RFC 9110 §15). The first entry the exception is an
#: instance of wins, so the kinds of refusal (not found, conflict, bad signature) come
#: before the components' base classes they are mixed into.
STATUS_BY_TYPE: Mapping[type[Exception], int] = {
    DpopKeyNotEnrolled: 403,  # RFC 9110 §15.5.4: a valid proof, by a key this server does not know
    DpopError: 401,  # RFC 9449 §7.1 / RFC 9110 §15.5.2: no valid proof of possession
    NotFoundError: 404,  # RFC 9110 §15.5.5
    ConflictError: 409,  # RFC 9110 §15.5.10: already decided, already used
    BadSignatureError: 403,  # RFC 9110 §15.5.4: authenticated by the wrong key, or by none
    MalformedRequestError: 400,  # RFC 9110 §15.5.1
    MalformedError: 400,
    PolicyError: 422,  # RFC 9110 §15.5.21: well-formed, but the bundle does not validate
    AuthorizationError: 403,
    ApprovalError: 403,
}


#: RFC 9457 §3.1: the members of a problem-details object (``instance`` only when the
#: problem concerns a request path; every member of our problems is always a string but ``status``).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ProblemDetails",
    "type": "object",
    "description": "An RFC 9457 problem-details object: what was refused and why (``detail``).",
    "properties": {
        "type": {"type": "string", "description": "A URI naming the problem type", "default": "about:blank"},
        "title": {"type": "string", "description": "A short summary: the status's reason phrase or the refusal"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599, "description": "The HTTP status"},
        "detail": {"type": "string", "description": "What was wrong and, where there is one, what to do next"},
        "instance": {"type": "string", "description": "The request path the problem concerns"},
    },
    "required": ["type", "title", "status", "detail"],
}
PROBLEM_REF = "#/components/schemas/ProblemDetails"

#: What each error status means on this API (the descriptions in the OpenAPI document).
PROBLEM_MEANING: Mapping[int, str] = {
    400: "Malformed: the body, a parameter or a value in it failed validation",
    401: "No valid credential: the admin bearer token or a DPoP proof (RFC 9449) is missing or invalid",
    403: "Refused: a valid credential of a key not entitled to this, or a refusal by the authority",
    404: "What the request names does not exist here",
    409: "What the request names exists, but its state forbids this (already decided, already used)",
    413: "The request body is over the size limit",
    422: "Well-formed, but the policy bundle does not validate",
    503: "The server is shutting down (draining): retry against the restarted server after Retry-After",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each of ``statuses`` as an ``application/problem+json``
    problem (RFC 9457 §3), described by :data:`PROBLEM_MEANING`; a 503 also declares its
    ``Retry-After`` (RFC 9110 §10.2.3) header."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": PROBLEM_MEANING.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
        }
        if status == 503:
            response["headers"] = {
                "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
            }
        declared[status] = response
    return declared


def declare_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (an OpenAPI document FastAPI made) with ``ProblemDetails`` among its schemas, and
    without FastAPI's ``422 HTTPValidationError`` (validation errors are 400 problems here)."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            content = responses.get("422", {}).get("content", {})
            if content.get("application/json", {}).get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["ProblemDetails"] = PROBLEM_SCHEMA
    return doc


def status_for(exc: Exception, default: int = 400) -> int:
    """The status of ``exc`` by its type; ``default`` when the table has no entry for it."""
    for kind, status in STATUS_BY_TYPE.items():
        if isinstance(exc, kind):
            return status
    return default


class Problem(Exception):
    """Raised by a route: answered as a problem-details body with this status."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        kind: str = "about:blank",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind
        self.headers = dict(headers or {})


def refuse_while_draining(drain: Drain, what: str) -> None:
    """Raise a 503 problem with ``Retry-After`` (RFC 9110 §15.6.4, §10.2.3) while the server
    drains for its shutdown (:mod:`fiat.serving`): ``what`` is not granted any more."""
    if drain.draining:
        raise Problem(
            503,
            "Service Unavailable",
            f"the authority is shutting down: {what}; retry against the restarted authority",
            headers={"Retry-After": str(drain.retry_after(monotonic()))},
        )


def refuse_when_full(events: EventHub) -> None:
    """Raise a 503 problem with ``Retry-After`` when the live event streams are at their cap
    (:data:`fiat.api.events.MAX_SUBSCRIBERS`)."""
    if events.full():
        raise Problem(
            503,
            "Service Unavailable",
            f"{MAX_SUBSCRIBERS} live event streams are open, the most this server holds; retry in a few seconds",
            headers={"Retry-After": "5"},
        )


def refused(exc: Exception, *, title: str | None = None, default: int = 400, detail: str | None = None) -> Problem:
    """A :class:`Problem` for a refusal: status by the exception's type; title the status's
    reason phrase unless the route names its own; detail the exception's message."""
    status = status_for(exc, default)
    return Problem(status, title or HTTPStatus(status).phrase, str(exc) if detail is None else detail)


def problem(status: int, title: str, detail: str, instance: str = "", kind: str = "about:blank") -> JSONResponse:
    """An RFC 9457 §3 problem-details response."""
    body = {"type": kind, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install_handlers(app: FastAPI, metrics: Counter[str]) -> None:
    """Every error the application can meet becomes a problem-details body, and the OpenAPI
    document declares problem bodies (:func:`declare_problems`)."""
    fastapi_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_problems(fastapi_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        response = problem(exc.status, exc.title, exc.detail, request.url.path, exc.kind)
        for name, value in exc.headers.items():
            response.headers[name] = value
        return response

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
