"""``GET /v1/health?window=<seconds>``: what the health page (``/ui/health``) charts, read-only and public.

It holds nothing secret: counts, latencies, the log's size, the open trust streams with what their
runtimes *said* about themselves (self-reported, unauthenticated: a display, never a trust decision;
:mod:`fiat.api.telemetry`) and who cosigned the latest checkpoint (c2sp.org/tlog-cosignature).
Outside the OpenAPI document, like ``/metrics`` and ``/healthz`` (:mod:`fiat.api.routes.ops`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from fiat.api.context import ApiContext
from fiat.api.problems import Problem
from fiat.api.telemetry import INTERVAL_S, KEEP
from fiat.errors import FiatError
from fiat.tlog import note

MAX_WINDOW_S = int(INTERVAL_S * KEEP)


def witness_status(checkpoint_note: bytes, log_origin: str, log_key_id: int) -> dict[str, Any]:
    """The cosigners of the latest checkpoint: every signature line that is not the log's own
    (c2sp.org/tlog-cosignature; shown, not verified here — a verifier checks them against its trust root)."""
    try:
        parsed = note.parse(checkpoint_note)
    except (FiatError, ValueError):
        return {"configured": False, "cosigners": [], "note": "the latest checkpoint could not be read"}
    cosigners = [
        {"name": s.name, "keyId": f"{s.key_id:08x}"}
        for s in parsed.signatures
        if not (s.name == log_origin and s.key_id == log_key_id)
    ]
    if not cosigners:
        return {"configured": False, "cosigners": [], "note": "no witnesses configured"}
    return {
        "configured": True,
        "cosigners": cosigners,
        "note": f"{len(cosigners)} cosignature(s) on the latest checkpoint",
    }


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth, telemetry = ctx.authority, ctx.telemetry
    bound_s = auth.cfg.runtime.staleness_ms / 1000

    @app.get("/v1/health", include_in_schema=False)
    def health(window: int = 300) -> dict[str, Any]:
        if not 1 <= window <= MAX_WINDOW_S:
            raise Problem(400, "Bad Request", f"window is a number of seconds, 1 to {MAX_WINDOW_S}")
        now = telemetry.clock()
        cp = auth.log.checkpoint()
        streams = telemetry.streams()
        return {
            "now": now,
            "intervalS": INTERVAL_S,
            "windowS": window,
            "logSize": cp.size,
            "trustEpoch": ctx.broadcaster.epoch,
            "freshnessBoundS": bound_s,  # runtime.staleness_ms of this server's configuration
            "samples": telemetry.window(window),
            "runtimes": [s.to_json(now) for s in streams],
            "runtimesReported": "self-reported by each trust stream, unauthenticated: display only",
            "witnesses": witness_status(cp.note_bytes, auth.log.origin, auth.log.verifier.key_id),
            "spoolBacklog": sum(s.spool or 0 for s in streams),
        }
