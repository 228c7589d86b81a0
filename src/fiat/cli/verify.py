"""``fiat bundle`` and ``fiat verify``: an execution's evidence, assembled and verified offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from fiat.verify import VerificationResult


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
            out.print(f"[bold green]verified[/]: {escape(verdict(result))}")
        else:
            failed = result.failed
            out.print(f"[bold red]NOT verified[/]: failed at {failed.name if failed else '?'}")
    if not result.verified:
        raise typer.Exit(EXIT_FAILED)


def verdict(result: VerificationResult) -> str:
    """The verdict line of a verified bundle, saying what became of the execution, so that no one
    reads a halt or a failure as a success (docs/formats.md, "``fiat verify`` exit codes")."""
    execution = f"execution {result.permit_id}"
    held = f"(containment: {result.containment or 'not recorded'})"
    if result.outcome == "halted":
        step, _, reason = (result.halt_reason or "").partition(": ")
        return f"halted at {step} ({reason or 'no reason recorded'}) — {execution} {held}"
    if result.outcome == "failed":
        code = "no exit code" if result.exit_code is None else f"exit {result.exit_code}"
        return f"failed ({code}) — {execution} {held}"
    if result.outcome == "completed":
        return f"{execution} completed (exit 0) {held}"
    return f"{execution} (no receipt)"


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle_export)
    app.command("verify")(verify_cmd)
