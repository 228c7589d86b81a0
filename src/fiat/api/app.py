"""``fiat serve``: the authority's HTTP JSON API and the transparency log, in one server.

* ``POST /v1/authorize`` — a decision (and a permit); the caller proves the runtime key
  with an RFC 9449 DPoP proof.
* ``POST /v1/authorize/permissible`` — which (action, resource) pairs a principal could ever
  be permitted (context unknown); the same DPoP proof of the runtime key.
* ``GET /v1/approvals/{id}``, ``POST /v1/approvals/{id}`` — read / decide an approval
  (the decision is an approval statement signed by an approver key).
* ``POST /v1/permits/{jti}/consume`` — use a single-use permit (DPoP by its ``cnf`` key).
* ``POST /v1/receipts``, ``GET /v1/bundles/{jti}`` — execution receipts and evidence bundles.
* ``POST /v1/revocations``, ``POST /v1/enrollments``, ``POST /v1/policies`` — admin (bearer).
* ``GET /v1/trust/state``, ``GET /v1/trust/stream`` (server-sent events) — the signed trust state.
* ``GET /v1/activity``, ``GET /v1/events/stream`` (server-sent events) — the log decoded, live;
  ``GET /v1/policies[/{version}|/diff]``, ``GET /v1/keys``, ``GET /v1/trust/root`` — public reads.
* ``GET /metrics`` (Prometheus exposition, :mod:`fiat.api.telemetry`), ``GET /healthz``,
  ``GET /v1/health`` (the health page's series), ``/log/...`` (C2SP tlog-tiles),
  ``/docs`` and ``/redoc`` (served offline), ``/ui/`` (the five web surfaces, :mod:`fiat.api.routes.ui`).
* ``/v1/demo/...`` — the demo page's scenarios and runs (:mod:`fiat.api.routes.demo`).

On SIGTERM/SIGINT the server drains (:mod:`fiat.serving`): no new permits, receipts
still accepted, ``event: going-away`` on every trust stream, then it exits.

Errors are RFC 9457 problem details (``application/problem+json``), their status chosen
by the exception's type (:mod:`fiat.api.problems`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio.to_thread
from fastapi import FastAPI

from fiat import __version__
from fiat.api.broadcaster import TrustBroadcaster
from fiat.api.context import ApiContext
from fiat.api.credentials import Credentials, read_admin_token
from fiat.api.docs import install_docs
from fiat.api.events import EventHub
from fiat.api.limits import BodyLimit
from fiat.api.problems import install_handlers
from fiat.api.routes import (
    activity,
    admin,
    approvals,
    authorize,
    demo,
    evidence,
    health,
    lineage,
    ops,
    permits,
    policy_read,
    trust,
    trust_root,
    ui,
)
from fiat.api.routes.log import log_routes
from fiat.api.telemetry import Telemetry
from fiat.authorize.authority import Authority
from fiat.config import Config
from fiat.demo_runs import DemoRunner
from fiat.serving import Drain
from fiat.wiring import open_authority, open_witnessing

#: Decisions wait on the log's group commit: more concurrent requests make bigger batches.
WORKER_THREADS = 128


def create_app(
    cfg: Config,
    *,
    trust_interval: float = 1.0,
    authority: Authority | None = None,
    public_url: str | None = None,
    drain: Drain | None = None,
) -> FastAPI:
    """The application; ``public_url``: the URL DPoP proofs must name (default :attr:`Config.public_url`);
    ``drain``: the shutdown drain :func:`fiat.serving.run_server` drives (default: a new one of
    ``server.drain_s``, at ``app.state.drain``)."""
    token = read_admin_token(cfg.keys_dir)  # a missing, empty or weak token stops the server here
    auth = authority or open_authority(cfg)
    metrics: Counter[str] = Counter()
    credentials = Credentials(
        token, auth.is_enrolled, metrics, auth.role_of, replay=auth.store, public_url=public_url or cfg.public_url
    )
    broadcaster = TrustBroadcaster(auth, trust_interval)
    events = EventHub()
    # The log's witnesses (keyring witness keys with a URL): cosigned checkpoints for /log/checkpoint,
    # trust states and bundles (fiat.prove.witnessing); started with the server.
    witnesses = open_witnessing(
        cfg, auth.log, lambda cp: events.publish("witnessed", {"size": cp.size, "checkpoint": cp.note_bytes.decode()})
    )
    if witnesses is not None:
        auth.recorder.witnesses = witnesses
        auth.recorder.witness_timeout = cfg.log.witness_timeout_ms / 1000
    telemetry = Telemetry(
        metrics,
        log_size=lambda: auth.log.checkpoint().size,
        epoch=lambda: broadcaster.epoch,
        subscribers=broadcaster.subscriber_count,
        witnesses=witnesses,
    )
    ctx = ApiContext(
        authority=auth,
        broadcaster=broadcaster,
        credentials=credentials,
        metrics=metrics,
        drain=drain if drain is not None else Drain(cfg.server.drain_s),
        telemetry=telemetry,
        events=events,
        witnesses=witnesses,
    )
    # The demo page's runs: real `fiat run` processes against this server (fiat.api.routes.demo).
    runner = DemoRunner(cfg.home, public_url or cfg.public_url, lambda event: ctx.events.publish("run", event))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        ctx.events.bind(asyncio.get_running_loop())
        task = asyncio.create_task(ctx.broadcaster.run())
        demo_stopper = asyncio.create_task(demo.stop_on_drain(ctx.drain, runner))
        loop, appended = asyncio.get_running_loop(), asyncio.Event()

        def integrated(latencies: list[float]) -> None:  # on the log's sequencer thread, once a batch
            telemetry.observe_integration(latencies)
            with suppress(RuntimeError):  # the loop closed: nobody watches any more
                loop.call_soon_threadsafe(appended.set)

        # /v1/events/stream's live entries, read as soon as a batch is integrated
        watcher = asyncio.create_task(activity.watch_log(ctx, wake=appended))
        auth.log.on_integrated = integrated
        stop = threading.Event()
        sampler = threading.Thread(target=telemetry.run_sampler, args=(stop,), name="fiat-telemetry", daemon=True)
        sampler.start()
        if witnesses is not None:
            witnesses.start()
        try:
            yield
        finally:
            if witnesses is not None:
                await asyncio.to_thread(witnesses.close)
            task.cancel()
            demo_stopper.cancel()
            watcher.cancel()
            stop.set()
            auth.log.on_integrated = None
            await asyncio.to_thread(runner.stop)  # no demo run outlives the server
            await asyncio.to_thread(auth.close)

    app = FastAPI(
        title="Fiat authority",
        version=__version__,
        description="Authorize before anything runs; every decision is signed evidence in the transparency log.",
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,  # install_docs serves both pages without a CDN
        redoc_url=None,
    )
    app.state.authority = auth
    app.state.broadcaster = ctx.broadcaster
    app.state.metrics = metrics
    app.state.drain = ctx.drain
    app.state.events = ctx.events
    app.state.demo_runner = runner
    app.state.telemetry = telemetry
    install_handlers(app, metrics)
    install_docs(app)
    for area in (
        authorize,
        approvals,
        permits,
        evidence,
        lineage,
        admin,
        policy_read,
        trust,
        trust_root,
        activity,
        ops,
        health,
        ui,
    ):
        area.install(app, ctx)
    app.router.routes.extend(log_routes(auth.log))
    demo.install(app, ctx, runner, demo_controls=cfg.ui.demo_controls)
    ops.install_index(app, ctx)
    app.add_middleware(BodyLimit)
    return app
