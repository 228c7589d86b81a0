"""``fiat keys …`` and ``fiat trust-root export``: the home's keys and the trust root made of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fiat.cli.common import (
    EXIT_INVALID,
    GroupOpt,
    HomeOpt,
    IdentityOpt,
    JsonOpt,
    config,
    emit_json,
    errors_to_exit,
    fail,
    out,
    write_output,
)
from fiat.errors import MalformedError

keys_app = typer.Typer(help="Keys by role (authority, log, runtime, approver, witness).", no_args_is_help=True)
trust_app = typer.Typer(help="The trust root a relying party verifies against.", no_args_is_help=True)


@keys_app.command("list")
def keys_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List every key of the home with its role, ID and validity period."""
    from fiat.home import keyring

    with errors_to_exit():
        ring = keyring(config(home))
    rows = [r.to_json() for r in ring.records]
    if as_json:
        emit_json({"keys": rows})
        return
    for r in ring.records:
        period = r.trusted().period()
        mine = "private key held" if r.file else "public only"
        who = ""
        if r.role == "approver":
            who = f"  identity {r.identity or 'user:' + r.name}, groups {','.join(r.groups) or 'none'}"
        if r.role == "witness" and r.url:
            who = f"  submits to {r.url}"
        out.print(f"{r.role:<10} {r.kid}  {r.name:<24} {period}  ({mine}){escape(who)}")


@keys_app.command("add")
def keys_add(
    role: Annotated[str, typer.Option(help="runtime, approver or witness.")],
    name: Annotated[str, typer.Option(help="Who holds it: a node, a person, a witness name.")],
    group: GroupOpt = None,
    identity: IdentityOpt = None,
    vkey: Annotated[
        str | None,
        typer.Option(help="A witness's cosigner vkey (`fiat witness vkey`): register its public key only."),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="A witness's C2SP tlog-witness URL prefix (the log submits there).")
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new key for a role in this home (0600 PKCS#8 PEM) and register it; or, with --vkey,
    register a witness's public key (its private half stays with the witness)."""
    from fiat.home import keyring
    from fiat.keys.keyring import now_second
    from fiat.verify.trust_root import check_witness_name, check_witness_url, parse_cosigner_vkey

    if role not in ("runtime", "approver", "witness"):
        fail(EXIT_INVALID, f"keys of role {role!r} are created by `fiat init` or rotated with `fiat keys rotate`")
    groups = tuple(group or ())
    if role != "approver" and (groups or identity is not None):
        fail(EXIT_INVALID, "--group and --identity belong to approver keys (--role approver)")
    if role != "witness" and (vkey is not None or url is not None):
        fail(EXIT_INVALID, "--vkey and --url belong to witness keys (--role witness)")
    with errors_to_exit():
        if url is not None:
            check_witness_url(url, "--url")
        cfg = config(home)
        if role == "witness":
            try:
                check_witness_name(name, cfg.log.origin)
            except MalformedError as exc:
                fail(
                    EXIT_INVALID,
                    f"{name!r} is the log's own origin: {exc.reason}",
                    "name the witness after itself, e.g. witness.example/w1",
                )
        ring = keyring(cfg)
        if vkey is not None:
            vkey_name, public = parse_cosigner_vkey(vkey)
            if vkey_name != name:
                fail(
                    EXIT_INVALID,
                    f"the vkey is for the witness {vkey_name!r}, not {name!r}: its cosignatures carry that name; "
                    f"pass --name {vkey_name}",
                )
            rec = ring.add_public(role, name, public, now_second(), url=url)
        else:
            rec, _ = ring.create(role, name, approver=(groups, identity) if role == "approver" else None)
            if url is not None:
                rec = ring.add_public(role, name, rec.public_key, rec.valid_from, url=url)
        ring.save()
    if as_json:
        emit_json(rec.to_json())
        return
    if rec.file is None:
        out.print(
            f"registered witness key {rec.kid} for {escape(name)} (public only)"
            + (f", submitting to {escape(rec.url)}" if rec.url else "")
        )
        return
    out.print(f"created {role} key {rec.kid} for {escape(name)} (keys/{rec.file})")
    if role == "approver":
        out.print(
            f"identity {escape(rec.identity or 'user:' + name)} (never approves its own requests); groups: "
            + (escape(", ".join(groups)) if groups else "none (it decides only @approval naming no group; add --group)")
        )


@keys_app.command("rotate")
def keys_rotate(
    role: Annotated[str, typer.Option(help="authority, log, runtime, approver or witness.")],
    name: Annotated[str | None, typer.Option(help="Which key, when several of the role are active.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rotate a key: the new key becomes active now; the old one keeps verifying what it signed before.

    The rotation is a key-rotation statement signed by both keys and appended to the log.
    """
    from fiat.home import keyring
    from fiat.keys.rotation import rotate_key
    from fiat.wiring import open_evidence

    with errors_to_exit():
        cfg = config(home)
        ring = keyring(cfg)
        ring.signing_key(role, name)  # refuse before opening the log when there is no such key
        recorder = open_evidence(cfg)  # opened before the ring is saved: signs with the retiring log key
        try:
            rotation = rotate_key(ring, recorder, role, name)
        finally:
            recorder.close()
    if as_json:
        emit_json({"old": rotation.old.to_json(), "new": rotation.new.to_json(), "logIndex": rotation.log_index})
        return
    new = rotation.new
    out.print(f"rotated {role} key for {new.name}: {rotation.old.kid} (valid until now) -> {new.kid}")
    out.print(f"the rotation statement is log entry {rotation.log_index}; re-export the trust root")


@trust_app.command("export")
def trust_root_export(
    home: HomeOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
    witness_quorum: Annotated[
        int | None,
        typer.Option(help="Witness cosignatures required per checkpoint (default: log.witness_quorum)."),
    ] = None,
) -> None:
    """Write trust-root.json: the public keys by role with validity periods, the log, the witness quorum."""
    from fiat.home import trust_root

    with errors_to_exit():
        cfg = config(home)
        root = trust_root(cfg, witness_quorum)
        if root.witness_quorum < 0:
            fail(EXIT_INVALID, "the witness quorum cannot be negative")
        if root.witness_quorum > len(root.by_role("witness")):
            fail(
                EXIT_INVALID,
                f"a quorum of {root.witness_quorum} needs that many witness keys; `fiat keys add --role witness`",
            )
    write_output(json.dumps(root.to_json(), indent=2) + "\n", output)
