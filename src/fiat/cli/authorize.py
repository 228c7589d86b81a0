"""``fiat authorize``, ``fiat revoke``, ``fiat enroll``: talking to a running authority."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from fiat.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    GroupOpt,
    HomeOpt,
    IdentityOpt,
    JsonOpt,
    authority_errors,
    config,
    emit_json,
    errors_to_exit,
    fail,
    out,
    parse_context,
    parse_scope_pair,
    server_url,
)


def authorize_cmd(
    principal: Annotated[str, typer.Option(help="Who acts, e.g. agent:release-bot.")],
    action: Annotated[str, typer.Option(help="What they do, e.g. deploy.")],
    resource: Annotated[str, typer.Option(help="What they act on, e.g. service:payments.")],
    context: Annotated[str, typer.Option(help="Arguments as a JSON object.")] = "{}",
    parent: Annotated[str | None, typer.Option(help="The parent permit id (lineage).")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="ACTION@RESOURCE a descendant of this permit may be permitted (repeatable)."),
    ] = None,
    approval_id: Annotated[str | None, typer.Option(help="A granted approval to use.")] = None,
    url: Annotated[str | None, typer.Option(help="The authority (default http://server.host:server.port).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the authority for a decision as this home's runtime; print the decision, why, and the permit.

    The request carries this runtime's environment Evidence, measured as ``fiat measure``
    does (the probes, ``runtime.files`` and ``runtime.env_allowlist``), as ``fiat run`` sends it.
    """
    import os

    from fiat.api.client import AuthorityClient
    from fiat.establish.measure import default_measurer
    from fiat.home import keyring

    ctx = parse_context(context)
    pairs = None if scope is None else [parse_scope_pair(s) for s in scope]
    with errors_to_exit():
        cfg = config(home)
        rec, key = keyring(cfg).signing_key("runtime", None)
        evidence = default_measurer(None, os.getcwd(), cfg.runtime.files, cfg.runtime.env_allowlist).measure()
        body: dict[str, Any] = {
            "principal": principal,
            "action": action,
            "resource": resource,
            "context": ctx,
            "parent": parent,
            "evidence": evidence,
        }
        if approval_id:
            body["approvalId"] = approval_id
        if pairs is not None:
            body["scope"] = pairs
        with authority_errors(), AuthorityClient(server_url(cfg, url)) as client:
            result = client.authorize(key, rec.kid, body)
    if as_json:
        emit_json(result)
    else:
        colour = {"allow": "green", "deny": "red", "pending": "yellow"}[result["decision"]]
        out.print(f"[bold {colour}]{result['decision']}[/]: {escape(result['reason'])}")
        for why in result.get("reasons") or []:
            if why != result["reason"]:
                out.print(f"  - {escape(why)}")
        if result.get("approvalId"):
            out.print(f"approval id: {result['approvalId']} (expires {result['approvalExpires']})")
            out.print(f"an approver runs: fiat approve {result['approvalId']}")
        if result.get("permit"):
            out.print(f"permit {result['permitId']}:")
            sys.stdout.write(result["permit"] + "\n")
        out.print(f"decision logged at index {result['decisionLogIndex']}")
    if result["decision"] == "deny":
        raise typer.Exit(EXIT_FAILED)


def revoke_cmd(
    reason: Annotated[str, typer.Option(help="Why (recorded in the signed revocation).")],
    permit: Annotated[str | None, typer.Option(help="Revoke one permit.")] = None,
    principal: Annotated[str | None, typer.Option(help="Revoke a principal.")] = None,
    runtime: Annotated[str | None, typer.Option(help="Revoke a runtime key (its kid).")] = None,
    url: Annotated[str | None, typer.Option(help="The authority.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a permit, a principal or a runtime: signed, logged, pushed to guards at once."""
    from fiat.api.client import AuthorityClient
    from fiat.api.credentials import ensure_admin_token

    chosen = [(k, v) for k, v in (("permit", permit), ("principal", principal), ("runtime", runtime)) if v]
    if len(chosen) != 1:
        fail(EXIT_INVALID, "give exactly one of --permit, --principal or --runtime")
    kind, target = chosen[0]
    assert target is not None
    with errors_to_exit():
        cfg = config(home)
        with authority_errors(), AuthorityClient(server_url(cfg, url)) as client:
            result = client.revoke(ensure_admin_token(cfg.keys_dir), kind, target, reason)
    if as_json:
        emit_json(result)
        return
    out.print(f"revoked {kind} {target}: revocation epoch {result['revocationEpoch']}, log index {result['logIndex']}")


def enroll_cmd(
    role: Annotated[str, typer.Option(help="runtime, approver or witness.")],
    name: Annotated[str, typer.Option(help="The node, person or witness name.")],
    public_key: Annotated[str, typer.Option(help="Ed25519 public key, base64url (43 characters).")],
    group: GroupOpt = None,
    identity: IdentityOpt = None,
    url: Annotated[str | None, typer.Option(help="The authority.")] = None,
    home: HomeOpt = None,
) -> None:
    """Enroll a remote runtime's or approver's public key with the authority (admin); an approver's
    with the approver groups it belongs to (--group) and who holds it (--identity)."""
    from fiat.api.client import AuthorityClient
    from fiat.api.credentials import ensure_admin_token

    groups = tuple(group or ())
    if role != "approver" and (groups or identity is not None):
        fail(EXIT_INVALID, "--group and --identity belong to approver keys (--role approver)")
    with errors_to_exit():
        cfg = config(home)
        with authority_errors(), AuthorityClient(server_url(cfg, url)) as client:
            rec = client.enroll(ensure_admin_token(cfg.keys_dir), role, name, public_key, groups, identity)
    out.print(f"enrolled {role} {name}: {rec['kid']}")
    if role == "approver":
        groups_text = ", ".join(rec.get("groups", [])) or "none"
        out.print(escape(f"groups: {groups_text}; identity: {rec.get('identity') or 'user:' + name}"))


def register_authorize(app: typer.Typer) -> None:
    app.command("authorize")(authorize_cmd)


def register_admin(app: typer.Typer) -> None:
    app.command("revoke")(revoke_cmd)
    app.command("enroll")(enroll_cmd)
