"""The log's read API, per C2SP tlog-tiles: routes that ``fiat serve`` mounts, and
``fiat log serve``'s whole application (:func:`create_log_app`).

Routes (all ``GET``, under ``/log``):

* ``/log/checkpoint`` — ``text/plain; charset=utf-8``, not cacheable beyond a few seconds. When
  witnesses cosign the log (:mod:`fiat.prove.witnessing`), the newest quorum-cosigned checkpoint.
* ``/log/tile/<L>/<N>[.p/<W>]`` — ``application/octet-stream``, hash tiles.
* ``/log/tile/entries/<N>[.p/<W>]`` — ``application/octet-stream``, entry bundles,
  gzip-compressed when the client accepts it.

Everything is static in nature: a resource either exists for the current tree
(and then never changes) or is ``404``. Full tiles are served as immutable.
"""

from __future__ import annotations

import gzip

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from fiat.errors import MalformedError
from fiat.prove.log import TransparencyLog
from fiat.tlog.tiles import TILE_WIDTH, encode_bundle, parse_path, tile_width_at

OCTET = "application/octet-stream"
CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
#: Partial tiles never change either, but the log may delete one once its full tile exists.
CACHE_PARTIAL = "public, max-age=60"
CACHE_CHECKPOINT = "no-cache, max-age=0"


def _not_found(message: str) -> PlainTextResponse:
    return PlainTextResponse(message + "\n", status_code=404, headers={"Cache-Control": "no-store"})


def _accepts_gzip(header: str) -> bool:
    """RFC 9110 §12.5.3: gzip is acceptable unless its qvalue is 0."""
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def log_routes(log: TransparencyLog, prefix: str = "/log") -> list[Route]:
    def checkpoint(_: Request) -> Response:
        # With witnesses, the newest checkpoint their quorum cosigned (C2SP tlog-cosignature lines
        # after the log's signature; clients ignore the keys they do not know).
        cp = log.served_checkpoint()
        return Response(
            cp.note_bytes,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": CACHE_CHECKPOINT},
        )

    def tile(request: Request) -> Response:
        rel = "tile/" + request.path_params["rest"]
        try:
            t = parse_path(rel)
        except MalformedError as exc:
            return _not_found(f"{exc}; expected {prefix}/tile/<L>/<N>[.p/<W>] as in C2SP tlog-tiles")
        size = log.checkpoint().size
        level = 0 if t.is_entries else t.level
        available = tile_width_at(level, t.index, size)
        if available == 0 or t.width > available:
            return _not_found(f"{rel} is beyond the tree of size {size}")
        cache = CACHE_IMMUTABLE if t.is_full else CACHE_PARTIAL
        headers = {"Cache-Control": cache}
        if t.is_entries:
            start = t.index * TILE_WIDTH
            entries = log.read_entries(start, start + t.width)
            if len(entries) != t.width:
                return _not_found(f"{rel} is not available")
            body = encode_bundle(entries)
            headers["Vary"] = "Accept-Encoding"
            if _accepts_gzip(request.headers.get("accept-encoding", "")):
                body = gzip.compress(body, compresslevel=6, mtime=0)
                headers["Content-Encoding"] = "gzip"
            return Response(body, media_type=OCTET, headers=headers)
        try:
            body = log.read_tile(t.level, t.index, t.width)
        except KeyError:
            return _not_found(f"{rel} is not available")
        return Response(body, media_type=OCTET, headers=headers)

    return [
        Route(f"{prefix}/checkpoint", checkpoint, methods=["GET", "HEAD"]),
        Route(f"{prefix}/tile/{{rest:path}}", tile, methods=["GET", "HEAD"]),
    ]


def create_log_app(log: TransparencyLog) -> Starlette:
    def index(_: Request) -> Response:
        return PlainTextResponse(
            f"Fiat transparency log\norigin: {log.origin}\nverifier key: {log.verifier.encode()}\n"
            "checkpoint: /log/checkpoint\ntiles: /log/tile/<L>/<N>[.p/<W>]\nentries: /log/tile/entries/<N>[.p/<W>]\n"
        )

    app = Starlette(routes=[Route("/", index), *log_routes(log)])
    app.router.redirect_slashes = False
    return app
