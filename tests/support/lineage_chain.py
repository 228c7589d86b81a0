"""A real three-generation lineage: ``fiat run`` → child ``fiat run --parent "$FIAT_PERMIT_ID"`` →
grandchild, each its own guard process against one ``fiat serve`` (as tests/enforce/test_cascade.py,
but every generation runs to completion, so each logs a receipt)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import fiat
from support.processes import FIAT, FiatServer, cli_env, ok
from support.processes import fiat_text as fiat_cli

EXAMPLES = Path(fiat.__file__).resolve().parent / "examples" / "policies"

PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"
GENERATIONS = 3

#: One generation: notes its own permit id, starts the next generation under ``--parent`` and
#: exits with its exit status (the last generation only notes its id).
GENERATION = r"""
import os, subprocess, sys

base, n, last, home, url = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
with open(os.path.join(base, f"gen{n}.id"), "w") as f:
    f.write(os.environ["FIAT_PERMIT_ID"])
if n < last:
    rc = subprocess.call(
        [sys.executable, "-m", "fiat.cli.main", "run", "--home", home, "--url", url,
         "--principal", "agent:release-bot", "--action", "shell:run", "--resource", "repo:fiat",
         "--parent", os.environ["FIAT_PERMIT_ID"],
         "--", sys.executable, __file__, base, str(n + 1), str(last), home, url],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(base, f"gen{n + 1}.stderr"), "w"),
    )
    sys.exit(rc)
"""


def run_chain(server: FiatServer, base: Path, timeout: float = 120) -> list[str]:
    """Run the three generations to completion; their permit ids, root first."""
    base.mkdir(parents=True, exist_ok=True)
    script = base / "generation.py"
    script.write_text(GENERATION)
    args = [
        *(*FIAT, "run", "--home", str(server.home), "--url", server.url),
        *("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE),
        *("--", sys.executable, str(script), str(base), "0", str(GENERATIONS - 1), str(server.home), server.url),
    ]
    # process containment: a nested ``fiat run`` needs the home, which namespace containment hides.
    env = cli_env(FIAT_RUNTIME_CONTAINMENT="process")
    proc = subprocess.run(args, cwd=base, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        nested = {p.name: p.read_text() for p in base.glob("gen*.stderr")}
        raise AssertionError(f"the chain failed ({proc.returncode}): {proc.stderr}\n{json.dumps(nested, indent=1)}")
    return [(base / f"gen{n}.id").read_text() for n in range(GENERATIONS)]


def renewing_home(base: Path) -> Path:
    """A home whose example policies give the shell permit 3 s, so a 5 s ``fiat run`` is renewed
    (the guard renews when a third of the lifetime is left)."""
    policies = base / "policies"
    shutil.copytree(EXAMPLES, policies)
    shell = policies / "shell.cedar"
    shell.write_text(shell.read_text().replace('@ttl("30")', '@ttl("3")'))
    home = base / "home"
    ok(fiat_cli("init", "--home", home, "--json"))
    ok(fiat_cli("policy", "publish", policies, "--home", home, "--json"))
    return home


def run_renewed(server: FiatServer, seconds: float = 5) -> None:
    """One root ``fiat run`` of ``sleep`` long enough to be renewed at least once."""
    args = ("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE)
    ok(fiat_cli("run", "--home", server.home, "--url", server.url, *args, "--", "sleep", str(seconds)))
