"""``fiat bundle`` and ``fiat verify``: an execution's evidence, assembled and verified offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fiat.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    HomeOpt,
    JsonOpt,
    config,
    emit_json,
    errors_to_exit,
    fail,
    out,
    read_input,
    write_output,
)
from fiat.errors import MalformedError


def bundle_export(
    permit_id: Annotated[str, typer.Argument(help="The permit id (jti) of the execution.")],
    home: HomeOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
) -> None:
    """Assemble the evidence bundle of one execution from the log (with its lineage ancestors)."""
    from fiat.wiring import open_evidence

    with errors_to_exit():
        recorder = open_evidence(config(home))
        try:
            bundle = recorder.bundle(permit_id)
        finally:
            recorder.close()
    write_output(json.dumps(bundle.to_json(), indent=2) + "\n", output)


def verify_cmd(
    bundle: Annotated[Path, typer.Argument(help="An evidence bundle (application/vnd.fiat.bundle.v1+json).")],
    trust_root_file: Annotated[Path, typer.Option("--trust-root", help="The trust-root.json to verify against.")],
    as_json: JsonOpt = False,
) -> None:
    """Verify an execution's evidence offline. Exit 0 verified, 1 a step failed, 2 unreadable input."""
    from fiat.verify import Bundle, TrustRoot, verify

    raw_bundle = read_input(bundle, "bundle")
    raw_root = read_input(trust_root_file, "trust root")
    try:
        root = TrustRoot.parse(raw_root)
    except MalformedError as exc:
        if as_json:
            emit_json({"verified": False, "failedStep": "trust-root", "error": str(exc)})
            raise typer.Exit(EXIT_INVALID) from None
        fail(EXIT_INVALID, f"{trust_root_file}: {exc}", "export one with `fiat trust-root export`")
    try:
        parsed = Bundle.parse(raw_bundle)
    except MalformedError as exc:
        if as_json:
            emit_json({"verified": False, "failedStep": "bundle-format", "error": str(exc)})
            raise typer.Exit(EXIT_INVALID) from None
        fail(EXIT_INVALID, f"{bundle}: {exc}")
    result = verify(parsed, root)
    if as_json:
        emit_json(result.to_json())
    else:
        marks = {"pass": "[green]✓[/]", "fail": "[bold red]✗[/]", "skip": "[dim]-[/]"}
        for step in result.steps:
            out.print(f"{marks[step.status]} {step.name:<24} {escape(step.detail)}")
        if result.verified:
            held = result.containment or "not recorded"
            out.print(
                f"[bold green]verified[/]: execution {escape(str(result.permit_id))} (containment: {escape(held)})"
            )
        else:
            failed = result.failed
            out.print(f"[bold red]NOT verified[/]: failed at {failed.name if failed else '?'}")
    if not result.verified:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle_export)
    app.command("verify")(verify_cmd)
