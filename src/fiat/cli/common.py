"""What every command module of the CLI shares: consoles, exit codes, options, errors, JSON.

Exit codes (stable, documented in README.md):

* 0 — success / verified
* 1 — verification failed (the failing rule is named)
* 2 — invalid input or usage (malformed file, bad argument)
* 3 — operational error (no home, storage or network failure)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from fiat.config import Config, authority_url, load_config
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
from fiat.formats.action import check_scope

if TYPE_CHECKING:
    from fiat.prove.log import TransparencyLog

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_ERROR = 0, 1, 2, 3

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Fiat home directory (default: $FIAT_HOME, else ./.fiat).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
UrlOpt = Annotated[str | None, typer.Option(help="The authority.")]
#: An approver key's approver groups and identity, set at enrolment (docs/formats.md, "Approvals").
GroupOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--group",
        help='An approver group the approver key belongs to (repeat for several): @approval("ops") needs a key '
        "of group ops. Without one, the key decides only requests whose @approval names no group.",
    ),
]
IdentityOpt = Annotated[
    str | None,
    typer.Option(
        help="Who holds the approver key, as a principal (default user:NAME); never approves its own requests."
    ),
]


def fail(code: int, message: str, hint: str | None = None) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}")
    raise typer.Exit(code)


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """Map Fiat's exceptions onto the documented exit codes with an actionable message."""
    from fiat.serving import BindError, PortInUseError

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
    except PortInUseError as exc:
        fail(EXIT_ERROR, str(exc), f"stop what listens on port {exc.port}, or choose another with --port")
    except BindError as exc:
        fail(EXIT_ERROR, str(exc), "check --host and --port")
    except FiatError as exc:
        fail(EXIT_ERROR, str(exc))


@contextmanager
def authority_errors() -> Iterator[None]:
    """A refusal by the authority exits 1 (its problem detail is the message); no answer at all exits 3."""
    from fiat.api.client import ClientError

    try:
        yield
    except ClientError as exc:
        fail(EXIT_ERROR if exc.status is None else EXIT_FAILED, str(exc))


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


_SNAKE = re.compile(r"_([a-z0-9])")


def camel_keys(obj: Any) -> Any:
    """``obj`` with every dictionary key in camelCase (``tree_size`` → ``treeSize``), recursively.

    For results whose keys are all Fiat's own (benchmarks); never for wire objects or user data.
    """
    if isinstance(obj, dict):
        return {_SNAKE.sub(lambda m: m.group(1).upper(), str(k)): camel_keys(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [camel_keys(v) for v in obj]
    return obj


def config(home: Path | None) -> Config:
    return load_config(home, require=True)


@contextmanager
def home_log(cfg: Config) -> Iterator[TransparencyLog]:
    """The home's transparency log, open for the block and closed (with its store) after it."""
    from fiat.wiring import open_log

    log = open_log(cfg)
    try:
        yield log
    finally:
        log.close()  # the log owns its store and closes it


def read_input(path: Path, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        fail(EXIT_INVALID, f"cannot read the {what} {path}: {exc.strerror}")


def parse_vkey(vkey: str) -> Any:
    from fiat.tlog.note import Verifier

    text = vkey
    if "+" not in vkey and Path(vkey).is_file():
        text = Path(vkey).read_text(encoding="utf-8").strip()
    try:
        return Verifier.parse(text)
    except MalformedError as exc:
        fail(EXIT_INVALID, str(exc), "a verifier key looks like origin+1a2b3c4d+AbC...; `fiat log vkey` prints it")


def parse_context(context: str) -> dict[str, Any]:
    try:
        ctx = json.loads(context)
    except ValueError as exc:
        fail(EXIT_INVALID, f"--context is not JSON: {exc}")
    if not isinstance(ctx, dict):
        fail(EXIT_INVALID, "--context must be a JSON object")
    return ctx


def parse_scope_pair(value: str) -> dict[str, str]:
    """``--scope ACTION@RESOURCE``: one pair of a permit's delegation scope (split at the first ``@``)."""
    action, sep, resource = value.partition("@")
    if not sep or not action or not resource:
        fail(EXIT_INVALID, f"--scope {value!r} is not ACTION@RESOURCE", "e.g. --scope shell:run@repo:fiat")
    try:
        return check_scope([{"action": action, "resource": resource}], "--scope")[0]
    except MalformedError as exc:
        fail(EXIT_INVALID, str(exc))


def server_url(cfg: Config, url: str | None) -> str:
    return authority_url(cfg, url)


def write_output(data: str, output: Path | None) -> None:
    """``data`` to stdout, or to ``output`` with a note on stderr."""
    if output is None:
        sys.stdout.write(data)
    else:
        output.write_text(data, encoding="utf-8")
        err.print(f"wrote {output}")
