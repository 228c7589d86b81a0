"""The ``fiat`` command line.

Exit codes (stable, documented in README.md):

* 0 — success / verified
* 1 — verification failed (the failing rule is named)
* 2 — invalid input or usage (malformed file, bad argument)
* 3 — operational error (no home, storage or network failure)
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fiat import __version__
from fiat.config import Config, load_config
from fiat.errors import (
    AuditError,
    ConfigError,
    EntryTooLargeError,
    FiatError,
    KeyFileError,
    MalformedError,
    StorageError,
    VerificationError,
)
from fiat.logs import setup_logging

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_ERROR = 0, 1, 2, 3

app = typer.Typer(
    name="fiat",
    help="Fiat: cryptographically governed runtime trust. Authorize, verify continuously, fail closed, prove.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log_app = typer.Typer(help="The transparency log: append, serve, prove, verify.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks, each beside a floor measured in the same run.", no_args_is_help=True)
keys_app = typer.Typer(help="Keys by role (authority, log, runtime, approver, witness).", no_args_is_help=True)
trust_app = typer.Typer(help="The trust root a relying party verifies against.", no_args_is_help=True)
policy_app = typer.Typer(help="Cedar policy bundles: validate, test, publish, history.", no_args_is_help=True)
app.add_typer(log_app, name="log")
app.add_typer(policy_app, name="policy")
app.add_typer(keys_app, name="keys")
app.add_typer(trust_app, name="trust-root")
app.add_typer(bench_app, name="bench")

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Fiat home directory (default: $FIAT_HOME, else ./.fiat).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]

F = TypeVar("F", bound=Callable[..., Any])


def fail(code: int, message: str, hint: str | None = None) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}")
    raise typer.Exit(code)


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """Map Fiat's exceptions onto the documented exit codes with an actionable message."""
    try:
        yield
    except VerificationError as exc:
        fail(EXIT_FAILED, f"verification failed at step '{exc.step}': {exc.reason}")
    except (MalformedError, EntryTooLargeError) as exc:
        fail(EXIT_INVALID, str(exc))
    except ConfigError as exc:
        fail(EXIT_ERROR, str(exc), "see `fiat init --help`; settings live in fiat.toml or FIAT_<SECTION>_<KEY>")
    except KeyFileError as exc:
        fail(EXIT_ERROR, str(exc))
    except (StorageError, AuditError) as exc:
        fail(EXIT_ERROR, str(exc))
    except FiatError as exc:
        fail(EXIT_ERROR, str(exc))


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _config(home: Path | None) -> Config:
    return load_config(home, require=True)


@app.callback()
def _root(
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "warning",
    log_format: Annotated[str, typer.Option(help="text or json (one object per line on stderr).")] = "text",
) -> None:
    if log_format not in ("text", "json"):
        fail(EXIT_INVALID, f"--log-format must be text or json, not {log_format!r}")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail(EXIT_INVALID, f"--log-level must be debug, info, warning or error, not {log_level!r}")
    setup_logging(log_level, log_format)


@app.command()
def version() -> None:
    """Print Fiat's version."""
    out.print(__version__)


@app.command()
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


# -- fiat log ---------------------------------------------------------------------


@log_app.command("vkey")
def log_vkey(home: HomeOpt = None) -> None:
    """Print the log's verifier key: <origin>+<hex key ID>+<base64(0x01 || public key)>."""
    from fiat.home import log_signer

    with errors_to_exit():
        sys.stdout.write(log_signer(_config(home)).verifier.encode() + "\n")


@log_app.command("checkpoint")
def log_checkpoint(home: HomeOpt = None) -> None:
    """Print the latest signed checkpoint."""
    from fiat.wiring import open_log

    with errors_to_exit():
        log = open_log(_config(home))
        try:
            sys.stdout.write(log.checkpoint().note_bytes.decode("utf-8"))
        finally:
            log.close()
            log.store.close()


