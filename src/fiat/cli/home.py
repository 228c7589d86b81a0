"""``fiat version`` and ``fiat init``: the home."""

from __future__ import annotations

from typing import Annotated

import typer

from fiat import __version__
from fiat.cli.common import HomeOpt, JsonOpt, emit_json, errors_to_exit, out


def version() -> None:
    """Print Fiat's version."""
    out.print(__version__)


def init(
    home: HomeOpt = None,
    origin: Annotated[str | None, typer.Option(help="The log origin, e.g. example.com/log (new homes only).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a Fiat home: fiat.toml, keys (0600) and an empty log. Safe to re-run; never replaces a key."""
    from fiat.home import init_home

    with errors_to_exit():
        report = init_home(home, origin)
    if as_json:
        emit_json(
            {"home": str(report.home), "created": list(report.created), "kept": list(report.kept), "vkey": report.vkey}
        )
        return
    out.print(f"Fiat home: [bold]{report.home}[/]")
    for name in report.created:
        out.print(f"  created {name}")
    for name in report.kept:
        out.print(f"  kept    {name}")
    out.print(f"log verifier key: {report.vkey}")


def register(app: typer.Typer) -> None:
    app.command()(version)
    app.command()(init)
