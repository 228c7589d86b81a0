"""``fiat demo`` (what ``make run`` runs): the whole loop, for real, on embedded defaults.

It initialises a fresh home (SQLite, local keys), starts three witnesses (real
``fiat witness serve`` processes, C2SP tlog-witness; the home asks for two cosignatures on every
checkpoint and its guards insist on them: ``runtime.require_witnessed``), publishes the example
Cedar bundle, starts ``fiat serve`` on 127.0.0.1 and plays five executions through
real ``fiat run`` processes:

1. allowed and completed;
2. denied by policy (never started);
3. needing a human approval, granted with the demo approver's key;
4. revoked while running, and halted;
5. halted because a measured file changed under it.

Then an agent session through the MCP gateway (docs/mcp.md): a real ``fiat mcp`` stdio process
in front of the example desk server (``examples/mcp/server.py``), driven by the official MCP SDK's
client in this process:

6. an allowed tool call (a small refund);
7. a denied one (its model-readable error is shown);
8. an approval-gated one: the tool error names the approval, the demo approver approves it, and
   the identical retry is permitted;
9. a slow call whose permit is revoked mid-call, and halted (the desk gets ``notifications/cancelled``);
10. a delegated sub-agent: the planner runs under ``fiat run --scope``; its researcher reaches the
    desk through ``fiat mcp --parent`` (each call's permit a child of the planner's); revoking the
    planner's permit halts the researcher's call in flight, and the planner.

Scenarios 1-5 are :data:`fiat.demo_runs.SCENARIOS`, the list the demo page (``/ui/demo``) launches
too: the demo home sets ``[ui] demo_controls``, so that page's controls need no admin token there.

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
from typing import IO, Any, TextIO

import httpx
from rich.console import Console
from rich.table import Table

from fiat.config import CONFIG_NAME, load_config
from fiat.demo_runs import APPROVAL_RE, BY_NAME, PERMIT_RE, DemoScenario
from fiat.errors import FiatError
from fiat.home import init_home, trust_root
from fiat.serving import check_port_free
from fiat.verify import Bundle, TrustRoot, verify

#: The example MCP server of a checkout (``make run`` runs in one); an installed package has none.
DESK = Path(__file__).resolve().parents[2] / "examples" / "mcp" / "server.py"
#: The gateway's timings: a short heartbeat and grace keep the agent session's halts quick.
GATEWAY_ENV = {"FIAT_RUNTIME_HEARTBEAT_MS": "100", "FIAT_RUNTIME_HALT_GRACE_MS": "300"}

EXAMPLES = Path(__file__).resolve().parent / "examples" / "policies"
#: The shared scenarios (fiat.demo_runs) ``fiat demo`` plays as 1-5, in this order.
NAMES = ("allowed", "denied", "approval", "long-job", "file-changed")


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
        self.bundles = 0
        self.witnesses: list[DemoWitness] = []

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
        enable_demo_controls(self.home)
        self.start_witnesses()
        self.fiat("keys", "add", "--role", "approver", "--name", "demo-approver", "--group", "ops")
        self.evidence_dir.mkdir()
        published = self.fiat("policy", "publish", str(EXAMPLES))
        if published.returncode != 0:
            raise FiatError(f"could not publish the example policy: {published.stderr.strip()}")
        # `fiat serve` prints its banner once it holds the port: until then, whatever answers
        # on the port is not ours (it may have taken the port since the check above).
        self.server, _ = start_child(
            ["serve", "--host", self.host, "--port", str(self.port)], self.env, SERVE_BANNER, "/healthz",
            f"fiat serve on {self.url}", self.url,
        )  # fmt: skip

    def start_witnesses(self) -> None:
        """Three witnesses (real ``fiat witness serve`` processes, C2SP tlog-witness) cosign the demo log;
        the home asks for two of their cosignatures on every checkpoint (``log.witness_quorum``) and its
        guards run only on checkpoints that quorum cosigned recently (``runtime.require_witnessed``)."""
        vkey = self.fiat("log", "vkey")
        if vkey.returncode != 0:
            raise FiatError(f"could not read the demo log's verifier key: {vkey.stderr.strip()}")
        for i in range(1, WITNESSES + 1):
            name = f"witness.fiat.local/w{i}"
            witness = DemoWitness(name, self.home / "witnesses" / f"w{i}")
            self.witnesses.append(witness)
            for args in (
                ("witness", "init", "--home", str(witness.home), "--name", name),
                ("witness", "add-log", "--home", str(witness.home), "--vkey", vkey.stdout.strip()),
            ):
                done = self.fiat(*args)
                if done.returncode != 0:
                    raise FiatError(f"`fiat {' '.join(args[:2])}` failed: {done.stderr.strip()[-400:]}")
            witness_env = {k: v for k, v in self.env.items() if k != "FIAT_HOME"}
            witness.proc, witness.url = start_child(
                ["witness", "serve", "--home", str(witness.home), "--port", "0"], witness_env, LISTENING, "/",
                f"the witness {name}",
            )  # fmt: skip
            cosigner = self.fiat("witness", "vkey", "--home", str(witness.home))
            added = self.fiat(
                "keys", "add", "--role", "witness", "--name", name, "--vkey", cosigner.stdout.strip(),
                "--url", witness.url,
            )  # fmt: skip
            if added.returncode != 0:
                raise FiatError(f"could not register the witness {name}: {added.stderr.strip()[-400:]}")
        set_settings(self.home, {("log", "witness_quorum"): "2", ("runtime", "require_witnessed"): "true"})

    def stop(self) -> None:
        stop_child(self.server)
        for witness in self.witnesses:
            stop_child(witness.proc)

    def play_scenario(self, spec: DemoScenario, env: dict[str, str] | None = None, on_line: Any = None) -> Scenario:
        """One of the shared scenarios (:data:`fiat.demo_runs.SCENARIOS`), as ``fiat run`` plays it."""
        return self.run(
            Scenario(spec.row),
            spec.principal,
            spec.action,
            spec.resource,
            spec.argv(),
            dict(spec.context),
            env=env,
            on_line=on_line,
        )

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
        extra: list[str] | None = None,
    ) -> Scenario:
        bundle = self.evidence_path(action)
        args = [
            sys.executable, "-m", "fiat.cli.main", "run", "--json",
            "--principal", principal, "--action", action, "--resource", resource,
            "--context", json.dumps(context or {}), "--evidence", str(bundle), *(extra or []), "--", *command,
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

    def evidence_path(self, name: str) -> Path:
        """The next numbered bundle file (numbered when asked: a running execution writes its own later)."""
        self.bundles += 1
        return self.evidence_dir / f"{self.bundles}-{re.sub(r'[^A-Za-z0-9_-]', '-', name)}.json"

    def export_bundle(self, permit_id: str, name: str) -> Path:
        """``fiat bundle`` in process: the execution's evidence (with its ancestors) from the log."""
        from fiat.wiring import open_evidence

        recorder = open_evidence(load_config(self.home, require=True))
        try:
            bundle = recorder.bundle(permit_id)
        finally:
            recorder.close()
        path = self.evidence_path(name)
        path.write_text(json.dumps(bundle.to_json(), indent=2) + "\n")
        return path

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
            s.verified = (
                f"✓ verified, {result.assurance.text}"
                if result.verified and result.assurance is not None
                else "✓ verified"
                if result.verified
                else f"✗ {failed.name if failed else '?'}"
            )


