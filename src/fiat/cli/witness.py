"""``fiat witness …``: run a C2SP tlog-witness (docs/witness.md).

* ``init`` — a witness home: ``fiat.toml`` with ``[witness]``, ``keys/witness.pem`` (Ed25519),
  ``keys/witness-mldsa.key`` (ML-DSA-44 seed, with ``witness.mldsa``), an empty logs file;
* ``add-log`` — append ``log <vkey> [<url>]`` to the logs file (a running witness picks it up);
* ``vkey`` — the cosigner vkey (Ed25519, type 0x04; ``--mldsa``: ML-DSA-44, type 0x06), the value
  ``fiat keys add --role witness --vkey VKEY --url URL`` takes on the log's side;
* ``serve`` — the HTTP witness (``POST /add-checkpoint``, ``GET /<origin hash>/checkpoint``, ``GET /``);
* ``status`` — each log's latest cosigned checkpoint and refusals, from the state database;
* ``split-views`` — export split-view proofs of refused, log-signed, inconsistent checkpoints.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from fiat.cli.common import EXIT_ERROR, HomeOpt, JsonOpt, emit_json, err, errors_to_exit, fail, out
from fiat.config import CONFIG_NAME, Config, load_config, render_default_config, resolve_home
from fiat.errors import ConfigError, KeyFileError, MalformedError
from fiat.tlog import note

if TYPE_CHECKING:
    from fiat.witness.core import Witness
    from fiat.witness.logs import WatchedLog

witness_app = typer.Typer(
    help="Run a C2SP tlog-witness: cosign the checkpoints of the logs it watches.", no_args_is_help=True
)
ED25519_FILE = "witness.pem"


# -- the home ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessInit:
    home: Path
    name: str
    created: tuple[str, ...]
    kept: tuple[str, ...]
    vkey: str
    mldsa_vkey: str | None


def _write_new(path: Path, text: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def witness_config(home: str | Path | None) -> Config:
    """The home's configuration; a :class:`ConfigError` (saying what to do) unless it is a witness home."""
    cfg = load_config(home, require=True)
    if not cfg.witness.name:
        raise ConfigError(
            f"{cfg.home} is not a witness home (witness.name is not set); "
            f"run `fiat witness init --home {cfg.home} --name NAME` first"
        )
    return cfg


def _path(cfg: Config, value: str, setting: str, default: str) -> Path:
    path = cfg.home_path(value)
    if path is None:
        raise ConfigError(f"{setting} is empty; set it (default {default})")
    return path


def logs_path(cfg: Config) -> Path:
    return _path(cfg, cfg.witness.logs, "witness.logs", "witness-logs.txt")


def state_path(cfg: Config) -> Path:
    return _path(cfg, cfg.witness.state, "witness.state", "witness.db")


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def init_witness_home(home: str | Path | None, name: str) -> WitnessInit:
    """Create (or complete) a witness home. Idempotent; a home of another witness name is refused."""
    from fiat.keys.pem import ensure_private_key
    from fiat.witness import keys
    from fiat.witness.logs import HEADER, read_logs

    try:
        note.check_key_name(name)
    except MalformedError as exc:
        raise ConfigError(
            f"--name {name!r} is not a valid witness name: {exc.reason}; use a schema-less URL such as "
            "witness.example/w1"
        ) from None
    root = resolve_home(home)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    created: list[str] = []
    kept: list[str] = []
    text = render_default_config("unused.invalid/log", sections=("witness",))
    marker = 'name = ""'
    if text.count(marker) != 1:
        raise ConfigError("internal: the [witness] section of the default configuration has no name setting")
    (created if _write_new(root / CONFIG_NAME, text.replace(marker, f"name = {json.dumps(name)}")) else kept).append(
        CONFIG_NAME
    )
    cfg = load_config(root, require=True)
    if cfg.witness.name != name:
        raise ConfigError(
            f"{root} is already the home of the witness {cfg.witness.name or '(no witness.name)'!r}, not {name!r}; "
            "choose another --home, or set witness.name in its fiat.toml"
        )
    cfg.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(cfg.keys_dir, 0o700)
    _, made = ensure_private_key(cfg.keys_dir / ED25519_FILE)
    (created if made else kept).append(f"keys/{ED25519_FILE}")
    if cfg.witness.mldsa:
        _, made = keys.ensure_mldsa(cfg.keys_dir)
        (created if made else kept).append(f"keys/{keys.MLDSA_FILE}")
    logs = logs_path(cfg)
    if _write_new(logs, HEADER):
        created.append(_shown(root, logs))
    else:
        read_logs(logs)  # a broken file is reported now, not when serving
        kept.append(_shown(root, logs))
    w = open_witness(cfg)
    try:
        return WitnessInit(root, name, tuple(created), tuple(kept), w.vkey, w.mldsa_vkey)
    finally:
        close_witness(w)


