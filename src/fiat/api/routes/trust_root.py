"""``GET /v1/trust/root``: this server's trust root, exactly as ``fiat trust-root export`` writes it.

Public: a trust root holds public keys only (docs/formats.md, "Trust root"). A relying party
fetches it once and pins it; the ``Fiat-Trust-Root-Fingerprint`` header is
``sha256:<hex>`` of the body's bytes, the fingerprint to compare out of band (the proof
viewer, ``/ui/verify``, shows the same one for what it pinned). Read from the home's keys on
each request, so a rotation (``fiat keys rotate``) shows at once.
"""

from __future__ import annotations

import hashlib
import json

from fastapi import FastAPI
from fastapi.responses import Response

from fiat.api.context import ApiContext
from fiat.home import trust_root

FINGERPRINT_HEADER = "Fiat-Trust-Root-Fingerprint"


def export_bytes(root_json: dict[str, object]) -> bytes:
    """The bytes ``fiat trust-root export`` writes (:func:`fiat.cli.keys.trust_root_export`)."""
    return (json.dumps(root_json, indent=2) + "\n").encode("utf-8")


def install(app: FastAPI, ctx: ApiContext) -> None:
    cfg = ctx.authority.cfg

    @app.get(
        "/v1/trust/root",
        tags=["trust"],
        response_class=Response,
        responses={200: {"description": "The trust root (application/json)", "content": {"application/json": {}}}},
    )
    def trust_root_document() -> Response:
        body = export_bytes(trust_root(cfg).to_json())
        return Response(
            body,
            media_type="application/json",
            headers={FINGERPRINT_HEADER: "sha256:" + hashlib.sha256(body).hexdigest(), "Cache-Control": "no-store"},
        )