#: The demo's witnesses: the trust root asks for two of the three cosignatures on every checkpoint.
WITNESSES = 3
LISTENING = re.compile(r"fiat witness: listening on (https?://\S+)")


@dataclass
class DemoWitness:
    """One ``fiat witness serve`` child of the demo, on a free port of the demo's loopback."""

    name: str
    home: Path
    url: str = ""
    proc: subprocess.Popen[str] | None = None


#: What `fiat serve` prints once it holds its port (the demo knows its URL: the port it asked for).
SERVE_BANNER = re.compile(r"^Fiat authority at ")


def start_child(
    args: list[str], env: dict[str, str], banner: re.Pattern[str], ready: str, what: str, url: str = ""
) -> tuple[subprocess.Popen[str], str]:
    """Start ``fiat ARGS`` and wait (30 s at most) until its stderr prints ``banner`` and
    ``GET <url><ready>`` answers 200; returns the process and the URL (``url``, else the banner's
    group 1: the URL it printed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fiat.cli.main", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = threading.Event()
    said: list[str] = []

    def watch(stream: IO[str]) -> None:
        nonlocal url
        for line in stream:
            said.append(line)
            m = banner.search(line)
            if m and not found.is_set():
                url = url or m.group(1).rstrip("/")
                found.set()

    assert proc.stderr is not None
    threading.Thread(target=watch, args=(proc.stderr,), daemon=True).start()
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            time.sleep(0.2)  # let the watcher read what it said
            raise FiatError(f"{what} did not start: {''.join(said).strip()[-400:]}")
        if not found.wait(0.2):
            continue
        try:
            if httpx.get(url + ready, timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    stop_child(proc)
    raise FiatError(f"{what} did not answer within 30 s")


def stop_child(proc: subprocess.Popen[str] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def set_settings(home: Path, values: dict[tuple[str, str], str]) -> None:
    """Set settings of the demo home's ``fiat.toml`` (as ``fiat init`` wrote it: each key on its line)."""
    path = home / CONFIG_NAME
    lines = path.read_text(encoding="utf-8").split("\n")
    section = ""
    pending = dict(values)
    for i, line in enumerate(lines):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        key = line.split(" = ", 1)[0]
        if (section, key) in pending:
            lines[i] = f"{key} = {pending.pop((section, key))}"
    if pending:
        missing = ", ".join(f"{s}.{k}" for s, k in pending)
        raise FiatError(f"{path} has no line for {missing} (was it written by `fiat init`?)")
    path.write_text("\n".join(lines), encoding="utf-8")


