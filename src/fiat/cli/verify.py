"""``fiat bundle`` and ``fiat verify``: an execution's evidence, assembled and verified offline."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    from fiat.verify import TrustRoot, VerificationResult
    from fiat.verify.verifier import StepResult


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
    bundle: Annotated[
        Path,
        typer.Argument(
            help="An evidence bundle (application/vnd.fiat.bundle.v1+json) or a split-view proof "
            "(application/vnd.fiat.split-view-proof.v1+json)."
        ),
    ],
    trust_root_file: Annotated[Path, typer.Option("--trust-root", help="The trust-root.json to verify against.")],
    as_json: JsonOpt = False,
) -> None:
    """Verify an execution's evidence, or a split-view proof of the log's misbehaviour, offline.
    Exit 0 verified (proven), 1 a step failed, 2 unreadable input."""
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
    if is_split_view(raw_bundle):
        split_view_cmd(bundle, raw_bundle, root, as_json)
        return
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
        print_steps(result.steps)
        if result.assurance is not None:
            out.print(f"assurance: {escape(assurance_line(result))}")
        if result.verified:
            out.print(f"[bold green]verified[/]: {escape(verdict(result))}")
        else:
            failed = result.failed
            out.print(f"[bold red]NOT verified[/]: failed at {failed.name if failed else '?'}")
    if not result.verified:
        raise typer.Exit(EXIT_FAILED)


MARKS = {"pass": "[green]✓[/]", "fail": "[bold red]✗[/]", "skip": "[dim]-[/]"}


def print_steps(steps: Sequence[StepResult]) -> None:
    """One line a verification step: its mark, its name, what it found."""
    for step in steps:
        out.print(f"{MARKS[step.status]} {step.name:<24} {escape(step.detail)}")


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


def assurance_line(result: VerificationResult) -> str:
    """What stands behind the bundle's checkpoints (docs/formats.md, "Witnesses and assurance")."""
    a = result.assurance
    assert a is not None
    required = f" (the trust root requires {a.quorum})" if a.quorum else ""
    return f"{a.text}{required}"


def is_split_view(raw: bytes) -> bool:
    """Whether a file names the split-view proof media type: UTF-8 JSON (RFC 8259: no NaN, no BOM)
    whose top-level ``mediaType`` is it. A loose look (the last of duplicate names counts, as in the
    browser's ``JSON.parse``); the proof's own parse is strict. Anything else is read as a bundle."""
    from fiat.verify import SPLIT_VIEW_MEDIA_TYPE

    def no_constant(name: str) -> None:
        raise ValueError(name)

    try:
        v = json.loads(raw.decode("utf-8"), parse_constant=no_constant)
    except (ValueError, RecursionError):
        return False
    return isinstance(v, dict) and v.get("mediaType") == SPLIT_VIEW_MEDIA_TYPE


def split_view_cmd(path: Path, raw: bytes, root: TrustRoot, as_json: bool) -> None:
    """``fiat verify PROOF``: what a split-view proof proves, offline (exit 0 proven, 1 not, 2 malformed)."""
    from fiat.verify import verify_split_view

    result = verify_split_view(raw, root)
    code = EXIT_INVALID if result.malformed else EXIT_FAILED if not result.proven else 0
    if as_json:
        emit_json(result.to_json())
    else:
        print_steps(result.steps)
        if result.proven:
            (sa, ra), (sb, rb) = result.checkpoints
            out.print(
                f"[bold green]PROVEN[/]: the log {escape(result.origin or '')} signed two inconsistent checkpoints: "
                f"{escape(result.summary or '')} (size {sa} root {note_b64(ra)}; size {sb} root {note_b64(rb)})"
            )
            if result.observed_by or result.observed_at:
                by = f" by {result.observed_by}" if result.observed_by else ""
                at = f" at {result.observed_at}" if result.observed_at else ""
                out.print(f"observed{escape(by + at)} (unsigned, information only)")
        else:
            failed = result.failed
            name = failed.name if failed else "?"
            out.print(f"[bold red]NOT proven[/]: {escape(str(path))} fails at {name}")
    if code:
        raise typer.Exit(code)


def note_b64(data: bytes) -> str:
    from fiat.tlog.note import b64

    return b64(data)


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle_export)
    app.command("verify")(verify_cmd)
