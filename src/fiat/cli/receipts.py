"""``fiat receipts list|flush``: execution receipts spooled in this home, not yet logged by the authority.

``fiat run`` and ``fiat.governed`` spool every receipt durably before uploading it
(:mod:`fiat.enforce.spool`); one the authority could not take waits here until the next
``fiat run``, a running guard, or ``fiat receipts flush`` uploads it.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated, Any

import typer
from rich.markup import escape

from fiat.cli.common import (
    EXIT_ERROR,
    EXIT_INVALID,
    HomeOpt,
    JsonOpt,
    config,
    emit_json,
    err,
    errors_to_exit,
    fail,
    out,
)

receipts_app = typer.Typer(
    help="Receipts spooled in this home that the authority has not logged yet.", no_args_is_help=True
)


def _entry_json(e: Any) -> dict[str, Any]:
    return {
        "permitId": e.permit_id,
        "path": str(e.path),
        "authority": e.authority,
        "spooledAt": e.spooled_at,
        "attempts": e.attempts,
        "lastError": e.last_error,
        "evidence": e.evidence,
    }


@receipts_app.command("list")
def receipts_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List the spooled receipts: permit id, when spooled, upload attempts, the last error, the authority."""
    from fiat.enforce.spool import ReceiptSpool

    with errors_to_exit():
        spool = ReceiptSpool(config(home).home)
        pending, unreadable = spool.entries()
    if as_json:
        emit_json(
            {
                "spool": str(spool.dir),
                "pending": [_entry_json(e) for e in pending],
                "unreadable": [{"path": str(u.path), "error": u.error} for u in unreadable],
            }
        )
        return
    if not pending and not unreadable:
        out.print(f"no spooled receipts in {escape(str(spool.dir))}")
        return
    for e in pending:
        last = e.last_error or "-"
        out.print(
            f"{e.permit_id}  spooled {e.spooled_at}  attempts {e.attempts}  authority {escape(e.authority)}"
            f"  last error: {escape(last)}"
        )
    for u in unreadable:
        err.print(f"[bold red]unreadable:[/] {escape(str(u.path))}: {escape(u.error)} (kept; inspect or move it)")


@receipts_app.command("flush")
def receipts_flush(
    url: Annotated[
        str | None, typer.Option(help="Upload every receipt to this authority instead of the one it names.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to keep retrying, for all receipts together.")] = 30.0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload every spooled receipt (retrying with backoff); write the bundles `fiat run --evidence` asked for.

    Exit 0 when the spool is empty afterwards; 3 when some receipt remains, each named with why.
    """
    from fiat.enforce.spool import ReceiptSpool, Uploaded
    from fiat.errors import KeyFileError
    from fiat.home import keyring

    if not 0 < timeout <= 3600:
        fail(EXIT_INVALID, "--timeout must be more than 0 and at most 3600 seconds")

    def progress(done: Uploaded) -> None:
        if as_json:
            return
        if done.index is not None:
            out.print(f"[green]✓[/] {done.entry.permit_id} logged at index {done.index}")
        else:
            out.print(f"[bold red]✗[/] {done.entry.permit_id}: {escape(done.error or '')}")

    with errors_to_exit():
        cfg = config(home)
        try:
            key = keyring(cfg).signing_key("runtime", cfg.runtime.name or None)[1]
        except KeyFileError:
            key = None  # no runtime key here: receipts upload, bundles cannot be fetched
        spool = ReceiptSpool(cfg.home)
        status = nullcontext() if as_json else err.status("uploading spooled receipts", spinner="dots")
        with status:
            report = spool.flush(timeout, url=url, runtime_key=key, on_entry=progress)
    if as_json:
        emit_json(
            {
                "uploaded": report.uploaded,
                "remaining": report.remaining,
                "unreadable": [{"path": str(u.path), "error": u.error} for u in report.unreadable],
                "bundles": report.bundles,
                "bundleErrors": report.bundle_errors,
            }
        )
    else:
        for jti, path in report.bundles.items():
            out.print(f"wrote the evidence bundle of {jti} to {escape(path)}")
        if not report.uploaded and not report.remaining and not report.unreadable:
            out.print(f"nothing to upload in {escape(str(spool.dir))}")
    problems = [f"{jti}: {why}" for jti, why in report.remaining.items()]
    problems += [f"{u.path}: {u.error}" for u in report.unreadable]
    problems += [f"{jti}: bundle not written: {why}" for jti, why in report.bundle_errors.items()]
    if problems:
        for p in problems:
            err.print(f"[bold red]error:[/] {escape(p)}")
        err.print(
            f"[dim]hint:[/] {len(report.remaining)} receipt(s) remain in {escape(str(spool.dir))}; "
            "start the authority (`fiat serve`) or name it with --url, then run `fiat receipts flush` again"
        )
        raise typer.Exit(EXIT_ERROR)
