"""An example agent behind the Fiat gateway, driven by the official MCP SDK's own client (no LLM).

It starts the gateway over stdio, as a desktop MCP client would::

    fiat mcp --principal AGENT --name desk --resource-argument refund=order_id:Order \\
        [--parent PERMIT] -- python examples/mcp/server.py --root ROOT

or, with ``--http URL`` (and ``--token`` for an OAuth gateway), reaches ``fiat mcp serve`` over
streamable HTTP. It lists the tools it may call, makes its calls, and prints what a model would
read: each result's text, and for a governed call the permit whose bundle proves it
(``fiat bundle PERMIT`` then ``fiat verify``). With ``--json`` it prints one JSON object per line
instead (``{"tools": [...]}`` first, then one per call).

    python examples/mcp/agent.py                                  # the default calls below
    python examples/mcp/agent.py --call 'desk___read_file={"path": "faq.md"}'
    python examples/mcp/agent.py --principal agent:researcher --parent env   # under `fiat run`
    python examples/mcp/agent.py --http http://127.0.0.1:8760/mcp --token "$TOKEN"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters

HERE = Path(__file__).resolve().parent
#: What the agent does when no --call is given: a read, a ticket, a small refund, one too large.
DEFAULT_CALLS = [
    ("desk___read_file", {"path": "README.md"}),
    ("desk___create_ticket", {"title": "Refund for order 48213", "body": "The parcel arrived damaged."}),
    ("desk___refund", {"order_id": "48213", "amount_cents": 2500, "currency": "EUR"}),
    ("desk___refund", {"order_id": "48213", "amount_cents": 500000, "currency": "EUR"}),
]


def parse_call(value: str) -> tuple[str, dict[str, Any]]:
    name, sep, args = value.partition("=")
    try:
        arguments = json.loads(args) if sep else {}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: the arguments are not JSON ({exc})") from exc
    if not name or not isinstance(arguments, dict):
        raise argparse.ArgumentTypeError(f"{value!r}: write TOOL={{JSON object}}")
    return name, arguments


def gateway_command(args: argparse.Namespace) -> StdioServerParameters:
    """``fiat mcp ... -- python examples/mcp/server.py --root ROOT`` (the stdio face)."""
    fiat = [args.fiat] if args.fiat else ([shutil.which("fiat")] if shutil.which("fiat") else [])
    base = fiat or [sys.executable, "-m", "fiat.cli.main"]
    argv = [*base, "mcp", "--principal", args.principal, "--name", "desk"]
    argv += ["--resource-argument", "refund=order_id:Order"]
    if args.parent:
        argv += ["--parent", args.parent]
    if args.home:
        argv += ["--home", args.home]
    if args.url:
        argv += ["--url", args.url]
    argv += ["--", sys.executable, str(HERE / "server.py"), "--root", args.root]
    return StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ), cwd=os.getcwd())


def text_of(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def main(args: argparse.Namespace) -> int:
    if args.http:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=360.0))
        transport: Any = streamable_http_client(args.http, http_client=http)
    else:
        http, transport = None, gateway_command(args)
    calls = args.call or DEFAULT_CALLS
    errors = 0
    try:
        async with Client(transport) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            emit(args, {"tools": tools}, "tools I may call: " + ", ".join(tools))
            for name, arguments in calls:
                result = await client.call_tool(name, arguments)
                meta = result.meta or {}
                said = text_of(result) or json.dumps(result.structured_content)
                errors += bool(result.is_error)
                doc = {
                    "tool": name,
                    "arguments": arguments,
                    "isError": bool(result.is_error),
                    "text": said,
                    "permit": meta.get("fiat/permit"),
                    "receipt": meta.get("fiat/receipt"),
                    "approval": meta.get("fiat/approval"),
                }
                shown = said if len(said) <= 400 else said[:400] + " …"
                proof = f"   [permit {doc['permit']}, receipt #{doc['receipt']}]" if doc["permit"] else ""
                emit(
                    args,
                    doc,
                    f"> {name} {json.dumps(arguments)}\n  {'error: ' if result.is_error else ''}{shown}{proof}",
                )
    finally:
        if http is not None:
            await http.aclose()
    return 1 if errors and args.strict else 0


def emit(args: argparse.Namespace, doc: dict[str, Any], line: str) -> None:
    print(json.dumps(doc) if args.json else line, flush=True)


def cli() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--principal", default="agent:support-assistant", help="the agent's identity (stdio)")
    p.add_argument("--parent", help="the parent permit (a sub-agent): an id, or `env` for $FIAT_PERMIT_ID")
    p.add_argument("--root", default=str(HERE), help="the desk server's document directory")
    p.add_argument("--home", help="the Fiat home of the gateway (default: $FIAT_HOME or .fiat)")
    p.add_argument("--url", help="the authority (default: the home's server.host:server.port)")
    p.add_argument("--fiat", help="the fiat executable (default: `fiat` on PATH, else this Python's)")
    p.add_argument("--http", metavar="URL", help="reach `fiat mcp serve` at URL instead of starting stdio")
    p.add_argument("--token", help="--http: the bearer token (OAuth 2.1 access token)")
    p.add_argument("--call", action="append", type=parse_call, metavar="TOOL=JSON", help="a call (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--strict", action="store_true", help="exit 1 if any call returned a tool error")
    args = p.parse_args()
    # Under `fiat run`, a halt sends SIGTERM: stop with the conventional status, as a shell would.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return anyio.run(main, args)


if __name__ == "__main__":
    sys.exit(cli())
