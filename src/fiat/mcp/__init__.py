"""The MCP gateway (``fiat mcp``): a governing proxy between an agent and MCP servers (docs/mcp.md).

A runtime layer beside :mod:`fiat.enforce` (whose guard it reuses): it imports ``enforce``,
``api.client`` and ``formats``; nothing below it imports it. Modules:

* :mod:`fiat.mcp.gateway` — the governing core (:class:`Gateway`): upstream registry,
  namespacing (``<server>___<tool>``), the listing filter, per-call governance, the stdio face;
* :mod:`fiat.mcp.upstream` — upstream servers: stdio under containment, streamable HTTP;
* :mod:`fiat.mcp.identity` — bearer-token verification for the HTTP face (OAuth 2.1 resource server);
* :mod:`fiat.mcp.settings` — the gateway's configuration file.

The HTTP face's ASGI app is :mod:`fiat.api.mcp` (HTTP serving lives in ``fiat.api``).
"""

from fiat.mcp.gateway import CallOutcome, Gateway, result_digest, result_view, serve_stdio, server_resource
from fiat.mcp.settings import GatewayConfig, ServerSettings, ToolSettings

__all__ = [
    "CallOutcome",
    "Gateway",
    "GatewayConfig",
    "ServerSettings",
    "ToolSettings",
    "result_digest",
    "result_view",
    "serve_stdio",
    "server_resource",
]