def enable_demo_controls(home: Path) -> None:
    """``[ui] demo_controls = true`` in the demo home's ``fiat.toml``: its page's controls need no
    admin token (:mod:`fiat.api.routes.demo`). Only ``fiat demo``'s own, freshly made home."""
    path = home / CONFIG_NAME
    text = path.read_text(encoding="utf-8")
    if "\ndemo_controls = false\n" not in text:
        raise FiatError(f"{path} has no `demo_controls = false` line to turn on (was it written by `fiat init`?)")
    path.write_text(text.replace("\ndemo_controls = false\n", "\ndemo_controls = true\n"), encoding="utf-8")


def play(home: Path, host: str, port: int, console: Console, keep_serving: bool = True) -> list[Scenario]:
    demo = Demo(home, host, port, console)
    console.print(f"[bold]Fiat demo[/] — home {home}, authority and log at {demo.url}")
    demo.start()
    scenarios: list[Scenario] = []
    try:
        # 1-5: the `fiat run` scenarios, as the demo page (/ui/demo) launches them too (fiat.demo_runs).
        allowed, denied, approval, long_job, file_changed = (BY_NAME[n] for n in NAMES)
        console.print("1. the release bot runs a command in its repository …")
        scenarios.append(demo.play_scenario(allowed))
        console.print("2. the support assistant tries the same …")
        scenarios.append(demo.play_scenario(denied))

        # 3. approval required, granted by the demo approver
        console.print("3. the release bot deploys the critical payments service (needs approval) …")

        def approve(line: str, _: Scenario) -> None:
            m = APPROVAL_RE.search(line)
            if m:
                console.print(f"   approval {m.group(1)} requested; the demo approver approves it")
                demo.fiat("approve", m.group(1), "--reason", "demo: change reviewed")

        scenarios.append(demo.play_scenario(approval, on_line=approve))

        # 4. revoked mid-run
        console.print("4. a long job starts; an operator revokes its permit while it runs …")

        def revoke(line: str, s: Scenario) -> None:
            m = PERMIT_RE.search(line)
            if m:
                time.sleep(1.0)
                demo.fiat("revoke", "--permit", m.group(1), "--reason", "demo: operator revoked the job")

        scenarios.append(demo.play_scenario(long_job, on_line=revoke))

        # 5. a measured file changes under a running job
        console.print("5. a job runs with a measured config file; the file is changed under it …")
        watched = home / "deploy-config.toml"
        watched.write_text("replicas = 3\n")

        def tamper(line: str, _: Scenario) -> None:
            if PERMIT_RE.search(line):
                time.sleep(1.0)
                watched.write_text("replicas = 300  # changed while running\n")

        scenarios.append(demo.play_scenario(file_changed, env={"FIAT_RUNTIME_FILES": str(watched)}, on_line=tamper))
        if DESK.exists():
            scenarios += agent_session(demo, DESK)
        else:
            console.print(f"(no {DESK.relative_to(DESK.parents[2])} here: the agent session needs a checkout)")
        demo.verify_bundles(scenarios)
        table = Table(title="Governed executions and tool calls", expand=True)
        table.add_column("scenario", ratio=3)
        table.add_column("outcome", no_wrap=True)
        table.add_column("exit", no_wrap=True)
        table.add_column("why", ratio=4, overflow="fold")
        table.add_column("evidence", ratio=2)
        for s in scenarios:
            why = s.detail.replace("the permit " + (s.permit or "?"), "the permit")
            exit_code = "-" if s.exit_code is None else str(s.exit_code)
            table.add_row(s.name, s.outcome, exit_code, _shorten(why, 90), s.verified)
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
        console.print(
            f"witnesses:           {', '.join(w.url for w in demo.witnesses)} (2 of 3 cosign every checkpoint: "
            f"curl {demo.url}/log/checkpoint)"
        )
        console.print(f"web pages:           {demo.url}/ui/  (console, demo, proof viewer, health, lineage)")
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


