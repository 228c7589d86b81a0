"""``fiat policy …``: Cedar policy bundles — validate, test, publish, history, diff."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from fiat.cli.common import (
    EXIT_FAILED,
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

if TYPE_CHECKING:
    from fiat.authorize.policy import CaseResult, PolicyBundle

policy_app = typer.Typer(help="Cedar policy bundles: validate, test, publish, history.", no_args_is_help=True)


def _bundle_or_fail(directory: Path) -> Any:
    from fiat.authorize.policy import PolicyError, load_bundle

    try:
        return load_bundle(directory)
    except PolicyError as exc:
        fail(EXIT_INVALID, str(exc))


def _print_cases(results: list[CaseResult], console: Console = out) -> None:
    for r in results:
        if r.passed:
            console.print(f"[green]✓[/] {r.name}: {r.got}")
        else:
            console.print(f"[red]✗[/] {r.name}")
            console.print(f"    [red]- expected: {r.expected}[/]")
            console.print(f"    [green]+ got:      {r.got}[/] (determining: {', '.join(r.determining) or 'none'})")
            for e in r.errors:
                console.print(f"      error: {e}")


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
        _print_cases(results)
        out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _refuse_failing_tests(bundle: PolicyBundle, directory: Path) -> None:
    """Run the bundle's own tests.json; refuse (exit 1) when a case fails or cannot run."""
    from fiat.authorize.policy import PolicyError, run_cases

    if "tests.json" not in bundle.files:
        return
    try:
        results = run_cases(bundle, json.loads(bundle.files["tests.json"]))
    except (ValueError, PolicyError) as exc:
        fail(EXIT_INVALID, f"cannot run the cases in {directory / 'tests.json'}: {exc}; not published")
    failed = [r for r in results if not r.passed]
    if failed:
        _print_cases(failed, err)  # the diff explains the refusal: on stderr, so stdout stays a result
        fail(
            EXIT_FAILED,
            f"{len(failed)} of {len(results)} cases in {directory / 'tests.json'} failed; not published",
            "fix the policies or the cases (`fiat policy test` shows them), or publish anyway with --skip-tests",
        )


@policy_app.command("publish")
def policy_publish(
    directory: Annotated[Path, typer.Argument(help="The policy bundle directory.")],
    home: HomeOpt = None,
    url: Annotated[str | None, typer.Option(help="Publish through a running server instead of the home.")] = None,
    skip_tests: Annotated[
        bool, typer.Option("--skip-tests", help="Publish even if the bundle's own tests.json cases fail.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate, run the bundle's tests.json, and publish: a new version, its digest, a signed policy statement.

    A bundle whose own cases fail is refused (exit 1) unless --skip-tests is given.
    """
    import base64

    from fiat.authorize.policy import PolicyError, load_bundle, read_bundle_files
    from fiat.wiring import open_authority

    if not skip_tests:
        try:
            bundle = load_bundle(directory)
        except PolicyError:
            bundle = None  # refused below, with the authority's own message
        if bundle is not None and not bundle.validate():
            _refuse_failing_tests(bundle, directory)
    with errors_to_exit():
        cfg = config(home)
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
        store = open_authority_store(config(home))
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
        store = open_authority_store(config(home))
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
