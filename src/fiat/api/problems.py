"""Errors as RFC 9457 problem details (``application/problem+json``).

The status of a refusal is chosen by the exception's TYPE (:data:`STATUS_BY_TYPE`),
never by its message: the message is the problem's ``detail`` and nothing else.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from http import HTTPStatus
from time import monotonic

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    """Every error the application can meet becomes a problem-details body."""

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