# -- the agent session through the MCP gateway (scenarios 6-10) ---------------------------------------


def agent_session(demo: Demo, desk: Path) -> list[Scenario]:
    """Scenarios 6-10: the SDK's client drives real ``fiat mcp`` gateway processes (see the module docstring)."""
    import anyio

    return anyio.run(_agent_session, demo, desk)


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def _outcome(result: Any) -> str:
    said = _text(result)
    if not result.is_error:
        return "completed"
    for prefix, outcome in (("Halted at ", "halted"), ("Denied by policy", "denied"), ("Not called yet", "pending")):
        if said.startswith(prefix):
            return outcome
    return "failed"


async def _agent_session(demo: Demo, desk: Path) -> list[Scenario]:
    import anyio
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    console, home = demo.console, demo.home
    out: list[Scenario] = []

    def params(principal: str, parent: str | None = None) -> StdioServerParameters:
        args = ["-m", "fiat.cli.main", "mcp", "--principal", principal, "--name", "desk"]
        args += ["--resource-argument", "refund=order_id:Order", *(("--parent", parent) if parent else ())]
        args += ["--", sys.executable, str(desk), "--root", str(desk.parent)]
        return StdioServerParameters(
            command=sys.executable, args=args, env={**demo.env, **GATEWAY_ENV}, cwd=os.getcwd()
        )

    def record(name: str, result: Any, tool: str, outcome: str | None = None) -> Scenario:
        permit = (result.meta or {}).get("fiat/permit")
        s = Scenario(name, outcome or _outcome(result), None, permit, _text(result))
        if permit:
            s.bundle = demo.export_bundle(permit, tool)
        out.append(s)
        return s

    async def revoke_when_called(gateway_log: Path, pick: Any, reason: str) -> str:
        """Once the gateway has permitted slow_task and the desk runs it, revoke the permit ``pick`` names."""

        def wait() -> str:
            deadline = time.time() + 20
            while time.time() < deadline:
                said = gateway_log.read_text() if gateway_log.exists() else ""
                target = pick(said)
                if "desk___slow_task for" in said and target:
                    time.sleep(0.5)  # the call is on its way to the desk, and running there
                    return str(target)
                time.sleep(0.05)
            raise FiatError("the slow call did not start within 20 s")

        target = await anyio.to_thread.run_sync(wait)
        await anyio.to_thread.run_sync(lambda: demo.fiat("revoke", "--permit", target, "--reason", reason))
        return target

    def last_permit(tool: str) -> Any:
        return lambda said: (
            [m.group(1) for m in re.finditer(r"permit (pmt_[A-Za-z0-9_-]+): " + tool, said)] or [None]
        )[-1]

    gateway_log = home / "gateway.log"
    agent = "agent:support-assistant"
    with gateway_log.open("w") as errlog:
        async with Client(stdio_client_of(params(agent), errlog)) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            console.print(f"6. an agent session through the MCP gateway; {agent} may call: {', '.join(tools)}")
            small = {"order_id": "48213", "amount_cents": 2500, "currency": "EUR"}
            record("MCP: allowed tool call", await client.call_tool("desk___refund", small), "desk-refund")
            console.print("7. it asks for a refund no policy permits; the model reads:")
            denied = await client.call_tool("desk___refund", {**small, "amount_cents": 500000})
            console.print(f"   [italic]{_shorten(_text(denied), 400)}[/]", highlight=False)
            record("MCP: denied tool call", denied, "desk-refund")
            console.print("8. a larger refund needs an approval of ops; the demo approver approves it …")
            larger = {**small, "amount_cents": 25000}
            first = await client.call_tool("desk___refund", larger)
            approval = (first.meta or {}).get("fiat/approval")
            if approval:
                await anyio.to_thread.run_sync(
                    lambda: demo.fiat("approve", str(approval), "--reason", "demo: refund checked")
                )
                record(
                    "MCP: approval granted, retry completed",
                    await client.call_tool("desk___refund", larger),
                    "desk-refund",
                )
            else:
                record("MCP: approval granted, retry completed", first, "desk-refund", "no approval asked")
            console.print("9. a slow tool call starts; an operator revokes its permit mid-call …")
            async with anyio.create_task_group() as tg:
                box: list[Any] = []

                async def slow() -> None:
                    box.append(await client.call_tool("desk___slow_task", {"seconds": 30}))

                tg.start_soon(slow)
                await revoke_when_called(gateway_log, last_permit("desk___slow_task"), "demo: call revoked")
            record("MCP: revoked mid-call, halted", box[0], "desk-slow-task")

    console.print("10. the planner (fiat run --scope) starts a researcher sub-agent through the gateway; "
                  "its permit is revoked …")  # fmt: skip
    planner = Scenario("MCP: the planner's session (parent), halted")
    scope = ["--scope", 'desk___read_file@McpServer::"desk"', "--scope", 'desk___slow_task@McpServer::"desk"']
    ready = threading.Event()
    runner = threading.Thread(
        target=demo.run,
        args=(
            planner,
            "agent:planner",
            "mcp:session",
            'McpServer::"desk"',
            [sys.executable, "-c", "import time; time.sleep(60)"],
        ),
        kwargs={"extra": scope, "on_line": lambda line, s: ready.set() if PERMIT_RE.search(line) else None},
        daemon=True,
    )
    runner.start()
    if not await anyio.to_thread.run_sync(lambda: ready.wait(30)) or planner.permit is None:
        raise FiatError("the planner's run did not start")
    sub_log = home / "gateway-researcher.log"
    with sub_log.open("w") as errlog:
        async with Client(stdio_client_of(params("agent:researcher", planner.permit), errlog)) as client:
            refused = await client.call_tool("desk___create_ticket", {"title": "outside the planner's scope"})
            console.print(
                f"   outside the planner's scope: [italic]{_shorten(_text(refused), 200)}[/]", highlight=False
            )
            async with anyio.create_task_group() as tg:
                box = []

                async def delegated() -> None:
                    box.append(await client.call_tool("desk___slow_task", {"seconds": 30}))

                tg.start_soon(delegated)
                parent = planner.permit
                await revoke_when_called(sub_log, lambda _said: parent, "demo: the planner is stopped")
    record("MCP: delegated sub-agent, parent revoked, halted", box[0], "desk-slow-task-delegated")
    await anyio.to_thread.run_sync(runner.join, 30)
    out.append(planner)
    return out


def stdio_client_of(params: Any, errlog: TextIO) -> Any:
    """The SDK's stdio transport, the gateway's stderr (its ``permit pmt_…`` lines) to ``errlog``."""
    from mcp.client.stdio import stdio_client

    return stdio_client(params, errlog=errlog)


def _shorten(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, with an ellipsis if cut."""
    if len(text) <= width:
        return text
    cut = text[: width - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"