@log_app.command("append")
def log_append(
    files: Annotated[list[Path] | None, typer.Argument(help="Files; each file's bytes become one entry.")] = None,
    home: HomeOpt = None,
    lines: Annotated[bool, typer.Option("--lines", help="Append each line of stdin as one entry.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Append entries durably; print each entry's index once it is covered by a signed checkpoint."""
    from fiat.tlog.tiles import check_entry
    from fiat.wiring import open_log

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
        log = open_log(_config(home))
        try:
            results = log.append_many(entries) if entries else []
        finally:
            log.close()
            log.store.close()
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
        cfg = _config(home)
        serve_log(cfg, host or cfg.server.host, cfg.server.port if port is None else port)


def serve_log(cfg: Config, host: str, port: int, before: Callable[[str, str], None] | None = None) -> None:
    import uvicorn

    from fiat.api.routes.log import create_log_app
    from fiat.wiring import open_log

    log = open_log(cfg)
    try:
        app_ = create_log_app(log)
        vkey = log.verifier.encode()
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{port}/log"
        if before:
            before(url, vkey)
        config = uvicorn.Config(app_, host=host, port=port, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        if port == 0:
            # Report the port the OS picked once the socket is bound.
            import socket

            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            port = sock.getsockname()[1]
            url = f"http://{shown_host}:{port}/log"
            err.print(f"serving the log at {url}")
            err.print(f"verifier key: {vkey}")
            server.run(sockets=[sock])
        else:
            err.print(f"serving the log at {url}")
            err.print(f"verifier key: {vkey}")
            server.run()
    finally:
        log.close()
        log.store.close()


@log_app.command("proof")
def log_proof(
    index: Annotated[int, typer.Argument(help="Index of the entry to prove.")],
    home: HomeOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
) -> None:
    """Write a c2sp.org/tlog-proof@v1 file for an entry against the latest checkpoint."""
    from fiat.tlog.proof_file import TlogProof
    from fiat.wiring import open_log

    with errors_to_exit():
        log = open_log(_config(home))
        try:
            try:
                path, cp = log.inclusion_proof(index)
            except IndexError as exc:
                fail(EXIT_INVALID, str(exc), "`fiat log checkpoint` shows the current tree size")
        finally:
            log.close()
            log.store.close()
    data = TlogProof(index, tuple(path), cp.note_bytes).encode()
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        output.write_bytes(data)
        err.print(f"wrote {output} (entry {index} in the tree of size {cp.size})")


def _read_input(path: Path, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        fail(EXIT_INVALID, f"cannot read the {what} {path}: {exc.strerror}")


def _parse_vkey(vkey: str) -> Any:
    from fiat.tlog.note import Verifier

    text = vkey
    if "+" not in vkey and Path(vkey).is_file():
        text = Path(vkey).read_text(encoding="utf-8").strip()
    try:
        return Verifier.parse(text)
    except MalformedError as exc:
        fail(EXIT_INVALID, str(exc), "a verifier key looks like origin+1a2b3c4d+AbC...; `fiat log vkey` prints it")


@log_app.command("verify-proof")
def log_verify_proof(
    proof: Annotated[Path, typer.Argument(help="A c2sp.org/tlog-proof@v1 file (- for stdin).")],
    vkey: Annotated[str, typer.Option(help="The log's verifier key (or a file holding it).")],
    entry: Annotated[Path, typer.Option(help="The entry's exact bytes.")],
    as_json: JsonOpt = False,
) -> None:
    """Verify a tlog-proof offline: exit 0, or 1 naming the failing rule (2 for malformed input)."""
    from fiat.tlog.proof_file import TlogProof, verify_proof

    verifier = _parse_vkey(vkey)
    proof_bytes = _read_input(proof, "proof")
    entry_bytes = _read_input(entry, "entry")
    try:
        parsed = TlogProof.parse(proof_bytes)
        result = verify_proof(parsed, entry_bytes, verifier)
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
                "tree_size": result.checkpoint.size,
                "steps": list(result.steps),
            }
        )
        return
    for step in result.steps:
        out.print(f"[green]✓[/] {step}")
    out.print(f"verified: entry {result.index} is in {result.checkpoint.origin} at tree size {result.checkpoint.size}")


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

    verifiers = [_parse_vkey(v) for v in vkey]
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
                "tree_size": report.size,
                "root": b64(report.root),
                "previous_size": report.previous_size,
                "tiles": report.tiles,
                "entry_bundles": report.bundles,
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


# -- fiat keys / trust-root / verify / bundle -----------------------------------------------


@keys_app.command("list")
def keys_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List every key of the home with its role, ID and validity period."""
    from fiat.home import keyring

    with errors_to_exit():
        ring = keyring(_config(home))
    rows = [r.to_json() for r in ring.records]
    if as_json:
        emit_json({"keys": rows})
        return
    for r in ring.records:
        period = r.trusted().period()
        mine = "private key held" if r.file else "public only"
        out.print(f"{r.role:<10} {r.kid}  {r.name:<24} {period}  ({mine})")


@keys_app.command("add")
def keys_add(
    role: Annotated[str, typer.Option(help="runtime, approver or witness.")],
    name: Annotated[str, typer.Option(help="Who holds it: a node, a person, a witness name.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new key for a role in this home (0600 PKCS#8 PEM) and register it."""
    from fiat.home import keyring

    if role not in ("runtime", "approver", "witness"):
        fail(EXIT_INVALID, f"keys of role {role!r} are created by `fiat init` or rotated with `fiat keys rotate`")
    with errors_to_exit():
        ring = keyring(_config(home))
        rec, _ = ring.create(role, name)
        ring.save()
    if as_json:
        emit_json(rec.to_json())
        return
    out.print(f"created {role} key {rec.kid} for {name} (keys/{rec.file})")


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
    from fiat.prove.evidence import key_rotation_statement, sign_statement
    from fiat.wiring import open_evidence

    with errors_to_exit():
        cfg = _config(home)
        ring = keyring(cfg)
        old, old_key = ring.signing_key(role, name)
        old_rec, new_rec, new_key = ring.rotate(role, name)
        statement = key_rotation_statement(
            role=role,
            name=new_rec.name,
            old_kid=old.kid,
            new_kid=new_rec.kid,
            new_public_key=new_rec.public_key,
            at=new_rec.valid_from,
        )
        # Signed by the retiring key (authorising its successor) and the new key (proving possession);
        # a rotation of a non-authority key is also countersigned by the authority.
        signers = [(old.kid, old_key), (new_rec.kid, new_key)]
        if role != "authority":
            auth, auth_key = ring.signing_key("authority")
            signers.append((auth.kid, auth_key))
        envelope = sign_statement(statement, signers)
        recorder = open_evidence(cfg)  # still signing checkpoints with the retiring log key
        try:
            result = recorder.record_statement(envelope)
        finally:
            recorder.close()
        if role == "log":
            # Checkpoints carry no time: the retired log key is trusted only up to the tree it signed
            # last, which is the one that logs its own retirement.
            old_rec = dataclasses.replace(old_rec, max_tree_size=result.checkpoint.size)
            ring.records = [old_rec if r.kid == old_rec.kid else r for r in ring.records]
        ring.save()
    if as_json:
        emit_json({"old": old_rec.to_json(), "new": new_rec.to_json(), "logIndex": result.index})
        return
    out.print(f"rotated {role} key for {new_rec.name}: {old.kid} (valid until now) -> {new_rec.kid}")
    out.print(f"the rotation statement is log entry {result.index}; re-export the trust root")


@trust_app.command("export")
def trust_root_export(
    home: HomeOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
    witness_quorum: Annotated[int, typer.Option(help="Witness cosignatures required per checkpoint.")] = 0,
) -> None:
    """Write trust-root.json: the public keys by role with validity periods, the log, the witness quorum."""
    from fiat.home import trust_root

    with errors_to_exit():
        cfg = _config(home)
        root = trust_root(cfg, witness_quorum)
        if witness_quorum > len(root.by_role("witness")):
            fail(
                EXIT_INVALID,
                f"a quorum of {witness_quorum} needs that many witness keys; `fiat keys add --role witness`",
            )
    data = json.dumps(root.to_json(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(data)
    else:
        output.write_text(data, encoding="utf-8")
        err.print(f"wrote {output}")


@app.command("bundle")
def bundle_export(
    permit_id: Annotated[str, typer.Argument(help="The permit id (jti) of the execution.")],
    home: HomeOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
) -> None:
    """Assemble the evidence bundle of one execution from the log (with its lineage ancestors)."""
    from fiat.wiring import open_evidence

    with errors_to_exit():
        recorder = open_evidence(_config(home))
        try:
            bundle = recorder.bundle(permit_id)
        finally:
            recorder.close()
    data = json.dumps(bundle.to_json(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(data)
    else:
        output.write_text(data, encoding="utf-8")
        err.print(f"wrote {output}")


@app.command("verify")
def verify_cmd(
    bundle: Annotated[Path, typer.Argument(help="An evidence bundle (application/vnd.fiat.bundle.v1+json).")],
    trust_root_file: Annotated[Path, typer.Option("--trust-root", help="The trust-root.json to verify against.")],
    as_json: JsonOpt = False,
) -> None:
    """Verify an execution's evidence offline. Exit 0 verified, 1 a step failed, 2 unreadable input."""
    from fiat.verify import Bundle, TrustRoot, verify

    raw_bundle = _read_input(bundle, "bundle")
    raw_root = _read_input(trust_root_file, "trust root")
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
            out.print(f"[bold green]verified[/]: execution {escape(str(result.permit_id))}")
        else:
            failed = result.failed
            out.print(f"[bold red]NOT verified[/]: failed at {failed.name if failed else '?'}")
    if not result.verified:
        raise typer.Exit(EXIT_FAILED)


# -- fiat policy / serve / authorize / approve / revoke -----------------------------------------------


def _bundle_or_fail(directory: Path) -> Any:
    from fiat.authorize.policy import PolicyError, load_bundle

    try:
        return load_bundle(directory)
    except PolicyError as exc:
        fail(EXIT_INVALID, str(exc))


@policy_app.command("validate")
def policy_validate(directory: Annotated[Path, typer.Argument(help="The policy bundle directory.")]) -> None:
    """Parse the bundle and validate every policy against its Cedar schema."""
    bundle = _bundle_or_fail(directory)
    errors = bundle.validate()
    if errors:
        for e in errors:
            err.print(f"[red]✗[/] {e}")
        fail(EXIT_FAILED, f"{len(errors)} validation error(s) in {directory}")
    out.print(f"[green]✓[/] {len(bundle.policy_names())} policies valid against the schema; digest {bundle.digest}")


@policy_app.command("test")
def policy_test(
    directory: Annotated[Path, typer.Argument(help="The policy bundle directory.")],
    cases: Annotated[Path | None, typer.Option(help="Cases file (default: DIR/tests.json).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run request → expected-decision cases against the bundle; show a diff for each failure."""
    from fiat.authorize.policy import PolicyError, run_cases

    bundle = _bundle_or_fail(directory)
    path = cases or directory / "tests.json"
    try:
        results = run_cases(bundle, json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, PolicyError) as exc:
        fail(EXIT_INVALID, f"cannot run the cases in {path}: {exc}")
    failed = [r for r in results if not r.passed]
    if as_json:
        emit_json(
            {
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "cases": [
                    {"name": r.name, "expected": r.expected, "got": r.got, "determining": list(r.determining)}
                    for r in results
                ],
            }
        )
    else:
        for r in results:
            if r.passed:
                out.print(f"[green]✓[/] {r.name}: {r.got}")
            else:
                out.print(f"[red]✗[/] {r.name}")
                out.print(f"    [red]- expected: {r.expected}[/]")
                out.print(f"    [green]+ got:      {r.got}[/] (determining: {', '.join(r.determining) or 'none'})")
                for e in r.errors:
                    out.print(f"      error: {e}")
        out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@policy_app.command("publish")
def policy_publish(
    directory: Annotated[Path, typer.Argument(help="The policy bundle directory.")],
    home: HomeOpt = None,
    url: Annotated[str | None, typer.Option(help="Publish through a running server instead of the home.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate and publish: a new version, its digest, a signed policy statement in the log."""
    import base64

    from fiat.authorize.policy import PolicyError, read_bundle_files
    from fiat.wiring import open_authority

    with errors_to_exit():
        cfg = _config(home)
        if url:
            from fiat.api.client import AuthorityClient
            from fiat.api.credentials import ensure_admin_token

            files = {k: base64.b64encode(v).decode() for k, v in read_bundle_files(directory).items()}
            with AuthorityClient(url) as client:
                result = client.publish(ensure_admin_token(cfg.keys_dir), files)
            version, digest, index = result["version"], result["digest"], result["logIndex"]
        else:
            authority = open_authority(cfg)
            try:
                version, digest, index = authority.publish_policy(directory)
            except PolicyError as exc:
                fail(EXIT_INVALID, str(exc))
            finally:
                authority.close()
    if as_json:
        emit_json({"version": version, "digest": digest, "logIndex": index})
        return
    out.print(f"published policy version {version} ({digest}); policy statement at log index {index}")


@policy_app.command("history")
def policy_history(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every published version, kept for audit and diff."""
    from fiat.formats.encoding import rfc3339
    from fiat.wiring import open_authority_store

    with errors_to_exit():
        store = open_authority_store(_config(home))
        rows = store.policy_history()
        store.close()
    if as_json:
        emit_json(
            [
                {
                    "version": r.version,
                    "digest": r.digest,
                    "publishedAt": rfc3339(r.published_at),
                    "logIndex": r.log_index,
                }
                for r in rows
            ]
        )
        return
    for r in rows:
        out.print(f"v{r.version}  {rfc3339(r.published_at)}  {r.digest}  log #{r.log_index}")


@policy_app.command("diff")
def policy_diff(
    old: Annotated[int, typer.Argument(help="Older version.")],
    new: Annotated[int, typer.Argument(help="Newer version.")],
    home: HomeOpt = None,
) -> None:
    """A unified diff between two published versions."""
    import base64
    import difflib

    from fiat.wiring import open_authority_store

    with errors_to_exit():
        store = open_authority_store(_config(home))
        a, b = store.policy(old), store.policy(new)
        store.close()
    if a is None or b is None:
        fail(EXIT_INVALID, f"version {old if a is None else new} was never published; see `fiat policy history`")
    fa = {k: base64.b64decode(v).decode() for k, v in json.loads(a.files).items()}
    fb = {k: base64.b64decode(v).decode() for k, v in json.loads(b.files).items()}
    for name in sorted(set(fa) | set(fb)):
        lines = difflib.unified_diff(
            fa.get(name, "").splitlines(keepends=True),
            fb.get(name, "").splitlines(keepends=True),
            f"v{old}/{name}",
            f"v{new}/{name}",
        )
        sys.stdout.writelines(lines)


@app.command("serve")
def serve(
    home: HomeOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: server.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: server.port, 8750).")] = None,
) -> None:
    """Serve the authority (HTTP JSON API, OpenAPI at /docs) and the transparency log (/log)."""
    import uvicorn

    from fiat.api.app import create_app
    from fiat.authorize.policy import PolicyError, bundle_digest, read_bundle_files
    from fiat.wiring import open_authority

    with errors_to_exit():
        cfg = _config(home)
        authority = open_authority(cfg)
        if cfg.authority.policy_dir:
            directory = Path(cfg.authority.policy_dir)
            directory = directory if directory.is_absolute() else cfg.home / directory
            try:
                digest = bundle_digest(read_bundle_files(directory))
                active = authority.policy
                if active is None or active.digest != digest:
                    version, _, _ = authority.publish_policy(directory)
                    err.print(f"published {directory} as policy version {version}")
            except PolicyError as exc:
                err.print(f"[yellow]warning:[/] {directory} was not published: {exc}; the active policy stays")
        app_ = create_app(cfg, trust_interval=cfg.authority.trust_interval_ms / 1000, authority=authority)
        h, p = host or cfg.server.host, cfg.server.port if port is None else port
        active = authority.policy
        err.print(f"Fiat authority at http://{h}:{p}  (API docs /docs, log /log)")
        err.print(f"log verifier key: {authority.log.verifier.encode()}")
        err.print("policy: " + (f"version {active.version}" if active else "none published: every request is denied"))
        # Many request threads wait on one sequencer thread: hand the GIL over more often so the
        # sequencer and the event loop are not starved by a CPU-bound request (default 5 ms).
        sys.setswitchinterval(0.001)
        uvicorn.run(app_, host=h, port=p, log_level="warning", access_log=False)


def _server_url(cfg: Config, url: str | None) -> str:
    return url or f"http://{cfg.server.host}:{cfg.server.port}"


@app.command("authorize")
def authorize_cmd(
    principal: Annotated[str, typer.Option(help="Who acts, e.g. agent:release-bot.")],
    action: Annotated[str, typer.Option(help="What they do, e.g. deploy.")],
    resource: Annotated[str, typer.Option(help="What they act on, e.g. service:payments.")],
    context: Annotated[str, typer.Option(help="Arguments as a JSON object.")] = "{}",
    parent: Annotated[str | None, typer.Option(help="The parent permit id (lineage).")] = None,
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

    from fiat.api.client import AuthorityClient, ClientError
    from fiat.establish.measure import default_measurer
    from fiat.home import keyring

    try:
        ctx = json.loads(context)
    except ValueError as exc:
        fail(EXIT_INVALID, f"--context is not JSON: {exc}")
    if not isinstance(ctx, dict):
        fail(EXIT_INVALID, "--context must be a JSON object")
    with errors_to_exit():
        cfg = _config(home)
        rec, key = keyring(cfg).signing_key("runtime", None)
        evidence = default_measurer(None, os.getcwd(), cfg.runtime.files, cfg.runtime.env_allowlist).measure()
        body = {
            "principal": principal,
            "action": action,
            "resource": resource,
            "context": ctx,
            "parent": parent,
            "evidence": evidence,
        }
        if approval_id:
            body["approvalId"] = approval_id
        try:
            with AuthorityClient(_server_url(cfg, url)) as client:
                result = client.authorize(key, rec.kid, body)
        except ClientError as exc:
            fail(EXIT_ERROR if exc.status is None else EXIT_FAILED, str(exc))
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


def _decide(approval_id: str, approve: bool, name: str | None, reason: str, url: str | None, home: Path | None) -> None:
    from fiat.api.client import AuthorityClient, ClientError
    from fiat.home import keyring

    with errors_to_exit():
        cfg = _config(home)
        rec, key = keyring(cfg).signing_key("approver", name)
        try:
            with AuthorityClient(_server_url(cfg, url)) as client:
                result = client.decide(approval_id, approve, key, rec.kid, rec.name, reason)
        except ClientError as exc:
            fail(EXIT_ERROR if exc.status is None else EXIT_FAILED, str(exc))
    out.print(f"{approval_id}: {result['status']} by {result['approver']} (log index {result['logIndex']})")


@app.command("approve")
def approve_cmd(
    approval_id: Annotated[str, typer.Argument(help="The approval id from a pending decision.")],
    name: Annotated[str | None, typer.Option(help="Which approver key, when this home has several.")] = None,
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    url: Annotated[str | None, typer.Option(help="The authority.")] = None,
    home: HomeOpt = None,
) -> None:
    """Approve a pending request with this home's approver key (signed, bound to the action, logged)."""
    _decide(approval_id, True, name, reason, url, home)


@app.command("deny")
def deny_cmd(
    approval_id: Annotated[str, typer.Argument(help="The approval id from a pending decision.")],
    name: Annotated[str | None, typer.Option(help="Which approver key, when this home has several.")] = None,
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    url: Annotated[str | None, typer.Option(help="The authority.")] = None,
    home: HomeOpt = None,
) -> None:
    """Deny a pending request with this home's approver key (signed, logged)."""
    _decide(approval_id, False, name, reason, url, home)


@app.command("revoke")
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
    from fiat.api.client import AuthorityClient, ClientError
    from fiat.api.credentials import ensure_admin_token

    chosen = [(k, v) for k, v in (("permit", permit), ("principal", principal), ("runtime", runtime)) if v]
    if len(chosen) != 1:
        fail(EXIT_INVALID, "give exactly one of --permit, --principal or --runtime")
    kind, target = chosen[0]
    assert target is not None
    with errors_to_exit():
        cfg = _config(home)
        try:
            with AuthorityClient(_server_url(cfg, url)) as client:
                result = client.revoke(ensure_admin_token(cfg.keys_dir), kind, target, reason)
        except ClientError as exc:
            fail(EXIT_ERROR if exc.status is None else EXIT_FAILED, str(exc))
    if as_json:
        emit_json(result)
        return
    out.print(f"revoked {kind} {target}: revocation epoch {result['revocationEpoch']}, log index {result['logIndex']}")


@app.command("enroll")
def enroll_cmd(
    role: Annotated[str, typer.Option(help="runtime, approver or witness.")],
    name: Annotated[str, typer.Option(help="The node, person or witness name.")],
    public_key: Annotated[str, typer.Option(help="Ed25519 public key, base64url (43 characters).")],
    url: Annotated[str | None, typer.Option(help="The authority.")] = None,
    home: HomeOpt = None,
) -> None:
    """Enroll a remote runtime's or approver's public key with the authority (admin)."""
    from fiat.api.client import AuthorityClient, ClientError
    from fiat.api.credentials import ensure_admin_token

    with errors_to_exit():
        cfg = _config(home)
        try:
            with AuthorityClient(_server_url(cfg, url)) as client:
                rec = client.enroll(ensure_admin_token(cfg.keys_dir), role, name, public_key)
        except ClientError as exc:
            fail(EXIT_ERROR if exc.status is None else EXIT_FAILED, str(exc))
    out.print(f"enrolled {role} {name}: {rec['kid']}")


# -- fiat measure / run ----------------------------------------------------------------------------------


@app.command("measure")
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


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
)
def run_cmd(
    command: Annotated[list[str], typer.Argument(help="The command to govern, after --.")],
    principal: Annotated[str, typer.Option(help="Who acts, e.g. agent:release-bot.")],
    action: Annotated[str, typer.Option(help="What they do, e.g. shell:run.")],
    resource: Annotated[str, typer.Option(help="What they act on, e.g. repo:fiat.")],
    context: Annotated[str, typer.Option(help="Arguments as a JSON object.")] = "{}",
    parent: Annotated[str | None, typer.Option(help="The parent permit id (lineage).")] = None,
    evidence: Annotated[Path | None, typer.Option(help="Write the execution's evidence bundle here.")] = None,
    output: Annotated[
        list[str] | None, typer.Option(help="A declared output whose digest goes into the receipt.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="The authority (default http://server.host:server.port).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run CMD only with a verified permit; re-verify while it runs; halt it when trust is lost.

    Exit codes: the command's own status; 124 halted; 125 denied; 126 trust not established.
    """
    from fiat.enforce.run import run_governed

    try:
        ctx = json.loads(context)
    except ValueError as exc:
        fail(EXIT_INVALID, f"--context is not JSON: {exc}")
    if not isinstance(ctx, dict):
        fail(EXIT_INVALID, "--context must be a JSON object")
    if not command:
        fail(EXIT_INVALID, "nothing to run", "put the command after --, e.g. fiat run ... -- make deploy")
    with errors_to_exit():
        cfg = _config(home)
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
        )
    if as_json:
        emit_json(
            {
                "exitCode": result.exit_code,
                "outcome": result.outcome,
                "reason": result.reason,
                "permitId": result.permit_id,
                "receiptLogIndex": result.receipt_index,
                "haltLatencyMs": None if result.halt_latency is None else round(result.halt_latency * 1000, 2),
                "approvalId": result.decision.get("approvalId"),
            }
        )
    elif result.outcome not in ("completed",):
        err.print(f"[bold red]fiat:[/] {escape(result.outcome)}: {escape(result.reason)}")
        if result.decision.get("approvalId"):
            err.print(f"fiat: approval id {result.decision['approvalId']}; an approver runs `fiat approve` with it")
    if result.receipt_index is not None and not as_json:
        err.print(f"[dim]fiat:[/] receipt for {result.permit_id} logged at index {result.receipt_index}")
    raise typer.Exit(result.exit_code)


# -- fiat bench -------------------------------------------------------------------------


@bench_app.command("log")
def bench_log(
    as_json: JsonOpt = False,
    entries: Annotated[int, typer.Option(help="Entries per throughput run.")] = 100_000,
    proof_tree: Annotated[int, typer.Option(help="Tree size for proof timings.")] = 1_000_000,
    workdir: Annotated[
        Path | None, typer.Option(help="Where to put the scratch databases (default: a temp dir).")
    ] = None,
) -> None:
    """Append throughput, integration latency and proof timings beside SHA-256 + SQLite floors."""
    from fiat.bench.log import render_markdown, run_log_bench

    with errors_to_exit():
        result = run_log_bench(
            entries=entries, proof_tree=proof_tree, workdir=workdir, console=None if as_json else err
        )
    if as_json:
        emit_json(result)
    else:
        out.print(render_markdown(result))


@bench_app.command("verify")
def bench_verify(
    as_json: JsonOpt = False,
    bundles: Annotated[int, typer.Option(help="Distinct real bundles to build and cycle through.")] = 50,
    seconds: Annotated[float, typer.Option(help="How long to time verification.")] = 3.0,
) -> None:
    """Bundles verified per second beside the floor of the same raw Ed25519 verifications."""
    from fiat.bench.verify import render_markdown, run_verify_bench

    with errors_to_exit():
        result = run_verify_bench(bundles=bundles, seconds=seconds, console=None if as_json else err)
    if as_json:
        emit_json(result)
    else:
        out.print(render_markdown(result))


@bench_app.command("authorize")
def bench_authorize(
    as_json: JsonOpt = False,
    seconds: Annotated[float, typer.Option(help="How long each measurement runs.")] = 5.0,
    threads: Annotated[int, typer.Option(help="Concurrent in-process callers (per process).")] = 64,
    rate: Annotated[int, typer.Option(help="Offered HTTP load, requests per second.")] = 1000,
    http: Annotated[bool, typer.Option(help="Also measure over HTTP against a real `fiat serve`.")] = True,
    processes: Annotated[
        int, typer.Option(help="Also measure this many authority processes sharing one home (0 or 1 to skip).")
    ] = 2,
    rounds: Annotated[int, typer.Option(help="Rounds of each many-caller measurement; the median is kept.")] = 3,
) -> None:
    """Decisions/s and p50/p99 in process and over HTTP, beside raw Cedar + Ed25519 in the same run."""
    from fiat.bench.authorize import render_markdown, run_authorize_bench

    if processes < 0 or threads < 1 or rounds < 1:
        raise typer.BadParameter("--threads and --rounds must be at least 1, --processes at least 0")
    with errors_to_exit():
        result = run_authorize_bench(
            seconds=seconds,
            threads=threads,
            rate=rate,
            http=http,
            processes=processes,
            rounds=rounds,
            console=None if as_json else err,
        )
    if as_json:
        emit_json(result)
    else:
        out.print(render_markdown(result))


@bench_app.command("runtime")
def bench_runtime(
    as_json: JsonOpt = False,
    runs: Annotated[int, typer.Option(help="Revoke-to-halt runs for the latency percentiles.")] = 100,
    cpu_seconds: Annotated[float, typer.Option(help="How long to measure one guard's CPU.")] = 10.0,
    concurrent: Annotated[int, typer.Option(help="Concurrent guarded actions on one node (0 to skip).")] = 1000,
) -> None:
    """Halt latency (p50/p99), guard CPU per action, and 1,000 concurrent guarded actions."""
    from fiat.bench.runtime import render_markdown, run_runtime_bench

    with errors_to_exit():
        result = run_runtime_bench(
            runs=runs, cpu_seconds=cpu_seconds, concurrent=concurrent, console=None if as_json else err
        )
    if as_json:
        emit_json(result)
    else:
        out.print(render_markdown(result))


# -- fiat demo ----------------------------------------------------------------------------


@app.command()
def demo(
    home: Annotated[Path, typer.Option("--home", help="The demo's home, recreated on every run.")] = Path(".fiat-demo"),
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port.")] = 8750,
    serve: Annotated[bool, typer.Option(help="Keep the authority running after the scenario until Ctrl-C.")] = True,
) -> None:
    """Fiat's main job on embedded defaults: five governed executions, end to end, verified offline."""
    from fiat.demo import play

    with errors_to_exit():
        scenarios = play(home, host, port, out, keep_serving=serve)
    expected = {"completed", "denied", "halted"}
    if any(s.outcome not in expected for s in scenarios):
        fail(EXIT_ERROR, "a demo scenario did not behave as designed; see the table above")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
