"""The ``fiat`` command line: the typer app assembled from one module per command group.

Exit codes (stable, documented in README.md): 0 success / verified; 1 verification
failed (the failing rule is named); 2 invalid input or usage; 3 operational error.
``fiat run`` adds the governed command's own codes (124 halted, 125 denied, 126 trust
not established, 127 command not found).
"""

from __future__ import annotations

from typing import Annotated

import typer

from fiat.cli import approvals, authorize, bench, demo, home, keys, log, mcp, policy, receipts, run, serve, verify
from fiat.cli.common import EXIT_INVALID, fail
from fiat.cli.witness import witness_app
from fiat.logs import setup_logging

app = typer.Typer(
    name="fiat",
    help="Fiat: cryptographically governed runtime trust. Authorize, verify continuously, fail closed, prove.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(log.log_app, name="log")
app.add_typer(policy.policy_app, name="policy")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(approvals.approvals_app, name="approvals")
app.add_typer(receipts.receipts_app, name="receipts")
app.add_typer(keys.trust_app, name="trust-root")
app.add_typer(bench.bench_app, name="bench")
app.add_typer(witness_app, name="witness")


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


home.register(app)  # version, init
verify.register(app)  # bundle, verify
serve.register(app)  # serve
authorize.register_authorize(app)  # authorize
approvals.register(app)  # approve, deny
authorize.register_admin(app)  # revoke, enroll
run.register(app)  # measure, run
demo.register(app)  # demo
mcp.register(app)  # mcp (stdio), mcp serve (HTTP)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