def add_log(cfg: Config, vkey: str, url: str | None) -> WatchedLog:
    """Append ``log <vkey> [<url>]`` to the logs file, atomically (the whole file must still parse)."""
    from fiat.witness.logs import HEADER, WatchedLog, check_url, parse_logs, read_logs

    path = logs_path(cfg)
    try:
        verifier = note.Verifier.parse(vkey)
    except MalformedError as exc:
        raise ConfigError(
            f"--vkey: {exc.reason}; a log's vkey is what `fiat log vkey` prints (<origin>+<hex key ID>+<base64 key>)"
        ) from None
    if url is not None:
        check_url(url, "--url")
    for entry in read_logs(path):
        if entry.verifier.public_key == verifier.public_key:
            raise ConfigError(f"{path}:{entry.line} already has this log key (for {entry.origin}); nothing to add")
    entry = WatchedLog(verifier, url)
    current = path.read_text(encoding="utf-8") if path.exists() else HEADER
    new_text = current + ("" if not current or current.endswith("\n") else "\n") + entry.render() + "\n"
    parse_logs(new_text, str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new_text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return entry


def open_witness(cfg: Config, on_config_error: Callable[[str], None] | None = None) -> Witness:
    """The witness of a home: its keys, its logs file (re-read when it changes), its durable state."""
    from fiat.keys.pem import load_private_key
    from fiat.persist.sqlite.witness import SQLiteWitnessStore
    from fiat.witness import keys
    from fiat.witness.core import Witness
    from fiat.witness.logs import LogsFile

    ed_path = cfg.keys_dir / ED25519_FILE
    if not ed_path.exists():
        raise KeyFileError(f"no witness key at {ed_path}; run `fiat witness init --home {cfg.home} --name NAME`")
    ed = load_private_key(ed_path)
    mldsa = keys.load_mldsa(cfg.keys_dir / keys.MLDSA_FILE) if cfg.witness.mldsa else None
    logs = LogsFile(logs_path(cfg), on_config_error)
    store = SQLiteWitnessStore(state_path(cfg), cfg.storage.busy_timeout_ms)
    if on_config_error is None:
        return Witness(cfg.witness.name, ed, mldsa, logs, store)
    return Witness(cfg.witness.name, ed, mldsa, logs, store, warn=on_config_error)  # the same stderr


def close_witness(w: Witness) -> None:
    close = getattr(w.store, "close", None)
    if callable(close):
        close()


# -- commands ------------------------------------------------------------------------------


@witness_app.command("init")
def witness_init(
    name: Annotated[
        str, typer.Option(help="The witness's name, its cosignatures' key name (e.g. witness.example/w1).")
    ],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a witness home: fiat.toml (its witness section), keys (0600), an empty logs file. Safe to re-run."""
    with errors_to_exit():
        report = init_witness_home(home, name)
    if as_json:
        emit_json(
            {
                "home": str(report.home),
                "name": report.name,
                "created": list(report.created),
                "kept": list(report.kept),
                "vkey": report.vkey,
                "mldsaVkey": report.mldsa_vkey,
            }
        )
        return
    out.print(f"witness home: [bold]{escape(str(report.home))}[/] ({escape(report.name)})")
    for item in report.created:
        out.print(escape(f"  created {item}"))
    for item in report.kept:
        out.print(escape(f"  kept    {item}"))
    out.print(f"cosigner vkey: {report.vkey}")
    out.print(escape(f"next: `fiat witness add-log --home {report.home} --vkey LOG_VKEY`, then `fiat witness serve`"))


@witness_app.command("add-log")
def witness_add_log(
    vkey: Annotated[str, typer.Option(help="The log's verifier key (`fiat log vkey` prints it).")],
    url: Annotated[str | None, typer.Option(help="Where the log is (information only).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cosign a log: append `log <vkey> [<url>]` to the logs file (a running witness picks it up)."""
    with errors_to_exit():
        cfg = witness_config(home)
        entry = add_log(cfg, vkey, url)
        path = logs_path(cfg)
    if as_json:
        emit_json({"origin": entry.origin, "vkey": entry.verifier.encode(), "url": entry.url, "logsFile": str(path)})
        return
    out.print(escape(f"added {entry.origin} to {path}"))


@witness_app.command("vkey")
def witness_vkey(
    home: HomeOpt = None,
    mldsa: Annotated[bool, typer.Option("--mldsa", help="The ML-DSA-44 cosigner vkey (type 0x06) instead.")] = False,
) -> None:
    """Print the cosigner vkey (Ed25519, type 0x04): what `fiat keys add --role witness --vkey` takes."""
    with errors_to_exit():
        w = open_witness(witness_config(home))
        try:
            value = w.mldsa_vkey if mldsa else w.vkey
        finally:
            close_witness(w)
    if value is None:
        fail(
            EXIT_ERROR,
            "this witness has no ML-DSA-44 key (witness.mldsa is false)",
            "set witness.mldsa = true and run `fiat witness init` again",
        )
    sys.stdout.write(value + "\n")


@witness_app.command("serve")
def witness_serve(
    home: HomeOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: witness.host, 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port (default: witness.port, 8760; 0: any free port).")
    ] = None,
) -> None:
    """Serve the witness over HTTP (C2SP tlog-witness) until SIGTERM/SIGINT."""
    from fiat.api.witness import create_witness_app
    from fiat.serving import Drain, bind, run_server, url_host

    with errors_to_exit():
        cfg = witness_config(home)
        w = open_witness(cfg, lambda message: err.print(f"fiat witness: {escape(message)}"))
        try:
            listen = host or cfg.witness.host
            sock = bind(listen, cfg.witness.port if port is None else port)
            url = f"http://{url_host(listen)}:{sock.getsockname()[1]}"
            err.print(f"fiat witness: listening on {url}")
            err.print(f"cosigner vkey: {w.vkey}")
            logs = w.logs()
            err.print(escape(f"logs: {len(logs)} ({', '.join(sorted(logs)) or 'none yet: fiat witness add-log'})"))
            if not run_server(create_witness_app(w), sock, Drain(0, "finishing the submissions in flight")):
                fail(EXIT_ERROR, "the witness did not start; see the messages above")
        finally:
            close_witness(w)


@witness_app.command("status")
def witness_status(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Each log's latest cosigned checkpoint and refused submissions (read from the state database)."""
    with errors_to_exit():
        cfg = witness_config(home)
        w = open_witness(cfg)
        try:
            summary: dict[str, Any] = w.summary()
        finally:
            close_witness(w)
    summary["home"] = str(cfg.home)
    if as_json:
        emit_json(summary)
        return
    out.print(escape(f"witness {summary['name']} ({cfg.home})"))
    out.print(f"cosigner vkey: {summary['vkey']}")
    if not summary["logs"]:
        out.print("no logs yet: `fiat witness add-log --vkey LOG_VKEY`")
    for entry in summary["logs"]:
        state = (
            "never cosigned" if entry["size"] is None else f"size {entry['size']} (cosigned at {entry['cosignedAt']})"
        )
        extra = "" if entry["configured"] else " [no longer in the logs file]"
        refused = f", {entry['refused']} refused ({entry['refusedProving']} proving a fork)" if entry["refused"] else ""
        if entry["refusedDropped"]:
            refused += f", {entry['refusedDropped']} more refused that prove nothing (not kept)"
        out.print(escape(f"  {entry['origin']}: {state}{refused}{extra}"))


@witness_app.command("split-views")
def witness_split_views(
    home: HomeOpt = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write the proofs (default: HOME/split-views).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export split-view proofs of refused, log-signed, inconsistent checkpoints (each verified first)."""
    from fiat.errors import VerificationError
    from fiat.persist.sqlite.witness import MAX_UNPROVEN_REFUSALS_PER_ORIGIN
    from fiat.tlog.witness import origin_hash
    from fiat.verify.split_view import verify
    from fiat.witness.split_views import export

    with errors_to_exit():
        cfg = witness_config(home)
        w = open_witness(cfg)
        try:
            refusals = w.store.refusals()
            dropped = {o: c.dropped for o, c in w.store.refusal_counts().items() if c.dropped}
            keys = w.logs()
        finally:
            close_witness(w)
    target = out_dir or cfg.home / "split-views"
    proofs: list[dict[str, Any]] = []
    unproven: list[dict[str, Any]] = []
    for refusal in refusals:
        result = export(refusal, cfg.witness.name)
        if result.proof is None:
            unproven.append({"origin": refusal.origin, "reason": refusal.reason, "whyNot": result.why_not})
            continue
        try:
            proven = verify(result.proof, list(keys.get(refusal.origin, ())))
        except VerificationError as exc:
            unproven.append(
                {"origin": refusal.origin, "reason": refusal.reason, "whyNot": f"it does not verify: {exc}"}
            )
            continue
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = target / f"split-view-{origin_hash(refusal.origin)[:12]}-{refusal.digest[:12]}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a home's files are private
        with os.fdopen(fd, "wb") as f:
            f.write(result.proof.encode())
        proofs.append({"origin": refusal.origin, "file": str(path), "summary": proven.summary})
    if as_json:
        emit_json({"proofs": proofs, "unproven": unproven, "dropped": dropped})
        return
    if not refusals and not dropped:
        out.print("no refused checkpoints: this witness has seen no split view")
    for p in proofs:
        out.print(f"[bold]split view[/] of {escape(p['origin'])}: {p['summary']}\n  wrote {escape(p['file'])}")
    for u in unproven:
        out.print(escape(f"refused {u['origin']} ({u['reason']}): no proof — {u['whyNot']}"))
    for origin, count in sorted(dropped.items()):
        out.print(
            escape(
                f"refused {origin}: {count} more submissions that prove nothing were not kept "
                f"(the witness keeps the first {MAX_UNPROVEN_REFUSALS_PER_ORIGIN} per log; "
                "every one that proves a fork is kept)"
            )
        )
    if proofs:
        out.print("each proof was checked against the log keys of the logs file (docs/witness.md, Split views)")
