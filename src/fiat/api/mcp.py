"""The MCP gateway's HTTP face: streamable HTTP (MCP 2025-11-25 "Transports") for hosted agents.

:func:`create_app` wraps the gateway's low-level SDK server (:meth:`fiat.mcp.Gateway.server`)
in the SDK's streamable-HTTP session manager, which serves both revisions: sessions opened
by the ``initialize`` handshake (2025-11-25, ``Mcp-Session-Id``) and the stateless 2026-07-28
requests (``MCP-Protocol-Version`` header, per-request ``_meta``). With a token verifier it is
an OAuth 2.1 resource server (MCP "Authorization"):

* ``GET /.well-known/oauth-protected-resource<path>``: its protected resource metadata
  (RFC 9728 §3: ``resource`` = the gateway's URL, ``authorization_servers`` = the issuer);
* a request to the endpoint without a valid bearer token: ``401`` with
  ``WWW-Authenticate: Bearer error="invalid_token", ..., resource_metadata="<that URL>"``
  (RFC 9728 §5.1, RFC 6750 §3); a token lacking a required scope: ``403 insufficient_scope``.

This module imports nothing of :mod:`fiat.mcp` (the caller hands it the server and the
verifier), so ``fiat.api`` stays below the gateway in the import graph.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette


def create_app(
    server: Server[Any],
    *,
    path: str,
    host: str,
    resource_url: str,
    issuer: str | None = None,
    token_verifier: TokenVerifier | None = None,
    required_scopes: list[str] | None = None,
    allowed_hosts: list[str] | None = None,
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> Starlette:
    """The ASGI app. ``on_start``/``on_stop`` run in its lifespan (the gateway's upstreams live there)."""
    auth = None
    if token_verifier is not None:
        assert issuer is not None, "a token verifier needs its issuer (the authorization server)"
        auth = AuthSettings(
            issuer_url=issuer,  # type: ignore[arg-type]  # pydantic parses the URL
            resource_server_url=resource_url,  # type: ignore[arg-type]
            required_scopes=required_scopes or None,
            validate_token_resource=True,
        )
    security = None
    if allowed_hosts:
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=allowed_hosts,
            allowed_origins=[f"http://{h}" for h in allowed_hosts] + [f"https://{h}" for h in allowed_hosts],
        )
    app = server.streamable_http_app(
        streamable_http_path=path,
        host=host,
        auth=auth,
        token_verifier=token_verifier,
        transport_security=security,
    )
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[None]:
        if on_start is not None:
            await on_start()
        try:
            async with inner(a):
                yield
        finally:
            if on_stop is not None:
                await on_stop()

    app.router.lifespan_context = lifespan
    return app


def serve(app: Starlette, host: str, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` with uvicorn until SIGTERM/SIGINT; ``on_ready(url)`` once it listens."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)

    async def started() -> None:
        await server.serve()

    if on_ready is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets)
            if server.started:
                bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
                on_ready(f"http://{host}:{bound}")

        server.startup = startup  # type: ignore[method-assign]
    import asyncio

    asyncio.run(started())
