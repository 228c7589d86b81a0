"""``GET /v1/trust/state`` and ``GET /v1/trust/stream`` (server-sent events): the signed trust state.

``GET /v1/trust/state?since=N`` answers one signed trust state: a complete one for ``since=0``
(the default: every live revocation up to its ``revocationEpoch``), else a delta listing
only the revocations after epoch N (``revocationsSince`` N). A guard folds a delta only
from an epoch it has fully seen (docs/formats.md, "Trust state"; :mod:`fiat.enforce.trust`).

The stream's events (WHATWG HTML §9.2 server-sent events):

* ``event: trust-state`` — ``data:`` one signed, complete trust state (JWS), every interval
  and at once on a revocation; a new subscriber gets the latest one first;
* ``event: going-away`` — ``data: {"drainS": N, "reason": "shutdown"}``: the server has
  begun its shutdown drain (:mod:`fiat.serving`) and will end the stream within ``N`` s;
  trust states keep coming until then. Unsigned, so a guard may only reconnect sooner for
  it, never trust longer (:mod:`fiat.enforce.trust`);
* ``: keep-alive`` comments while nothing else is said.

While the server drains, a new stream is refused (503, ``Retry-After``).

A guard may name itself: ``?runtime=<kid of its runtime key>&spool=<receipts spooled>``. Both are
self-reported and unauthenticated: shown on the health page and in ``/metrics`` (the stream's
trust-state freshness, :mod:`fiat.api.telemetry`), never used for a decision. Unnamed: "anonymous".
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from fiat.api.context import ApiContext
from fiat.api.problems import Problem, problem_responses, refuse_while_draining

KEEP_ALIVE_S = 15
#: The stream's 200 in the OpenAPI document: server-sent events, not JSON.
SSE_RESPONSE = {
    "description": "Server-sent events: trust-state (a signed trust state, JWS), going-away, keep-alive comments",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth, broadcaster, drain, telemetry = ctx.authority, ctx.broadcaster, ctx.drain, ctx.telemetry

    @app.get("/v1/trust/state", tags=["trust"], responses=problem_responses(400))
    def trust_state(since: int = 0) -> dict[str, Any]:
        if not 0 <= since < 2**63:
            raise Problem(400, "Bad Request", "since must be a revocation epoch (0 ≤ since < 2^63)")
        return {"state": auth.trust_state(since, broadcaster.epoch)}

    @app.get(
        "/v1/trust/stream",
        tags=["trust"],
        response_class=StreamingResponse,
        responses={200: SSE_RESPONSE, **problem_responses(503)},
    )
    async def trust_stream(request: Request) -> StreamingResponse:
        refuse_while_draining(drain, "no new trust streams are opened")
        # Read, not declared: a label never refuses a guard its trust stream (an odd one shows as
        # "invalid"), so there is nothing here to validate or to fail with 400.
        runtime, spool = request.query_params.get("runtime"), request.query_params.get("spool")
        backlog = int(spool) if spool is not None and re.fullmatch(r"[0-9]{1,9}", spool) else None

        async def events() -> AsyncIterator[bytes]:
            q = broadcaster.subscribe()
            drain.streams += 1
            sid = telemetry.stream_opened(runtime, backlog)
            told = False
            try:
                while not await request.is_disconnected():
                    if drain.going_away.is_set() and not told:  # said once, before the stream ends
                        told = True
                        body = json.dumps({"drainS": drain.seconds, "reason": "shutdown"})
                        yield f"event: going-away\ndata: {body}\n\n".encode()
                    if drain.closing.is_set():
                        return
                    state = await _next(q, drain.closing if told else drain.going_away)
                    if state is None:
                        yield b": keep-alive\n\n"
                    elif state:
                        yield f"event: trust-state\ndata: {state}\n\n".encode()
                        telemetry.stream_delivered(sid)
            finally:
                telemetry.stream_closed(sid)
                drain.streams -= 1
                broadcaster.unsubscribe(q)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )


async def _next(q: asyncio.Queue[str], interrupt: asyncio.Event) -> str | None:
    """The next trust state; "" once ``interrupt`` is set; None after :data:`KEEP_ALIVE_S` of neither."""
    getter = asyncio.ensure_future(q.get())
    waiter = asyncio.ensure_future(interrupt.wait())
    try:
        done, _ = await asyncio.wait({getter, waiter}, timeout=KEEP_ALIVE_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    return "" if waiter in done else None
