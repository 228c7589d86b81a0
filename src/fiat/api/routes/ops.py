"""For operators, outside the OpenAPI document: ``/metrics`` (the Prometheus text exposition
format, HELP/TYPE lines, histograms: :mod:`fiat.api.telemetry`), ``/healthz``, ``/``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fiat import __version__
from fiat.api.context import ApiContext


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth, telemetry = ctx.authority, ctx.telemetry
    registry = telemetry.registry

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        telemetry.flush()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        active = auth.policy
        return {
            "status": "ok",
            "time": time.time(),
            "logSize": auth.log.checkpoint().size,
            "policyVersion": None if active is None else active.version,
        }


def install_index(app: FastAPI, ctx: ApiContext) -> None:
    """``/``: where things are (after every other route, as it always was)."""
    auth = ctx.authority

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        # A browser (it asks for HTML) is sent to the web pages; a script gets the plain-text summary.
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/ui/", status_code=303)
        return PlainTextResponse(
            f"Fiat {__version__}\nweb: /ui/\nAPI: /docs\nlog: /log/checkpoint\n"
            f"verifier key: {auth.log.verifier.encode()}\n"
        )
