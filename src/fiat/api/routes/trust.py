"""``GET /v1/trust/state`` and ``GET /v1/trust/stream`` (server-sent events): the signed trust state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from fiat.api.context import ApiContext
from fiat.api.problems import Problem

KEEP_ALIVE_S = 15


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth, broadcaster = ctx.authority, ctx.broadcaster

    @app.get("/v1/trust/state", tags=["trust"])
    def trust_state(since: int = 0) -> dict[str, Any]:
        if not 0 <= since < 2**63:
            raise Problem(400, "Bad Request", "since must be a revocation epoch (0 ≤ since < 2^63)")
        return {"state": auth.trust_state(since, broadcaster.epoch)}

    @app.get("/v1/trust/stream", tags=["trust"])
    async def trust_stream(request: Request) -> StreamingResponse:
        q = broadcaster.subscribe()

        async def events() -> AsyncIterator[bytes]:
            try:
                while not await request.is_disconnected():
                    try:
                        state = await asyncio.wait_for(q.get(), timeout=KEEP_ALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    yield f"event: trust-state\ndata: {state}\n\n".encode()
            finally:
                broadcaster.unsubscribe(q)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
