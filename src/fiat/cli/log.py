"""``fiat log …``: the transparency log — append, serve, prove, verify, read an entry."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from fiat.cli.common import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INVALID,
    HomeOpt,
    JsonOpt,
    config,
    emit_json,
    err,
    errors_to_exit,
    fail,
    home_log,
    out,
    parse_vkey,
    read_input,
)
from fiat.config import Config
from fiat.errors import AuditError, EntryTooLargeError, FiatError, MalformedError, VerificationError

log_app = typer.Typer(help="The transparency log: append, serve, prove, verify.", no_args_is_help=True)


@log_app.command("vkey")
def log_vkey(home: HomeOpt = None) -> None:
    """Print the log's verifier key: <origin>+<hex key ID>+<base64(0x01 || public key)>."""
    from fiat.home import log_signer

    with errors_to_exit():
        sys.stdout.write(log_signer(config(home)).verifier.encode() + "\n")


@log_app.command("checkpoint")
def log_checkpoint(home: HomeOpt = None) -> None:
    """Print the latest signed checkpoint."""
    with errors_to_exit(), home_log(config(home)) as log:
        sys.stdout.write(log.checkpoint().note_bytes.decode("utf-8"))


@log_app.command("append")
def log_append(
    files: Annotated[list[Path] | None, typer.Argument(help="Files; each file's bytes become one entry.")] = None,
    home: HomeOpt = None,
    lines: Annotated[bool, typer.Option("--lines", help="Append each line of stdin as one entry.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Append entries durably; print each entry's index once it is covered by a signed checkpoint."""
    from fiat.tlog.tiles import check_entry

    files = files or []
    if lines and files:
        fail(EXIT_INVALID, "give FILE arguments or --lines, not both")
    if not lines and not files:
        fail(EXIT_INVALID, "nothing to append", "pass one or more FILEs, or --lines to read entries from stdin")
    entries: list[bytes] = []
    names: list[str] = []
    if lines:
        for i, line in enumerate(sys.stdin.buffer.read().splitlines()):
            entries.append(line)
            names.append(f"stdin:{i + 1}")
    else:
        for f in files:
            try:
                entries.append(f.read_bytes())
            except OSError as exc:
                fail(EXIT_INVALID, f"cannot read {f}: {exc.strerror}")
            names.append(str(f))
    with errors_to_exit():
        for name, e in zip(names, entries, strict=True):
            try:
                check_entry(e)
            except EntryTooLargeError as exc:
                raise EntryTooLargeError(f"{name}: {exc}") from None
        with home_log(config(home)) as log:
            results = log.append_many(entries) if entries else []
    if as_json:
        emit_json(
            {
                "indexes": [r.index for r in results],
                "entries": [{"source": n, "index": r.index} for n, r in zip(names, results, strict=True)],
                "checkpoint": results[-1].checkpoint.note_bytes.decode() if results else None,
            }
        )
        return
    for r in results:
        out.print(r.index)


@log_app.command("serve")
def log_serve(
    home: HomeOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: server.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: server.port, 8750).")] = None,
) -> None:
    """Serve the log over HTTP per C2SP tlog-tiles under /log."""
    with errors_to_exit():
        cfg = config(home)
        serve_log(cfg, host or cfg.server.host, cfg.server.port if port is None else port)


def serve_log(cfg: Config, host: str, port: int, before: Callable[[str, str], None] | None = None) -> None:
    """Bind ``host``:``port`` (0: any free port), then say where the log is served, then serve it."""
    from fiat.api.routes.log import create_log_app
    from fiat.serving import Drain, bind, check_tls, run_server, url_host

    if cfg.tls is not None:
        check_tls(*cfg.tls)  # server.tls_cert/tls_key: HTTPS, as for `fiat serve`
    from fiat.wiring import open_witnessing

    with home_log(cfg) as log:
        app_ = create_log_app(log)
        witnessing = open_witnessing(cfg, log)  # the home's witnesses cosign what this server serves
        vkey = log.verifier.encode()
        sock = bind(host, port)
        scheme = "https" if cfg.tls is not None else "http"
        url = f"{scheme}://{url_host(host)}:{sock.getsockname()[1]}/log"
        if before:
            before(url, vkey)
        err.print(f"serving the log at {url}")
        err.print(f"verifier key: {vkey}")
        if witnessing is not None:
            witnessing.start()
        try:
            started = run_server(app_, sock, Drain(cfg.server.drain_s), tls=cfg.tls)  # reads in flight finish
        finally:
            if witnessing is not None:
                witnessing.close()
        if not started:
            fail(EXIT_ERROR, "the log server did not start; see the messages above")


@log_app.command("proof")
def log_proof(
    index: Annotated[int, typer.Argument(help="Index of the entry to prove.")],
    home: HomeOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
) -> None:
    """Write a c2sp.org/tlog-proof@v1 file for an entry against the latest checkpoint (with witnesses:
    the newest checkpoint their quorum cosigned, when it covers the entry, cosignatures included)."""
    from fiat.tlog.proof_file import TlogProof

    with errors_to_exit(), home_log(config(home)) as log:
        witnessed = log.witnessed_checkpoint()
        try:
            if witnessed is not None and 0 <= index < witnessed.size:
                path, cp = log.inclusion_proof(index, witnessed.size)[0], witnessed
            else:
                path, cp = log.inclusion_proof(index)
        except IndexError as exc:
            fail(EXIT_INVALID, str(exc), "`fiat log checkpoint` shows the current tree size")
    data = TlogProof(index, tuple(path), cp.note_bytes).encode()
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        output.write_bytes(data)
        err.print(f"wrote {output} (entry {index} in the tree of size {cp.size})")


@log_app.command("entry")
def log_entry(
    index: Annotated[int, typer.Argument(help="Index of the entry.")],
    home: HomeOpt = None,
    decode: Annotated[
        bool, typer.Option("--decode", help="Print the decoded permit (JWS header and claims) or statement as JSON.")
    ] = False,
) -> None:
    """Print an entry's exact bytes (what its leaf hash covers), or with --decode what it says."""
    with errors_to_exit(), home_log(config(home)) as log:
        size = log.checkpoint().size
        if not 0 <= index < size:
            fail(EXIT_INVALID, f"no entry {index}: the log has {size} entries", "`fiat log checkpoint` shows its size")
        data = log.read_entries(index, index + 1)[0]
    if not decode:
        sys.stdout.buffer.write(data)
        return
    try:
        decoded = decode_entry(data)
    except MalformedError as exc:
        fail(EXIT_INVALID, f"entry {index} is neither a permit (JWS) nor a DSSE statement: {exc}")
    emit_json({"index": index, **decoded})


def decode_entry(data: bytes) -> dict[str, Any]:
    """What a Fiat log entry holds: a permit (compact JWS, RFC 7515 §7.1) or a DSSE envelope
    carrying an in-toto statement. Decoded only; signatures are for ``fiat verify`` to check."""
    from fiat.formats import jws
    from fiat.formats.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
    from fiat.formats.encoding import loads_strict

    if data[:1] == b"{":
        env = Envelope.parse(data)
        payload: Any = env.payload.decode("utf-8", "replace")
        if env.payload_type in (IN_TOTO_PAYLOAD_TYPE, "application/json"):
            payload = loads_strict(env.payload, "DSSE payload")
        return {
            "kind": "statement",
            "payloadType": env.payload_type,
            "signatures": [{"keyid": s.keyid} for s in env.signatures],
            "statement": payload,
        }
    try:
        token = data.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedError("log entry", "not ASCII, so not a compact JWS") from None
    parsed = jws.parse(token)
    return {"kind": "permit", "header": parsed.header, "claims": parsed.claims}


@log_app.command("verify-proof")
def log_verify_proof(
    proof: Annotated[Path, typer.Argument(help="A c2sp.org/tlog-proof@v1 file (- for stdin).")],
    vkey: Annotated[str, typer.Option(help="The log's verifier key (or a file holding it).")],
    entry: Annotated[Path, typer.Option(help="The entry's exact bytes.")],
    witness: Annotated[
        list[str] | None,
        typer.Option(help="A trusted witness's cosigner vkey (`fiat witness vkey`); repeat for each."),
    ] = None,
    quorum: Annotated[int, typer.Option(help="How many of the --witness keys must have cosigned.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Verify a tlog-proof offline: exit 0, or 1 naming the failing rule (2 for malformed input)."""
    from fiat.tlog.proof_file import TlogProof, verify_proof
    from fiat.verify.trust_root import parse_cosigner_vkey

    verifier = parse_vkey(vkey)
    proof_bytes = read_input(proof, "proof")
    entry_bytes = read_input(entry, "entry")
    witnesses: list[tuple[str, bytes]] = []
    try:
        witnesses = [parse_cosigner_vkey(w) for w in witness or ()]
    except MalformedError as exc:
        fail(EXIT_INVALID, f"--witness: {exc}", "pass the vkey `fiat witness vkey` prints (type 0x04)")
    if not 0 <= quorum <= len(witnesses):
        fail(EXIT_INVALID, f"--quorum {quorum} needs at least that many --witness keys (given: {len(witnesses)})")
    try:
        parsed = TlogProof.parse(proof_bytes)
        result = verify_proof(parsed, entry_bytes, verifier, witnesses, quorum)
    except VerificationError as exc:
        if as_json:
            emit_json({"verified": False, "step": exc.step, "reason": exc.reason})
            raise typer.Exit(EXIT_FAILED) from None
        fail(EXIT_FAILED, f"verification failed at step '{exc.step}': {exc.reason}")
    except MalformedError as exc:
        if as_json:
            emit_json({"verified": False, "step": "parse", "reason": str(exc)})
            raise typer.Exit(EXIT_INVALID) from None
        fail(EXIT_INVALID, str(exc))
    if as_json:
        emit_json(
            {
                "verified": True,
                "origin": result.checkpoint.origin,
                "index": result.index,
                "treeSize": result.checkpoint.size,
                "cosigners": list(result.cosigners),
                "steps": list(result.steps),
            }
        )
        return
    for step in result.steps:
        out.print(f"[green]✓[/] {step}")
    witnessed = f", witnessed by {len(result.cosigners)} of {len(witnesses)}" if witnesses else ""
    out.print(
        f"verified: entry {result.index} is in {result.checkpoint.origin} at tree size {result.checkpoint.size}"
        + witnessed
    )


@log_app.command("verify")
def log_verify(
    url: Annotated[str, typer.Option(help="The log's prefix URL, e.g. http://127.0.0.1:8750/log.")],
    vkey: Annotated[
        list[str], typer.Option(help="The log's verifier key (or a file holding it); repeat for rotated keys.")
    ],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Audit a remote log: fetch every tile and entry bundle, recompute the root, check consistency."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fiat.config import resolve_home
    from fiat.prove.audit import HttpFetcher, audit_log, load_remembered, remember

    verifiers = [parse_vkey(v) for v in vkey]
    if len({v.name for v in verifiers}) != 1:
        fail(EXIT_INVALID, "all --vkey values must belong to one log (one origin)")
    verifier = verifiers[0]
    audit_dir = resolve_home(home) / "audit"
    previous = load_remembered(audit_dir, verifier.name)
    fetcher = HttpFetcher(url)
    progress = Progress(
        TextColumn("auditing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=as_json or not err.is_terminal,
    )
    task = progress.add_task("audit", total=None)

    def tick(total: int, done: int) -> None:
        progress.update(task, total=total, completed=done)

    try:
        with progress:
            report, cp = audit_log(fetcher, verifiers, previous, tick)
    except VerificationError as exc:
        if as_json:
            emit_json({"verified": False, "step": exc.step, "reason": exc.reason})
            raise typer.Exit(EXIT_FAILED) from None
        fail(EXIT_FAILED, f"audit failed at step '{exc.step}': {exc.reason}")
    except (AuditError, FiatError) as exc:
        if as_json:
            emit_json({"verified": False, "step": "fetch", "reason": str(exc)})
            raise typer.Exit(EXIT_ERROR) from None
        fail(EXIT_ERROR, str(exc), "is the URL the log's prefix (ending in /log) and is the log up?")
    finally:
        fetcher.close()
    remember(audit_dir, cp)
    from fiat.tlog.note import b64

    if as_json:
        emit_json(
            {
                "verified": True,
                "origin": report.origin,
                "treeSize": report.size,
                "root": b64(report.root),
                "previousSize": report.previous_size,
                "tiles": report.tiles,
                "entryBundles": report.bundles,
                "steps": list(report.steps),
            }
        )
        return
    for step in report.steps:
        out.print(f"[green]✓[/] {step}")
    since = "" if report.previous_size is None else f", consistent with size {report.previous_size} seen before"
    out.print(
        f"verified {report.origin}: {report.size} entries, {report.tiles} tiles, {report.bundles} entry bundles{since}"
    )
