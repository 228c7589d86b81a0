"""``fiat mcp``: the governing MCP gateway (docs/mcp.md) — stdio for desktop agents, HTTP for hosted ones.

* ``fiat mcp --principal agent:NAME [--name SERVER] -- UPSTREAM_CMD ARGS...``: speaks MCP on
  stdin/stdout to the agent, and to the upstream it starts contained (as ``fiat run`` would);
  with ``--parent PERMIT_ID`` (or ``--parent env``: ``$FIAT_PERMIT_ID``, the permit of the
  ``fiat run`` that started it) every tool call's permit is a child of that permit;
* ``fiat mcp serve --config FILE``: streamable HTTP on ``[gateway] host:port`` for several upstreams.

No domain logic here: :mod:`fiat.mcp` governs, :mod:`fiat.api.mcp` serves HTTP.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer

from fiat.cli.common import EXIT_INVALID, HomeOpt, config, err, errors_to_exit, fail

INTERPRETERS = {"python", "python3", "node", "deno", "bun", "uv", "uvx", "npx", "pipx", "ruby", "java", "sh", "bash"}


def default_name(command: list[str]) -> str:
    """The server name of ``fiat mcp -- CMD``: the file name (no extension) of the command, or of its
    first non-option argument when the command is an interpreter; ``-`` for what a name may not hold."""
    pick = command[0]
    if Path(pick).name.rstrip("0123456789.") in INTERPRETERS or Path(pick).name in INTERPRETERS:
        rest = [a for a in command[1:] if not a.startswith("-")]
        pick = rest[0] if rest else pick
    stem = Path(pick.rstrip("/")).stem or "server"
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).replace("___", "-").strip("-_") or "server"
    return name[:63]


def _resource_arguments(values: list[str]) -> dict[str, dict[str, str]]:
    tools: dict[str, dict[str, str]] = {}
    for v in values:
        m = re.fullmatch(r"([^=]+)=([^:]+):(.+)", v)
        if not m:
            fail(EXIT_INVALID, f"--resource-argument {v!r}", "write TOOL=ARGUMENT:TYPE, e.g. refund=order_id:Order")
        tools[m.group(1)] = {"resource_argument": m.group(2), "resource_type": m.group(3)}
    return tools


def mcp_cmd(
    command: Annotated[
        list[str] | None, typer.Argument(help="The upstream server command, after --; or `serve`.")
    ] = None,
    principal: Annotated[
        str | None, typer.Option(help="stdio: the agent's identity, e.g. agent:desk-assistant.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="stdio: the upstream's server name (default: from the command).")
    ] = None,
    resource_argument: Annotated[
        list[str] | None,
        typer.Option(help='stdio: TOOL=ARGUMENT:TYPE — the tool\'s Cedar resource is TYPE::"<that argument>".'),
    ] = None,
    parent: Annotated[
        str | None,
        typer.Option(
            help="stdio: the parent permit id (the agent is a sub-agent); `env` reads $FIAT_PERMIT_ID.",
        ),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="serve: the gateway configuration (TOML).")
    ] = None,
    url: Annotated[str | None, typer.Option(help="The authority (default http://server.host:server.port).")] = None,
    home: HomeOpt = None,
) -> None:
    """Govern an agent's MCP tool calls: list what it may call, permit each call, re-verify it, halt it, prove it."""
    import anyio

    from fiat.mcp import Gateway, serve_stdio
    from fiat.mcp import settings as mcp_settings

    argv = command or []
    if argv == ["serve"]:
        if config_file is None:
            fail(EXIT_INVALID, "fiat mcp serve needs --config FILE", "see docs/mcp.md, Configuration")
        _serve(config_file, url, home)
        return
    if not argv:
        fail(EXIT_INVALID, "no upstream server", "fiat mcp --principal agent:NAME -- UPSTREAM_CMD ARGS...")
    if principal is None:
        fail(EXIT_INVALID, "the stdio face needs --principal (the agent's identity)", "e.g. --principal agent:NAME")
    parent_id = _parent(parent)
    with errors_to_exit():
        cfg = config(home)
        server = name or default_name(argv)
        gateway_config = mcp_settings.one_server(
            server, command=argv, tools=_resource_arguments(resource_argument or [])
        )
        gateway = Gateway(
            cfg,
            gateway_config,
            url=url,
            approver_hint=f"--home {cfg.home}",
            parent=parent_id,
            on_status=lambda msg: err.print(f"fiat mcp: {msg}", highlight=False, soft_wrap=True),
        )
        anyio.run(serve_stdio, gateway, principal)


def _parent(value: str | None) -> str | None:
    """``--parent``: a permit id, or ``env`` for ``$FIAT_PERMIT_ID`` (set by ``fiat run`` for its command)."""
    from fiat.enforce.guard import PERMIT_ENV

    if value is None:
        return None
    if value == "env":
        value = os.environ.get(PERMIT_ENV, "")
        if not value:
            fail(
                EXIT_INVALID,
                f"--parent env: ${PERMIT_ENV} is not set",
                "run the agent under `fiat run`, or name the permit",
            )
    if not re.fullmatch(r"pmt_[A-Za-z0-9_-]+", value):
        fail(EXIT_INVALID, f"--parent {value!r} is not a permit id", "a permit id looks like pmt_…")
    return value


def _serve(config_file: Path, url: str | None, home: Path | None) -> None:
    from fiat.api.mcp import create_app, serve
    from fiat.mcp import Gateway
    from fiat.mcp import settings as mcp_settings
    from fiat.mcp.identity import JwtVerifier, principal_of_request

    with errors_to_exit():
        cfg = config(home)
        gc = mcp_settings.load(config_file)
        if gc.identity is None:
            fail(EXIT_INVALID, f"{config_file}: no [identity]", 'set issuer and jwks (OAuth), or static = "agent:NAME"')
        gateway = Gateway(cfg, gc, url=url)
        identity = gc.identity
        static = identity.static
        verifier = None if static else JwtVerifier(identity, gc.resource_url())
        server = gateway.server(lambda ctx: principal_of_request(ctx, static))
        app = create_app(
            server,
            path=gc.gateway.path,
            host=gc.gateway.host,
            resource_url=gc.resource_url(),
            issuer=identity.issuer,
            token_verifier=verifier,
            required_scopes=identity.required_scopes,
            on_start=gateway.start,
            on_stop=gateway.close,
        )
        serve(
            app,
            gc.gateway.host,
            gc.gateway.port,
            on_ready=lambda where: err.print(f"fiat mcp: serving {where}{gc.gateway.path}", highlight=False),
        )


def register(app: typer.Typer) -> None:
    app.command("mcp", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})(mcp_cmd)
