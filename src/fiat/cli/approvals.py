"""``fiat approve``, ``fiat deny`` and ``fiat approvals list|show``: what an approver is asked, and the answer.

All of them speak to a running authority with this home's approver key (DPoP, RFC 9449).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from fiat.cli.common import (
    EXIT_INVALID,
    HomeOpt,
    JsonOpt,
    authority_errors,
    config,
    emit_json,
    errors_to_exit,
    fail,
    out,
    server_url,
)

approvals_app = typer.Typer(help="Approvals: what is asked of an approver, before they decide.", no_args_is_help=True)

NameOpt = Annotated[str | None, typer.Option(help="Which approver key, when this home has several.")]
UrlOpt = Annotated[str | None, typer.Option(help="The authority.")]
STATUSES = ("pending", "approved", "denied", "expired", "used")


def _with_client(url: str | None, home: Path | None, name: str | None, call: Any) -> Any:
    """``call(client, approver record, approver key)`` against the authority; errors become exits."""
    from fiat.api.client import AuthorityClient
    from fiat.home import keyring

    with errors_to_exit():
        cfg = config(home)
        rec, key = keyring(cfg).signing_key("approver", name)
        with authority_errors(), AuthorityClient(server_url(cfg, url)) as client:
            return call(client, rec, key)


def _decide(
    approval_id: str, approve: bool, name: str | None, reason: str, url: str | None, home: Path | None, as_json: bool
) -> None:
    result = _with_client(
        url, home, name, lambda client, rec, key: client.decide(approval_id, approve, key, rec.kid, rec.name, reason)
    )
    if as_json:
        emit_json(result)
        return
    out.print(f"{approval_id}: {result['status']} by {result['approver']} (log index {result['logIndex']})")


def approve_cmd(
    approval_id: Annotated[str, typer.Argument(help="The approval id from a pending decision.")],
    name: NameOpt = None,
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    url: UrlOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a pending request with this home's approver key (signed, bound to the action, logged)."""
    _decide(approval_id, True, name, reason, url, home, as_json)


def deny_cmd(
    approval_id: Annotated[str, typer.Argument(help="The approval id from a pending decision.")],
    name: NameOpt = None,
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    url: UrlOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deny a pending request with this home's approver key (signed, logged)."""
    _decide(approval_id, False, name, reason, url, home, as_json)


@approvals_app.command("list")
def approvals_list(
    status: Annotated[str, typer.Option(help=f"{', '.join(STATUSES)} or all.")] = "pending",
    limit: Annotated[int, typer.Option(help="At most this many, the newest.")] = 100,
    name: NameOpt = None,
    url: UrlOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List approvals (pending ones by default): id, status, who asks to do what to which resource."""
    if status != "all" and status not in STATUSES:
        fail(EXIT_INVALID, f"--status must be one of {', '.join(STATUSES)} or all, not {status!r}")
    if not 1 <= limit <= 1000:
        fail(EXIT_INVALID, "--limit must be between 1 and 1000")
    rows = _with_client(
        url, home, name, lambda client, _rec, key: client.approvals(key, None if status == "all" else status, limit)
    )
    if as_json:
        emit_json({"approvals": rows})
        return
    if not rows:
        out.print(f"no {'' if status == 'all' else status + ' '}approvals")
        return
    for a in rows:
        r = a["request"]
        out.print(
            f"{a['id']}  {a['status']:<8}  {escape(r['principal'])} {escape(r['action'])} {escape(r['resource'])}"
            f"  (group {escape(a['group'])}, expires {a['expiresAt']})"
        )


@approvals_app.command("show")
def approvals_show(
    approval_id: Annotated[str, typer.Argument(help="The approval id.")],
    name: NameOpt = None,
    url: UrlOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what an approval asks, in full: principal, action, resource, context, lineage, runtime, status."""
    a = _with_client(url, home, name, lambda client, _rec, key: client.approval(key, approval_id))
    if as_json:
        emit_json(a)
        return
    r = a["request"]
    rows = [
        ("approval", a["id"]),
        ("status", a["status"] + (f" (by {a['approver']})" if a.get("approver") else "")),
        ("principal", r["principal"]),
        ("action", r["action"]),
        ("resource", r["resource"]),
        ("parent", r.get("parent") or "none (a root execution)"),
        ("runtime", a.get("runtime") or "not recorded"),
        ("group", a["group"]),
        ("requested", a["requestedAt"]),
        ("expires", a["expiresAt"]),
        ("action digest", a["actionDigest"]),
    ]
    for label, value in rows:
        out.print(f"[bold]{label + ':':<15}[/]{escape(str(value))}")
    out.print("[bold]context:[/]")
    out.print(escape(json.dumps(r.get("context", {}), indent=2, sort_keys=True)))
    if a["status"] == "pending":
        out.print(f"decide with: fiat approve {a['id']}   or   fiat deny {a['id']}")


def register(app: typer.Typer) -> None:
    app.command("approve")(approve_cmd)
    app.command("deny")(deny_cmd)
