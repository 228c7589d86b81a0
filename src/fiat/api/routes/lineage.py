"""The lineage explorer's read API (:mod:`fiat.prove.lineage`): public and read-only, like the log.

* ``GET /v1/lineage?permit=<jti>`` — that permit's whole chain (root ancestor → every descendant).
* ``GET /v1/lineage?principal=<p>&since=<t>&until=<t>&limit=<n>`` — the lineages of the newest
  ``limit`` permits matching (a forest); every filter is optional.
* ``GET /v1/lineage/{jti}/node`` — one permit's evidence: its claims, decision, approvals and
  receipt with their log indexes and whether each has an inclusion proof yet.

What these answer is what the public log already holds (``/log/``: every permit and statement is a
public entry); the evidence bundle itself stays behind ``GET /v1/bundles/{jti}`` (admin or an
enrolled runtime). Query parameters are checked strictly: an unknown one, a repeated one, a time
that is not RFC 3339 with an offset, or a limit outside 1..500 is a 400 problem saying what to send.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request

from fiat.api.context import ApiContext
from fiat.api.problems import Problem, problem_responses, refused
from fiat.authorize.revocations import principal_key
from fiat.errors import FiatError
from fiat.prove.lineage import Lineage

#: The most permits a forest search matches (each brings its lineage, up to the read model's cap).
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
#: The longest id or principal accepted (far above any Fiat issues; bounds the query).
MAX_TEXT = 512
_ALLOWED = ("permit", "principal", "since", "until", "limit")


def _bad(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail)


def _text(name: str, value: str) -> str:
    if not value or len(value) > MAX_TEXT or not value.isprintable():
        raise _bad(f"{name} must be 1 to {MAX_TEXT} printable characters, e.g. {name}=agent:release-bot")
    return value


def _time(name: str, value: str) -> float:
    """An RFC 3339 date-time with an offset (RFC 3339 §5.6), e.g. ``2026-12-02T12:00:00Z``."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None or "T" not in value.upper():
        raise _bad(f"{name} must be an RFC 3339 date-time with an offset, e.g. {name}=2026-12-02T12:00:00Z")
    return at.timestamp()


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth = ctx.authority
    lineage = Lineage(
        auth.recorder.index,
        auth.store,
        auth.log.read_entries,
        lambda: auth.log.checkpoint().size,
        auth.clock,
        principal_key,
    )

    @app.get("/v1/lineage", tags=["lineage"], responses=problem_responses(400, 404))
    def search(
        request: Request,
        permit: str | None = None,
        principal: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: str | None = None,
    ) -> dict[str, Any]:
        """A permit's whole lineage DAG (``permit``), or the lineages of the newest permits that
        match ``principal`` and an issue-time range ``[since, until]`` (RFC 3339)."""
        params = request.query_params
        unknown = sorted(set(params) - set(_ALLOWED))
        if unknown:
            raise _bad(f"unknown query parameter {unknown[0]!r}; use permit, or principal, since, until and limit")
        repeated = [k for k in _ALLOWED if len(params.getlist(k)) > 1]
        if repeated:
            raise _bad(f"query parameter {repeated[0]!r} is given more than once; give it once")
        if permit is not None:
            others = [k for k in ("principal", "since", "until", "limit") if k in params]
            if others:
                raise _bad(
                    f"permit names one chain; drop {others[0]!r} (or search by principal and time without permit)"
                )
            jti = _text("permit", permit)
            try:
                return lineage.chain(jti)
            except FiatError as exc:
                raise refused(exc, default=404) from exc
        who = None if principal is None else _text("principal", principal)
        lo = None if since is None else _time("since", since)
        hi = None if until is None else _time("until", until)
        if lo is not None and hi is not None and lo > hi:
            raise _bad("since is after until; give since ≤ until")
        n = DEFAULT_LIMIT
        if limit is not None:
            if not re.fullmatch(r"[0-9]{1,6}", limit) or not 1 <= int(limit) <= MAX_LIMIT:  # ASCII digits only
                raise _bad(f"limit must be a whole number from 1 to {MAX_LIMIT}, e.g. limit={DEFAULT_LIMIT}")
            n = int(limit)
        try:
            return lineage.forest(principal=who, since=lo, until=hi, limit=n)
        except FiatError as exc:
            raise refused(exc) from exc

    @app.get("/v1/lineage/{jti}/node", tags=["lineage"], responses=problem_responses(400, 404))
    def node(jti: str) -> dict[str, Any]:
        """One permit's evidence: claims, decision, approvals, receipt, their log indexes and
        whether each has an inclusion proof; its bundle is at ``bundle`` (admin or enrolled)."""
        permit_id = _text("jti", jti)
        try:
            return lineage.node(permit_id)
        except FiatError as exc:
            raise refused(exc, default=404) from exc
