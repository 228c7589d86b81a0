"""The MCP servers of ``fiat bench mcp``, on the official SDK's low-level server (``mcp.server.lowlevel``).

* **echo** (the upstream): one tool, ``echo``, whose result is its arguments as one JSON text
  block (a small payload). Nothing else happens in it, so a call's latency is the SDK's and
  the transport's.
* **hop** (``--forward``): a pass-through proxy with no governance — it answers ``tools/list``
  and ``tools/call`` by forwarding them to an upstream through the SDK's own client
  (``mcp.Client``, ``mode="auto"`` as the gateway's upstream client), and returns what it
  answers. It is the floor's hop: the latency one more SDK server + client pair adds.

Either serves stdio (default; newline-delimited JSON-RPC on stdin/stdout, MCP 2025-11-25,
Transports, "stdio") or streamable HTTP (``--http PORT``: uvicorn on 127.0.0.1, endpoint ``/mcp``;
port 0 picks a free one; ``port=N`` is written to stderr once it listens). Both protocol
revisions the SDK serves are answered (the 2025-11-25 ``initialize`` handshake, the stateless
2026-07-28 revision).

    python -m fiat.bench.mcp_upstream                                 # echo, stdio
    python -m fiat.bench.mcp_upstream --http 0                        # echo, HTTP
    python -m fiat.bench.mcp_upstream --forward http://127.0.0.1:9100/mcp --http 0
    python -m fiat.bench.mcp_upstream --forward -- python -m fiat.bench.mcp_upstream
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import METHOD_NOT_FOUND

#: The benchmark's one tool.
ECHO = types.Tool(
    name="echo",
    description="Return the arguments, as one JSON text block.",
    input_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["text"],
        "additionalProperties": False,
    },
)


def echo_server() -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[ECHO])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != ECHO.name:
            raise MCPError(METHOD_NOT_FOUND, f"no tool {params.name!r}")
        text = json.dumps(params.arguments or {}, sort_keys=True, separators=(",", ":"))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    return Server("fiat-bench-echo", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)


def hop_server(upstream: Client) -> Server[Any]:
    """A pass-through: ``tools/list`` and ``tools/call`` forwarded to ``upstream``, nothing else done."""

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return await upstream.list_tools()

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        got = await upstream.call_tool(params.name, params.arguments)
        return types.CallToolResult(
            content=got.content, structured_content=got.structured_content, is_error=got.is_error
        )

    return Server("fiat-bench-hop", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)


def child_env() -> dict[str, str]:
    """What a stdio server started here needs beyond the SDK's default environment: this Fiat's
    import path (the SDK starts servers with a minimal environment, ``get_default_environment``)."""
    here = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": here + (os.pathsep + rest if rest else "")}


def stdio_params(argv: list[str]) -> StdioServerParameters:
    return StdioServerParameters(command=argv[0], args=argv[1:], env=child_env())


def upstream_client(target: list[str]) -> Client:
    """The SDK client of an upstream: a URL (streamable HTTP) or a command (stdio)."""
    if len(target) == 1 and target[0].startswith(("http://", "https://")):
        return Client(target[0])
    return Client(stdio_params(target))


async def _serve_stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def _serve_http(server: Server[Any], port: int) -> None:
    import uvicorn

    if port == 0:
        with socket.socket() as probe:  # uvicorn binds it itself: see the note on sockets below
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    # Bound by uvicorn, not handed a pre-bound socket: measured on the benchmark's machine, the
    # SDK's streamable-HTTP app served on a pre-bound socket answered each call about 40 ms later.
    config = uvicorn.Config(
        server.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    http = uvicorn.Server(config)
    startup = http.startup

    async def announce(sockets: Any = None) -> None:
        await startup(sockets)
        if http.started:  # listening: only now may a client be told where
            print(f"port={port}", file=sys.stderr, flush=True)

    http.startup = announce  # type: ignore[method-assign]
    await http.serve()


async def _main(http: int | None, forward: list[str] | None) -> None:
    async def serve(server: Server[Any]) -> None:
        if http is None:
            await _serve_stdio(server)
        else:
            await _serve_http(server, http)

    if not forward:
        await serve(echo_server())
        return
    async with upstream_client(forward) as upstream:
        await serve(hop_server(upstream))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    forward: list[str] | None = None
    if "--forward" in argv:  # everything after it is the upstream (a URL, or -- COMMAND ...)
        at = argv.index("--forward")
        argv, forward = argv[:at], argv[at + 1 :]
        if forward[:1] == ["--"]:
            forward = forward[1:]
    parser = argparse.ArgumentParser(
        prog="python -m fiat.bench.mcp_upstream",
        description=(__doc__ or "").splitlines()[0],
        epilog="--forward UPSTREAM (last): be the pass-through hop to UPSTREAM, a URL or -- COMMAND...",
    )
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT (0: any)")
    args = parser.parse_args(argv)
    if forward is not None and not forward:
        parser.error("--forward needs an upstream: a URL, or -- COMMAND...")
    anyio.run(_main, args.http, forward)


if __name__ == "__main__":
    main()
