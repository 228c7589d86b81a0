"""``fiat demo`` (what ``make run`` runs): the whole loop, for real, on embedded defaults.

It initialises a fresh home (SQLite, local keys), publishes the example Cedar
bundle, starts ``fiat serve`` on 127.0.0.1 and plays five executions through
real ``fiat run`` processes:

1. allowed and completed;
2. denied by policy (never started);
3. needing a human approval, granted with the demo approver's key;
4. revoked while running, and halted;
5. halted because a measured file changed under it.

Each execution's evidence bundle is written and verified offline with the same
verifier an auditor uses; a summary table follows, and the server stays up
until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from rich.console import Console
from rich.table import Table

from fiat.config import load_config
from fiat.errors import FiatError
from fiat.home import init_home, trust_root
from fiat.serving import check_port_free
from fiat.verify import Bundle, TrustRoot, verify

EXAMPLES = Path(__file__).resolve().parent / "examples" / "policies"
PERMIT_RE = re.compile(r"permit (pmt_[A-Za-z0-9_-]+)")
APPROVAL_RE = re.compile(r"approval (apr_[A-Za-z0-9_-]+) pending")


@dataclass
class Scenario:
    name: str
    outcome: str = ""
    exit_code: int | None = None
    permit: str | None = None
    detail: str = ""
    bundle: Path | None = None
    verified: str = "-"


class Demo:
    def __init__(self, home: Path, host: str, port: int, console: Console) -> None:
        self.home, self.host, self.port, self.console = home, host, port, console
        self.url = f"http://{host}:{port}"
        self.server: subprocess.Popen[str] | None = None
        self.env = {**os.environ, "FIAT_HOME": str(home), "FIAT_SERVER_HOST": host, "FIAT_SERVER_PORT": str(port)}
        self.evidence_dir = home / "evidence"

    def fiat(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fiat.cli.main", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self) -> None:
        # Before anything else: on a busy port the guards would ask somebody else's server.
        check_port_free(self.host, self.port)
        if self.home.exists():
            if not (self.home / "fiat.toml").exists():
                raise FiatError(f"{self.home} exists and is not a Fiat home; choose another --home")
            shutil.rmtree(self.home)  # a fresh demo home every time
        init_home(self.home)
        self.fiat("keys", "add", "--role", "approver", "--name", "demo-approver", "--group", "ops")
        self.evidence_dir.mkdir()
        published = self.fiat("policy", "publish", str(EXAMPLES))
        if published.returncode != 0:
            raise FiatError(f"could not publish the example policy: {published.stderr.strip()}")
        server = self.server = subprocess.Popen(
            [sys.executable, "-m", "fiat.cli.main", "serve", "--host", self.host, "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # `fiat serve` prints its banner once it holds the port: until then, whatever answers
        # on the port is not ours (it may have taken the port since the check above).
        banner = threading.Event()
        said: list[str] = []

        def watch(stream: IO[str]) -> None:
            for line in stream:
                said.append(line)
                if line.startswith("Fiat authority at "):
                    banner.set()

        assert server.stderr is not None
        threading.Thread(target=watch, args=(server.stderr,), daemon=True).start()
        deadline = time.time() + 30
        while time.time() < deadline:
            if server.poll() is not None:
                time.sleep(0.2)  # let the watcher read what it said
                raise FiatError(f"fiat serve did not start on {self.url}: {''.join(said).strip()[-400:]}")
            if not banner.wait(0.2):
                continue
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise FiatError(f"fiat serve did not answer on {self.url} within 30 s")

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()

    # -- one governed execution, in the background, with its stderr watched
    def run(
        self,
        scenario: Scenario,
        principal: str,
        action: str,
        resource: str,
        command: list[str],
        context: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        on_line: Any = None,
    ) -> Scenario:
        bundle = self.evidence_dir / f"{len(os.listdir(self.evidence_dir)) + 1}-{action.replace(':', '-')}.json"
        args = [
            sys.executable, "-m", "fiat.cli.main", "run", "--json",
            "--principal", principal, "--action", action, "--resource", resource,
            "--context", json.dumps(context or {}), "--evidence", str(bundle), "--", *command,
        ]  # fmt: skip
        proc = subprocess.Popen(
            args, env={**self.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None and proc.stdout is not None
        stderr_lines: list[str] = []

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                stderr_lines.append(line)
                m = PERMIT_RE.search(line)
                if m and scenario.permit is None:
                    scenario.permit = m.group(1)
                if on_line is not None:
                    on_line(line, scenario)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        out = proc.stdout.read()
        proc.wait()
        reader.join(5)
        # With --json, stdout holds fiat's JSON result alone (the command's output went to stderr).
        try:
            result = json.loads(out) if out.strip() else {}
        except ValueError:
            result = {}
        scenario.exit_code = proc.returncode
        scenario.outcome = result.get("outcome", "error")
        scenario.permit = result.get("permitId") or scenario.permit
        scenario.detail = result.get("reason", "".join(stderr_lines).strip()[-200:])
        if bundle.exists():
            scenario.bundle = bundle
        return scenario

    def verify_bundles(self, scenarios: list[Scenario]) -> None:
        cfg = load_config(self.home, require=True)
        root_path = self.home / "trust-root.json"
        root_path.write_text(json.dumps(trust_root(cfg).to_json(), indent=2) + "\n")
        root = TrustRoot.parse(root_path.read_bytes())
        for s in scenarios:
            if s.bundle is None:
                continue
            result = verify(Bundle.parse(s.bundle.read_bytes()), root)
            failed = result.failed
            s.verified = "✓ verified" if result.verified else f"✗ {failed.name if failed else '?'}"


def play(home: Path, host: str, port: int, console: Console, keep_serving: bool = True) -> list[Scenario]:
    demo = Demo(home, host, port, console)
    console.print(f"[bold]Fiat demo[/] — home {home}, authority and log at {demo.url}")
    demo.start()
    scenarios: list[Scenario] = []
    try:
        py = sys.executable
        # 1. allowed and completed
        console.print("1. the release bot runs a command in its repository …")
        scenarios.append(
            demo.run(
                Scenario("allowed, completed"),
                "agent:release-bot",
                "shell:run",
                "repo:fiat",
                [py, "-c", "print('built and tested')"],
            )
        )
        # 2. denied
        console.print("2. the support assistant tries the same …")
        scenarios.append(
            demo.run(
                Scenario("denied by policy"),
                "agent:support-assistant",
                "shell:run",
                "repo:fiat",
                [py, "-c", "print('should never run')"],
            )
        )

        # 3. approval required, granted by the demo approver
        console.print("3. the release bot deploys the critical payments service (needs approval) …")

        def approve(line: str, _: Scenario) -> None:
            m = APPROVAL_RE.search(line)
            if m:
                console.print(f"   approval {m.group(1)} requested; the demo approver approves it")
                demo.fiat("approve", m.group(1), "--reason", "demo: change reviewed")

        scenarios.append(
            demo.run(
                Scenario("approval granted, completed"),
                "agent:release-bot",
                "deploy",
                "service:payments",
                [py, "-c", "import time; time.sleep(0.5); print('deployed payments 2.4.0')"],
                {"version": "2.4.0", "replicas": 4},
                on_line=approve,
            )
        )

        # 4. revoked mid-run
        console.print("4. a long job starts; an operator revokes its permit while it runs …")

        def revoke(line: str, s: Scenario) -> None:
            m = PERMIT_RE.search(line)
            if m:
                time.sleep(1.0)
                demo.fiat("revoke", "--permit", m.group(1), "--reason", "demo: operator revoked the job")

        scenarios.append(
            demo.run(
                Scenario("revoked mid-run, halted"),
                "agent:release-bot",
                "shell:run",
                "repo:fiat",
                [py, "-c", "import time; time.sleep(60)"],
                on_line=revoke,
            )
        )

        # 5. a measured file changes under a running job
        console.print("5. a job runs with a measured config file; the file is changed under it …")
        watched = home / "deploy-config.toml"
        watched.write_text("replicas = 3\n")

        def tamper(line: str, _: Scenario) -> None:
            if PERMIT_RE.search(line):
                time.sleep(1.0)
                watched.write_text("replicas = 300  # changed while running\n")

        scenarios.append(
            demo.run(
                Scenario("file changed, halted"),
                "agent:release-bot",
                "shell:run",
                "repo:fiat",
                [py, "-c", "import time; time.sleep(60)"],
                env={"FIAT_RUNTIME_FILES": str(watched)},
                on_line=tamper,
            )
        )
        demo.verify_bundles(scenarios)
        table = Table(title="Governed executions", expand=True)
        table.add_column("scenario", ratio=3)
        table.add_column("outcome", no_wrap=True)
        table.add_column("exit", no_wrap=True)
        table.add_column("why", ratio=4, overflow="fold")
        table.add_column("evidence", ratio=2)
        for s in scenarios:
            why = s.detail.replace("the permit " + (s.permit or "?"), "the permit")
            table.add_row(s.name, s.outcome, str(s.exit_code), _shorten(why, 90), s.verified)
        console.print(table)
        console.print(f"evidence bundles: {demo.evidence_dir}   trust root: {home / 'trust-root.json'}")
        console.print("(`fiat` is .venv/bin/fiat after `make run`)")
        console.print(
            f"verify one yourself: fiat verify {demo.evidence_dir}/1-shell-run.json --trust-root {home}/trust-root.json"
        )
        console.print(
            f"audit the log:       fiat log verify --url {demo.url}/log "
            f'--vkey "$(fiat log vkey --home {home})" --home {home}/auditor'
        )
        console.print(f"API docs:            {demo.url}/docs")
        if keep_serving:
            console.print("[bold]the authority keeps running; press Ctrl-C to stop[/]")
            try:
                while demo.server is not None and demo.server.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                console.print("stopping")
    finally:
        demo.stop()
    return scenarios


def _shorten(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, with an ellipsis if cut."""
    if len(text) <= width:
        return text
    cut = text[: width - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"
