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
from fiat.prove.witnessing import WitnessCollector
from fiat.tlog import cosignature, note

MAX_WINDOW_S = int(INTERVAL_S * KEEP)


def witness_status(
    checkpoint_note: bytes,
    log_origin: str,
    log_key_id: int,
    collector: WitnessCollector | None = None,
) -> dict[str, Any]:
    """Who cosigned the checkpoint ``/log/checkpoint`` serves (c2sp.org/tlog-cosignature) and how
    each configured witness is doing.

    Without witnesses configured: the signature lines that are not the log's own, unverified. With a
    collector: each cosignature line verified against that witness's key from the keyring
    (``verified``; a line of an unknown key is listed unverified), and every witness's last size,
    last success and last error."""
    try:
        parsed = note.parse(checkpoint_note)
    except (FiatError, ValueError):
        return {"configured": False, "cosigners": [], "note": "the latest checkpoint could not be read"}
    lines = [s for s in parsed.signatures if not (s.name == log_origin and s.key_id == log_key_id)]
    if collector is None:
        if not lines:
            return {"configured": False, "cosigners": [], "note": "no witnesses configured"}
        cosigners = [{"name": s.name, "keyId": f"{s.key_id:08x}"} for s in lines]
        return {
            "configured": True,
            "cosigners": cosigners,
            "note": f"{len(cosigners)} cosignature(s) on the latest checkpoint",
        }
    keys = [(w.name, w.public_key) for w in collector.witnesses]
    valid = dict(cosignature.verified_cosigners(parsed, keys))
    listed = [
        {"name": s.name, "keyId": f"{s.key_id:08x}", "verified": s.name in valid, "time": valid.get(s.name)}
        for s in lines
    ]
    count = sum(1 for c in listed if c["verified"])
    return {
        "configured": True,
        "quorum": collector.quorum,
        "cosigners": listed,
        "witnesses": [s.to_json() for s in collector.statuses()],
        "witnessedSize": None if (latest := collector.latest()) is None else latest.size,
        "quorumTime": collector.quorum_time(),
        "note": f"{count} of {len(keys)} witnesses cosigned the served checkpoint (quorum {collector.quorum})",
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
        served = auth.log.served_checkpoint()
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
            "witnesses": witness_status(served.note_bytes, auth.log.origin, auth.log.verifier.key_id, ctx.witnesses),
            "spoolBacklog": sum(s.spool or 0 for s in streams),
        }
