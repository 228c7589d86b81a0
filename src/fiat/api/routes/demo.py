"""The runtime governance demo's controls (``/ui/demo``): launch a scenario, revoke a run, watch it.

* ``GET /v1/demo/scenarios`` — the scenarios the page may launch, and which controls apply
  (``controls``: ``demo-home`` or ``admin-token``);
* ``POST /v1/demo/runs`` ``{"scenario": NAME}`` — start it as a real ``fiat run`` process
  (:class:`fiat.demo_runs.DemoRunner`); 201 ``{"runId": …}``; 429 when
  :data:`~fiat.demo_runs.MAX_RUNNING` runs are going;
* ``POST /v1/demo/runs/{runId}/revoke`` — revoke that run's permit through the authority: a
  real revocation, in the log and pushed on the trust stream at once, as ``POST
  /v1/revocations`` does; only for a run this server's runner launched;
* ``GET /v1/demo/runs`` — the recent runs, each with its events;
* ``GET /v1/demo/stream`` — server-sent events: every stored event of the recent runs, then each
  new one, as ``event: run`` (``data``: the event, see :mod:`fiat.demo_runs`); ``event:
  keep-alive`` every :data:`KEEP_ALIVE_S`; ``event: overflow`` when this page fell behind (it
  re-reads ``GET /v1/demo/runs``); ``event: going-away`` and the end of the stream when the
  server begins its shutdown drain (:mod:`fiat.serving`), and 503 for a new stream while it drains.

Who may launch and revoke: the admin bearer token; or, with no ``Authorization`` header at
all, anyone reaching a server whose home sets ``[ui] demo_controls = true`` (``fiat demo``
sets it for its own home). Without an admin credential a request must come from this
server's own pages: a browser's ``Origin`` (or ``Sec-Fetch-Site: cross-site``) naming another
site is refused (403), and so is a ``Host`` that is neither the public URL's
(``server.public_url``) nor the loopback's on its port (DNS rebinding), so no other web page
can drive the controls through a visitor's browser. Reading (scenarios, runs, the stream)
needs nothing: what the runs say is in the public log too. While the server drains no run
starts (503), and every run still going is ended (:func:`stop_on_drain`): SIGTERM, so that
its guard halts it with a receipt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field

from fiat.api.context import ApiContext
from fiat.api.events import Event
from fiat.api.models import Strict
from fiat.api.problems import Problem, problem_responses, refuse_when_full, refuse_while_draining, refused
from fiat.demo_runs import MAX_RUNNING, DemoBusy, DemoClosed, DemoRunner
from fiat.errors import AuthorizationError, NotFoundError
from fiat.serving import Drain

KEEP_ALIVE_S = 10
#: The revocation's reason in the log.
REVOKE_REASON = "demo: revoked from the demo page"


class DemoRunBody(Strict):
    scenario: str = Field(min_length=1, max_length=64)


def install(app: FastAPI, ctx: ApiContext, runner: DemoRunner, *, demo_controls: bool) -> None:
    auth, drain = ctx.authority, ctx.drain
    mode = "demo-home" if demo_controls else "admin-token"
    # The names this server answers to as itself: its public URL's, and the loopback's on its port.
    public = urlsplit(runner.url)
    port = public.port or (443 if public.scheme == "https" else 80)
    own_hosts = {public.netloc.lower(), *(f"{name}:{port}" for name in ("localhost", "127.0.0.1", "[::1]"))}

    def control(request: Request) -> str:
        """The admin token, or (no ``Authorization`` header) a demo home and a same-origin caller."""
        if request.headers.get("authorization") or not demo_controls:
            if not request.headers.get("authorization"):
                raise ctx.credentials.refuse(
                    401,
                    "the demo's controls need the admin bearer token (<home>/keys/admin.token), or a demo home "
                    "([ui] demo_controls = true in fiat.toml, which `fiat demo` sets)",
                )
            ctx.credentials.require_admin(request)
            return "admin"
        origin = request.headers.get("origin")
        host = request.headers.get("host", "").lower()
        if host not in own_hosts:  # DNS rebinding: another site's name resolved to this server
            raise ctx.credentials.refuse(
                403, f"the demo's controls answer requests to {public.netloc} (or the loopback) only, not to {host!r}"
            )
        if (origin is not None and urlsplit(origin).netloc.lower() != host) or request.headers.get(
            "sec-fetch-site"
        ) == "cross-site":
            raise ctx.credentials.refuse(
                403, "the demo's controls answer this server's own pages only (the request came from another site)"
            )
        return "demo"

    @app.get("/v1/demo/scenarios", tags=["demo"])
    def scenarios() -> dict[str, Any]:
        return {
            "controls": mode,
            "maxRunning": MAX_RUNNING,
            "scenarios": [s.to_json() for s in runner.scenarios()],
        }

    @app.get("/v1/demo/runs", tags=["demo"])
    def runs() -> dict[str, Any]:
        return {"controls": mode, "running": runner.running, "runs": runner.runs()}

    @app.post(
        "/v1/demo/runs",
        tags=["demo"],
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 413, 429, 503),
    )
    def launch(body: DemoRunBody, request: Request) -> JSONResponse:
        control(request)
        refuse_while_draining(drain, "no demo run starts")
        try:
            run = runner.launch(body.scenario)
        except NotFoundError as exc:
            raise refused(exc) from exc
        except DemoBusy as exc:
            raise Problem(429, "Too Many Requests", str(exc), headers={"Retry-After": "5"}) from exc
        except DemoClosed as exc:
            raise Problem(503, "Service Unavailable", str(exc), headers={"Retry-After": "5"}) from exc
        return JSONResponse({"runId": run.id, "pid": run.proc.pid, "scenario": run.scenario.name}, status_code=201)

    @app.post(
        "/v1/demo/runs/{run_id}/revoke",
        tags=["demo"],
        responses=problem_responses(401, 403, 404, 409),
    )
    async def revoke(run_id: str, request: Request) -> dict[str, Any]:
        control(request)
        try:
            run = runner.get(run_id)
        except NotFoundError as exc:
            raise refused(exc) from exc
        if not run.running:
            raise Problem(409, "Conflict", f"the run {run_id} has ended ({run.outcome}): there is nothing to revoke")
        permit = run.first_permit  # its revocation covers every renewal of the execution
        if permit is None:
            raise Problem(409, "Conflict", f"the run {run_id} holds no permit yet: revoke it once it runs")
        try:
            epoch, index = await asyncio.to_thread(auth.revoke, "permit", permit, REVOKE_REASON)
        except AuthorizationError as exc:
            raise refused(exc) from exc
        await ctx.broadcaster.publish_now()  # pushed at once, as POST /v1/revocations does
        runner.note_revoked(run, permit, index, epoch)
        return {"runId": run_id, "permitId": permit, "revocationEpoch": epoch, "logIndex": index}

    @app.get("/v1/demo/stream", include_in_schema=False)
    async def stream(request: Request) -> StreamingResponse:
        refuse_while_draining(drain, "no new demo streams are opened")
        refuse_when_full(ctx.events)

        async def events() -> AsyncIterator[bytes]:
            q = ctx.events.subscribe()  # first, so that nothing said between the replay and now is lost
            try:
                for event in runner.replay():
                    yield _sse("run", event)
                while not await request.is_disconnected():
                    got = await _next(q, drain)
                    if drain.going_away.is_set():
                        yield _sse("going-away", {"drainS": drain.seconds, "reason": "shutdown"})
                        return
                    if got is None:
                        yield _sse("keep-alive", {})
                    elif got.name in ("run", "overflow"):
                        yield _sse(got.name, got.data)
            finally:
                ctx.events.unsubscribe(q)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _next(q: asyncio.Queue[Event], drain: Drain) -> Event | None:
    """The next event; None after :data:`KEEP_ALIVE_S` of silence or once the drain begins."""
    getter = asyncio.ensure_future(q.get())
    waiter = asyncio.ensure_future(drain.going_away.wait())
    try:
        done, _ = await asyncio.wait({getter, waiter}, timeout=KEEP_ALIVE_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not getter.done():
            getter.cancel()
    return getter.result() if getter in done else None


async def stop_on_drain(drain: Drain, runner: DemoRunner) -> None:
    """Once the shutdown drain begins, end every demo run (their guards deliver their receipts
    while the drain still accepts them)."""
    await drain.going_away.wait()
    await asyncio.to_thread(runner.stop)
