"""``GET /v1/trust/root`` and ``GET /v1/keys``: the trust root to pin, and the keys by role (public).

* ``GET /v1/trust/root`` — exactly the bytes ``fiat trust-root export`` writes for this home
  (``application/json``; the keys of ``<home>/keys/keyring.json`` as it is now), with the header
  ``Fiat-Trust-Root-Fingerprint: sha256:<hex>`` (SHA-256 of those bytes) so a person can compare
  the file they pin with the fingerprint shown elsewhere (the console, another channel);
* ``GET /v1/keys`` — ``{"keys": [...], "fingerprint": "sha256:<hex>", "now": T}``: every key of
  that trust root (kid, role, name, validFrom, validUntil, groups, identity) plus ``active``
  (valid now).

A trust root fetched over the network is only as good as the channel: verifiers pin a copy
they got out of band and compare fingerprints (docs/formats.md, "Trust root").
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from fiat.api.context import ApiContext
from fiat.home import trust_root
from fiat.verify.trust_root import TrustRoot

FINGERPRINT_HEADER = "Fiat-Trust-Root-Fingerprint"


def trust_root_bytes(root: TrustRoot) -> bytes:
    """What ``fiat trust-root export`` writes to stdout (no witness quorum), as UTF-8 bytes."""
    return (json.dumps(root.to_json(), indent=2) + "\n").encode("utf-8")


def fingerprint(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def install(app: FastAPI, ctx: ApiContext) -> None:
    @app.get(
        "/v1/trust/root",
        tags=["trust"],
        response_class=Response,
        responses={200: {"content": {"application/json": {}}, "description": "trust-root.json, as exported"}},
    )
    def root() -> Response:
        data = trust_root_bytes(trust_root(ctx.authority.cfg))
        return Response(
            data,
            media_type="application/json",
            headers={
                FINGERPRINT_HEADER: fingerprint(data),
                "Content-Disposition": 'attachment; filename="trust-root.json"',
                "Cache-Control": "no-store",
            },
        )

    @app.get("/v1/keys", tags=["trust"])
    def keys() -> dict[str, Any]:
        root = trust_root(ctx.authority.cfg)
        data = trust_root_bytes(root)
        now = time.time()
        listed = [{**k.to_json(), "active": k.valid_at(now)} for k in root.keys]
        return {"keys": listed, "fingerprint": fingerprint(data), "now": now}
