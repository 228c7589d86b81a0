"""``fiat witness serve``'s HTTP application: C2SP tlog-witness (https://c2sp.org/tlog-witness).

Routes (one prefix serves as both the submission and the monitoring prefix, which the spec
allows: "A witness MAY use the same value for both"):

* ``POST /add-checkpoint`` — tlog-witness §add-checkpoint, answered by
  :meth:`fiat.witness.core.Witness.add_checkpoint`:

  ======  ==================================================================================
  200     the cosignature lines (``— <name> <base64>``), ``text/plain; charset=utf-8``
  400     a malformed body (old size line, proof lines, empty line, signed checkpoint), or an
          old size larger than the checkpoint's size
  403     no valid signature from a key the witness trusts for the origin, or a trusted key's
          signature line that does not verify
  404     an origin this witness does not cosign
  409     the old size is not the latest cosigned size; the body is that size and a newline,
          ``Content-Type: text/x.tlog.size``
  413     a body larger than 1 MiB (:data:`fiat.tlog.witness.MAX_REQUEST_SIZE`)
  422     a size-0 checkpoint without the empty tree's root, a non-empty proof from old size 0,
          the same size with another root, or a consistency proof that does not verify
  ======  ==================================================================================

  Every error body is one plain-text line saying what was wrong.
* ``GET /<origin hash>/checkpoint`` — tlog-witness §Monitor Retrieval Mechanism: the latest
  cosigned checkpoint (the log signature(s) the witness verified and its own cosignatures);
  404 if it never cosigned one for that log. ``<origin hash>`` is SHA-256 of the origin, lowercase hex.
* ``GET /`` — a JSON summary: the witness's name and vkeys, each log's latest cosigned size.

Connections are kept alive (HTTP/1.1 persistent connections, which the spec asks witnesses to
support); every request is answered with a ``Content-Length``.
"""

from __future__ import annotations

import logging
import re

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fiat.tlog.witness import MAX_REQUEST_SIZE
from fiat.witness.core import Witness

_HASH = re.compile(r"[0-9a-f]{64}")
NO_STORE = {"Cache-Control": "no-store"}
log = logging.getLogger("fiat.witness")


def _text(status: int, message: str) -> Response:
    return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status, headers=NO_STORE)


def create_witness_app(witness: Witness) -> Starlette:
    async def add_checkpoint(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_SIZE:
                return _text(413, f"the request body is larger than {MAX_REQUEST_SIZE} bytes")
        outcome = await run_in_threadpool(witness.add_checkpoint, bytes(body))
        if outcome.status in (403, 422):  # a log key's misuse or a possible fork: worth an operator's look
            log.warning("add-checkpoint %d for %s: %s", outcome.status, outcome.origin, outcome.body.decode().strip())
        else:
            log.info("add-checkpoint %d for %s", outcome.status, outcome.origin)
        # The media type exactly as given (Starlette would append "; charset=utf-8" to a text/* one,
        # and the 409 body's type is exactly text/x.tlog.size).
        return Response(outcome.body, outcome.status, headers={**NO_STORE, "Content-Type": outcome.content_type})

    def checkpoint(request: Request) -> Response:
        origin_hash = request.path_params["origin_hash"]
        if not _HASH.fullmatch(origin_hash):
            return _text(404, "not an origin hash: expected SHA-256 of the log's origin, 64 lowercase hex digits")
        cosigned = witness.checkpoint_by_hash(origin_hash)
        if cosigned is None:
            return _text(404, "this witness has never cosigned a checkpoint of that log")
        return Response(
            cosigned.note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache, max-age=0"}
        )

    def index(_: Request) -> Response:
        return JSONResponse(witness.summary(), headers=NO_STORE)

    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/{origin_hash}/checkpoint", checkpoint, methods=["GET"]),
        ]
    )
    app.router.redirect_slashes = False
    return app
