"""``fiat bench …``: benchmarks, each beside a floor measured in the same run.

``--json`` results use camelCase keys like every other ``--json`` output.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from fiat.cli.common import EXIT_INVALID, JsonOpt, camel_keys, emit_json, err, errors_to_exit, fail, out

bench_app = typer.Typer(help="Benchmarks, each beside a floor measured in the same run.", no_args_is_help=True)


@bench_app.command("log")
def bench_log(
    as_json: JsonOpt = False,
    entries: Annotated[int, typer.Option(help="Entries per throughput run.")] = 100_000,
    proof_tree: Annotated[int, typer.Option(help="Tree size for proof timings.")] = 1_000_000,
    workdir: Annotated[
        Path | None, typer.Option(help="Where to put the scratch databases (default: a temp dir).")
    ] = None,
    witnessed_rounds: Annotated[
        int, typer.Option(help="Appends timed to a quorum-cosigned checkpoint (3 local witnesses); 0: skip.")
    ] = 200,
) -> None:
    """Append throughput, integration latency, proof timings beside SHA-256 + SQLite floors, and the
    time from an append to a checkpoint cosigned by a quorum of 2 of 3 local witnesses."""
    from fiat.bench.log import render_markdown, run_log_bench

    with errors_to_exit():
        result = run_log_bench(
            entries=entries,
            proof_tree=proof_tree,
            workdir=workdir,
            console=None if as_json else err,
            witnessed_rounds=witnessed_rounds,
        )
    _report(result, render_markdown, as_json)


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
    _report(result, render_markdown, as_json)


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
    _report(result, render_markdown, as_json)


@bench_app.command("runtime")
def bench_runtime(
    as_json: JsonOpt = False,
    runs: Annotated[int, typer.Option(help="Revoke-to-halt runs for the latency percentiles.")] = 100,
    cpu_seconds: Annotated[float, typer.Option(help="How long to measure one guard's CPU.")] = 10.0,
    concurrent: Annotated[int, typer.Option(help="Concurrent guarded actions on one node (0 to skip).")] = 1000,
    cascade_runs: Annotated[
        int, typer.Option(help="Lineage cascades (root revoked, every generation timed) for p50/p99 (0 to skip).")
    ] = 50,
    generations: Annotated[int, typer.Option(min=2, max=8, help="Generations in each cascade's chain.")] = 3,
    part: Annotated[
        list[str] | None,
        typer.Option(help="Measure only this part (repeat): startup, halt, cpu, concurrent, cascade."),
    ] = None,
) -> None:
    """Start-up, halt latency (p50/p99), guard CPU, 1,000 concurrent actions, the lineage cascade."""
    from fiat.bench.runtime import PARTS, render_markdown, run_runtime_bench

    unknown = sorted(set(part or ()) - set(PARTS))
    if unknown:
        fail(EXIT_INVALID, f"--part: unknown {', '.join(unknown)}", f"choose from {', '.join(PARTS)}")
    with errors_to_exit():
        result = run_runtime_bench(
            runs=runs,
            cpu_seconds=cpu_seconds,
            concurrent=concurrent,
            console=None if as_json else err,
            cascade_runs=cascade_runs,
            generations=generations,
            parts=tuple(part or PARTS),
        )
    _report(result, render_markdown, as_json)


@bench_app.command("mcp")
def bench_mcp(
    as_json: JsonOpt = False,
    calls: Annotated[int, typer.Option(help="Sequential tool calls per row (after the warm-up).")] = 200,
    warmup: Annotated[int, typer.Option(help="Warm-up calls per row, not counted.")] = 20,
    quick: Annotated[bool, typer.Option(help="A fast smoke run: 20 calls per row, 3 warm-up calls.")] = False,
    governed: Annotated[
        bool, typer.Option(help="Also measure the gateway (`fiat mcp`) against a real `fiat serve`.")
    ] = True,
) -> None:
    """Latency of a governed MCP tool call (p50/p99, stdio and HTTP) beside direct calls and a same-run floor."""
    from fiat.bench.mcp import render_markdown, run_mcp_bench

    if quick:
        calls, warmup = 20, 3
    if calls < 1 or warmup < 0:
        fail(EXIT_INVALID, f"--calls {calls} --warmup {warmup}", "--calls must be at least 1, --warmup at least 0")
    with errors_to_exit():
        result = run_mcp_bench(calls=calls, warmup=warmup, governed=governed, console=None if as_json else err)
    _report(result, render_markdown, as_json)


@bench_app.command("ui")
def bench_ui(
    as_json: JsonOpt = False,
    loads: Annotated[int, typer.Option(help="Cold loads of each page.")] = 5,
    verifications: Annotated[int, typer.Option(help="In-browser verifications of the bundle.")] = 20,
) -> None:
    """Each web page's weight and first paint in real Chromium; in-browser verification beside the CLI's."""
    from fiat.bench.ui import render_markdown, run_ui_bench

    if loads < 1 or verifications < 2:
        fail(EXIT_INVALID, f"--loads {loads} --verifications {verifications}", "--loads ≥ 1, --verifications ≥ 2")
    with errors_to_exit():
        result = run_ui_bench(loads=loads, verifications=verifications, console=None if as_json else err)
    _report(result, render_markdown, as_json)


def _report(result: dict[str, Any], render: Callable[[dict[str, Any]], str], as_json: bool) -> None:
    """A benchmark's result: camelCase JSON for machines, or the Markdown of BENCHMARKS.md."""
    if as_json:
        emit_json(camel_keys(result))
    else:
        out.print(render(result))
