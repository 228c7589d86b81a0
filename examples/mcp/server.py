"""``desk``: a small, real MCP server (the official SDK's low-level server) behind the Fiat gateway.

Tools: ``read_file`` (a file of the directory ``--root``), ``create_ticket``, ``refund``
(``order_id``, ``amount_cents``, ``currency``), ``slow_task`` (sleeps cooperatively, so a
cancellation stops it), ``stubborn_task`` (busy work in a thread that ignores cancellation and
writes the time to ``heartbeat_file`` every 50 ms) and ``purge_tickets``.

Run over stdio (default) or streamable HTTP (``--http PORT``, endpoint ``/mcp``). It speaks both
protocol revisions the SDK serves (the ``initialize`` handshake of 2025-11-25 and the stateless
2026-07-28 revision); ``--legacy-only`` refuses ``server/discover``, so that a client falls back to
the handshake. With ``$MCP_DESK_LOG`` set, every request and notification it receives is appended
to that file as one JSON line (method, protocol version, tool, arguments, the ``Authorization``
header it got over HTTP, its pid and an id of this start of it), and so is every tool call a cancellation stopped.

    python examples/mcp/server.py --root /srv/docs             # stdio
    python examples/mcp/server.py --root /srv/docs --http 9100  # http://127.0.0.1:9100/mcp
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import METHOD_NOT_FOUND

LOG = os.environ.get("MCP_DESK_LOG")
INSTANCE = uuid.uuid4().hex  # which start of the server wrote a record (a PID namespace hides the host pid)
_lock = threading.Lock()


def record(event: str, **data: Any) -> None:
    if not LOG:
        return
    line = json.dumps(
        {"event": event, "pid": os.getpid(), "instance": INSTANCE, "time": time.time(), **data}, sort_keys=True
    )
    with _lock, open(LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


TOOLS = [
    types.Tool(
        name="read_file",
        description="Read a text file of the desk's document directory.",
        input_schema=_schema({"path": {"type": "string"}}, ["path"]),
    ),
    types.Tool(
        name="create_ticket",
        description="Open a support ticket.",
        input_schema=_schema({"title": {"type": "string"}, "body": {"type": "string"}}, ["title"]),
    ),
    types.Tool(
        name="refund",
        description="Refund an order (amount in cents).",
        input_schema=_schema(
            {"order_id": {"type": "string"}, "amount_cents": {"type": "integer"}, "currency": {"type": "string"}},
            ["order_id", "amount_cents", "currency"],
        ),
    ),
    types.Tool(
        name="slow_task",
        description="Work for `seconds` seconds (stops when cancelled).",
        input_schema=_schema({"seconds": {"type": "number"}}, ["seconds"]),
    ),
    types.Tool(
        name="stubborn_task",
        description="Work for `seconds` seconds in a thread, ignoring cancellation.",
        input_schema=_schema({"seconds": {"type": "number"}, "heartbeat_file": {"type": "string"}}, ["seconds"]),
    ),
    types.Tool(
        name="purge_tickets",
        description="Delete every ticket.",
        input_schema=_schema({}, []),
    ),
]


def text(value: str, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=value)], is_error=error)


def build(root: Path) -> Server[Any]:
    tickets: list[dict[str, Any]] = []

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = dict(params.arguments or {})
        name = params.name
        if name == "read_file":
            path = (root / str(args["path"])).resolve()
            if not path.is_relative_to(root.resolve()):
                return text(f"{args['path']} is outside the document directory", error=True)
            try:
                return text(path.read_text(encoding="utf-8"))
            except OSError as exc:
                return text(f"cannot read {args['path']}: {exc.strerror}", error=True)
        if name == "create_ticket":
            tickets.append({"title": args["title"], "body": args.get("body", "")})
            return text(f"ticket T-{len(tickets)} opened: {args['title']}")
        if name == "refund":
            return text(f"refunded {args['amount_cents']} {args['currency']} cents on order {args['order_id']}")
        if name == "slow_task":
            try:
                await anyio.sleep(float(args["seconds"]))
            except anyio.get_cancelled_exc_class():
                record("cancelled", tool=name)
                raise
            return text(f"worked {args['seconds']} s")
        if name == "stubborn_task":
            seconds, beat = float(args["seconds"]), args.get("heartbeat_file")

            def work() -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    if beat:
                        Path(beat).write_text(repr(time.time()))
                    time.sleep(0.05)

            with anyio.CancelScope(shield=True):  # it will not be stopped
                await anyio.to_thread.run_sync(work)
            return text(f"worked {seconds} s, stubbornly")
        if name == "purge_tickets":
            tickets.clear()
            return text("every ticket deleted")
        raise MCPError(METHOD_NOT_FOUND, f"no tool {name!r}")

    server: Server[Any] = Server("desk", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)

    async def observe(ctx: Any, call_next: Any) -> Any:
        request = getattr(ctx, "request", None)
        headers = getattr(request, "headers", None)
        params = ctx.params or {}
        record(
            "request" if ctx.request_id is not None else "notification",
            method=ctx.method,
            version=ctx.protocol_version,
            tool=params.get("name") if ctx.method == "tools/call" else None,
            arguments=params.get("arguments") if ctx.method == "tools/call" else None,
            params=params if ctx.request_id is None else None,
            authorization=headers.get("authorization") if headers is not None else None,
        )
        return await call_next(ctx)

    server.middleware.insert(0, observe)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the directory read_file reads from")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT")
    parser.add_argument("--legacy-only", action="store_true", help="refuse server/discover (2025-11-25 only)")
    args = parser.parse_args()
    server = build(Path(args.root))
    if args.http is not None:
        import uvicorn

        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=args.http, log_level="warning")
        return

    from mcp.server.runner import serve_loop
    from mcp.server.stdio import stdio_server

    async def serve() -> None:
        async with stdio_server() as (read, write):
            if args.legacy_only:  # the handshake-only loop: server/discover is not a method here
                await serve_loop(
                    server, read, write, lifespan_state={}, init_options=server.create_initialization_options()
                )
            else:
                await server.run(read, write, server.create_initialization_options())

    anyio.run(serve)


if __name__ == "__main__":
    main()
