"""``fiat demo``: Fiat's main job on embedded defaults (the scenario itself is ``fiat.demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fiat.cli.common import EXIT_ERROR, errors_to_exit, fail, out


def demo(
    home: Annotated[Path, typer.Option("--home", help="The demo's home, recreated on every run.")] = Path(".fiat-demo"),
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port.")] = 8750,
    serve: Annotated[bool, typer.Option(help="Keep the authority running after the scenario until Ctrl-C.")] = True,
) -> None:
    """Fiat's main job on embedded defaults: governed executions and an MCP agent session, verified offline."""
    from fiat.demo import play

    with errors_to_exit():
        scenarios = play(home, host, port, out, keep_serving=serve)
    expected = {"completed", "denied", "halted"}
    if any(s.outcome not in expected for s in scenarios):
        fail(EXIT_ERROR, "a demo scenario did not behave as designed; see the table above")


def register(app: typer.Typer) -> None:
    app.command()(demo)
