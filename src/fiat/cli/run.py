"""``fiat measure`` and ``fiat run``: this runtime's Evidence, and a command governed end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from fiat.cli.common import (
    EXIT_INVALID,
    HomeOpt,
    JsonOpt,
    config,
    emit_json,
    err,
    errors_to_exit,
    fail,
    out,
    parse_context,
    parse_scope_pair,
)
from fiat.config import load_config


def measure_cmd(
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    command: Annotated[list[str] | None, typer.Argument(help="Measure as for this command (default: Python).")] = None,
) -> None:
    """Print this runtime's environment Evidence: named claims per probe and one digest."""
    from fiat.config import resolve_home
    from fiat.establish.measure import default_measurer

    with errors_to_exit():
        root = resolve_home(home)
        cfg = load_config(root) if (root / "fiat.toml").exists() else None
        files = cfg.runtime.files if cfg else []
        allow = cfg.runtime.env_allowlist if cfg else ["PATH"]
        evidence = default_measurer(command or None, None, files, allow).measure()
    if as_json:
        emit_json(evidence)
        return
    for probe, claims in evidence["claims"].items():
        out.print(f"[bold]{probe}[/]")
        for k, v in claims.items():
            out.print(f"  {k}: {escape(json.dumps(v)) if not isinstance(v, str) else escape(v)}")
    out.print(f"digest: {evidence['digest']}")


#: Outcomes of a command that started: each has a receipt.
FINISHED = ("completed", "failed", "halted")


def run_cmd(
    command: Annotated[list[str], typer.Argument(help="The command to govern, after --.")],
    principal: Annotated[str, typer.Option(help="Who acts, e.g. agent:release-bot.")],
    action: Annotated[str, typer.Option(help="What they do, e.g. shell:run.")],
    resource: Annotated[str, typer.Option(help="What they act on, e.g. repo:fiat.")],
    context: Annotated[str, typer.Option(help="Arguments as a JSON object.")] = "{}",
    parent: Annotated[str | None, typer.Option(help="The parent permit id (lineage).")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="ACTION@RESOURCE a sub-agent of this run may be permitted (repeatable; the permit's scope).",
        ),
    ] = None,
    evidence: Annotated[Path | None, typer.Option(help="Write the execution's evidence bundle here.")] = None,
    output: Annotated[
        list[str] | None, typer.Option(help="A declared output whose digest goes into the receipt.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="The authority (default http://server.host:server.port).")] = None,
    home: HomeOpt = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="The JSON result alone on stdout; the command's own stdout then goes to stderr.",
        ),
    ] = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json-out", help="Write the JSON result to this file; the command's stdout stays untouched."),
    ] = None,
) -> None:
    """Run CMD only with a verified permit; re-verify while it runs; halt it when trust is lost.

    Exit codes: the command's own status; 124 halted; 125 denied; 126 trust not established;
    127 the command was not found. The receipt is spooled in the home before it is uploaded: if
    the authority cannot take it, the exit code is the same and stderr names the spool file.
    """
    from fiat.enforce.run import run_governed

    ctx = parse_context(context)
    pairs = None if scope is None else [parse_scope_pair(s) for s in scope]
    if not command:
        fail(EXIT_INVALID, "nothing to run", "put the command after --, e.g. fiat run ... -- make deploy")
    if json_out is not None and not json_out.parent.is_dir():
        fail(EXIT_INVALID, f"--json-out: {json_out.parent} is not a directory")
    with errors_to_exit():
        cfg = config(home)
        result = run_governed(
            cfg,
            command,
            principal=principal,
            action=action,
            resource=resource,
            context=ctx,
            parent=parent,
            url=url,
            evidence_path=evidence,
            outputs=output or [],
            on_status=lambda msg: err.print(f"[dim]fiat:[/] {escape(msg)}"),
            # With --json, stdout carries the JSON result only: the command writes to stderr.
            command_stdout=sys.stderr.fileno() if as_json else None,
            scope=pairs,
        )
    doc: dict[str, Any] = {
        "exitCode": result.exit_code,
        "outcome": result.outcome,
        "reason": result.reason,
        "permitId": result.permit_id,
        "receiptLogIndex": result.receipt_index,
        "receiptSpooled": None if result.receipt_spooled is None else str(result.receipt_spooled),
        "haltLatencyMs": None if result.halt_latency is None else round(result.halt_latency * 1000, 2),
        "approvalId": result.decision.get("approvalId"),
        "splitViewProof": None if result.split_view_proof is None else str(result.split_view_proof),
    }
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        except OSError as exc:
            err.print(f"[bold red]fiat:[/] cannot write {escape(str(json_out))}: {escape(exc.strerror or '')}")
    if as_json:
        emit_json(doc)
    elif result.outcome not in ("completed",):
        err.print(f"[bold red]fiat:[/] {escape(result.outcome)}: {escape(result.reason)}")
        if result.decision.get("approvalId") and result.decision.get("decision") == "pending":
            # Still pending when the wait ended: an approver can still decide it. A denied or
            # expired approval needs no hint.
            err.print(f"fiat: approval id {result.decision['approvalId']}; an approver runs `fiat approve` with it")
    if result.receipt_index is not None and not as_json:
        err.print(f"[dim]fiat:[/] receipt for {result.permit_id} logged at index {result.receipt_index}")
    if result.receipt_index is None and result.receipt_spooled is None and result.outcome in FINISHED:
        err.print(f"[bold red]fiat:[/] the receipt for {result.permit_id} is neither logged nor spooled")
    if result.receipt_spooled is not None:
        # Said on stderr with --json too: the receipt is safe, but not logged yet.
        err.print(
            f"[bold yellow]fiat:[/] receipt for {result.permit_id} spooled at {escape(str(result.receipt_spooled))}; "
            "it will be uploaded by the next fiat run or `fiat receipts flush`"
        )
        if evidence is not None:
            err.print(
                f"[bold yellow]fiat:[/] no bundle written to {escape(str(evidence))} yet (it would lack the receipt); "
                f"`fiat receipts flush` writes it once the receipt is logged"
            )
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("measure")(measure_cmd)
    app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})(run_cmd)
