"""``fiat bench mcp``: the latency a governed MCP tool call adds, beside a floor measured in the same run.

Every row is the latency of one ``tools/call`` of the ``echo`` tool (:mod:`fiat.bench.mcp_upstream`,
a small payload) made by the official SDK's client (``mcp.Client``) from this process, ``calls``
sequential calls per row after ``warmup`` calls, rows interleaved call by call (so drift in
the machine's speed hits every row alike), each over stdio and over streamable HTTP:

1. **direct** — client → the upstream;
2. **bare hop** — client → a pass-through proxy on the same SDK (low-level server + client)
   → the upstream, no governance: ``hop − direct`` is what any proxy built on the SDK adds;
3. **governed** — client → the gateway (``fiat mcp -- CMD`` on stdio, ``fiat mcp serve`` on
   HTTP) → the upstream, against a real ``fiat serve`` on a temporary home whose policy permits
   the call, in each receipt mode of :data:`VARIANTS`: ``logged`` (the default, *with* evidence
   logging on the call path: the signed receipt is spooled durably and logged by the authority
   before the answer) and ``spooled`` (``[mcp] receipts = "spooled"``, *without* evidence logging
   on the call path: the answer goes back once the receipt is signed and durably spooled; its
   upload to the authority runs in a background thread after it). Both log every receipt.

**Floor**, measured in this run, in this process: one authorization's fundamental cost — one raw
Cedar evaluation of the same request (the bench's policy, structured UIDs, pre-parsed), one raw
Ed25519 signature of a permit-sized message, and one durable log append (SHA-256 + a SQLite insert
committed with WAL + ``synchronous=FULL``) at a batch size of 1, since one agent calling
sequentially has nothing to share a commit with — plus the bare hop's added latency (p50). The
gateway's added latency (``governed − direct``, p50) is compared with it; the target is at most
1.5× the floor.

**Profile**: one governed call taken apart, in this process (a :class:`fiat.mcp.Gateway` on the
same home, its upstream over stdio), once per receipt mode: each part's wall time per call, by
time stamps around the gateway's own functions (environment measurement, the authorize round
trip and its DPoP proof, the local permit verification, the trust checks, the upstream call, the
end of the call, the receipt's signature, spool write and upload), the rest being the gateway's
own work between them. In ``spooled`` mode the upload runs in its own thread, off the call's
path: it is timed apart (``upload_off_path``) and not counted in the call.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import httpx
from rich.console import Console
from rich.progress import Progress

from fiat.authorize.policy import load_bundle
from fiat.bench.authorize import _free_port, cedar_us, sign_us
from fiat.bench.log import _floor_appends, _scratch, machine
from fiat.bench.mcp_upstream import child_env, stdio_params

PRINCIPAL = "agent:bench"
SERVER = "bench"  # the upstream's name behind the gateway: its tool is bench___echo
TOOL = "echo"
ARGUMENTS = {"text": "hello from fiat bench mcp", "n": 1}
UPSTREAM = [sys.executable, "-m", "fiat.bench.mcp_upstream"]

#: The governed variants: name → (what it means, the ``FIAT_*`` settings of the gateway's process).
#: Both sign, spool and log every receipt (``fiat.mcp.gateway``, step 5); they differ in what the
#: answer waits for.
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "logged": (
        "with evidence logging on the call path (the default): the receipt signed, spooled durably "
        "and logged by the authority before the answer",
        {},
    ),
    "spooled": (
        "without evidence logging on the call path ([mcp] receipts = spooled): the receipt signed "
        "and spooled durably before the answer, uploaded in the background after it",
        {"FIAT_MCP_RECEIPTS": "spooled"},
    ),
}

SCHEMA = """\
entity Team;
entity Agent in [Team] { owner: String };
entity McpServer;

type FiatFacts = {
  time: Long,
  weekday: Long,
  runtime: String,
  environment: { verified: Bool, digest: String },
  lineageDepth: Long,
};

action "bench___echo" appliesTo {
  principal: [Agent], resource: [McpServer],
  context: { input: { text: String, n?: Long }, fiat: FiatFacts }
};
"""
POLICY = """\
// fiat bench mcp: the bench agent may call the echo tool of the bench upstream.
@id("bench-echo")
@ttl("300")
permit (principal == Agent::"bench", action == Action::"bench___echo", resource == McpServer::"bench");
"""
ENTITIES = [
    {"uid": {"type": "Team", "id": "bench"}, "attrs": {}, "parents": []},
    {
        "uid": {"type": "Agent", "id": "bench"},
        "attrs": {"owner": "bench"},
        "parents": [{"type": "Team", "id": "bench"}],
    },
]


def write_policies(directory: Path) -> Path:
    """The bench's policy bundle: one permit for ``agent:bench`` to call ``bench___echo``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "schema.cedarschema").write_text(SCHEMA)
    (directory / "bench.cedar").write_text(POLICY)
    (directory / "entities.json").write_text(json.dumps(ENTITIES, indent=1))
    return directory


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def _stats(latencies: list[float]) -> dict[str, Any]:
    return {
        "calls": len(latencies),
        "p50_ms": round(_pct(latencies, 0.5) * 1000, 3),
        "p99_ms": round(_pct(latencies, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
    }


# -- the floor ---------------------------------------------------------------------------------


def _auth_floor(policies: Path, workdir: Path, reps: int, appends: int) -> dict[str, float]:
    """Cedar (the echo call's request) + one Ed25519 signature + one durable append at batch size 1."""
    bundle = load_bundle(policies)
    request = {  # what the authority hands Cedar for the gateway's call (fiat.authorize.policy)
        "principal": {"type": "Agent", "id": "bench"},
        "action": {"type": "Action", "id": f"{SERVER}___{TOOL}"},
        "resource": {"type": "McpServer", "id": SERVER},
        "context": {
            "input": ARGUMENTS,
            "fiat": {
                "time": int(time.time()),
                "weekday": 3,
                "runtime": "r",
                "environment": {"verified": True, "digest": "sha256:" + "0" * 64},
                "lineageDepth": 0,
            },
        },
    }
    cedar = cedar_us(bundle, request, reps)
    sign = sign_us(reps)
    db = workdir / f"floor-append-{time.monotonic_ns()}.db"
    append = 1e6 / _floor_appends(db, [os.urandom(1024) for _ in range(appends)], 1)
    return {"cedar_us": cedar, "sign_us": sign, "append_us": append, "auth_us": cedar + sign + append}


# -- processes ---------------------------------------------------------------------------------


class _Child:
    """A server process of the run; its stderr goes to a file (read for its port and for errors)."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, log
        self._err = log.open("wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err, env=env
        )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def wait_log(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first match of ``pattern`` in what it wrote to stderr (its readiness line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log.read_text(errors="replace"))
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not start for the benchmark: {self.tail()}")

    def port(self) -> int:
        """The port it printed (``port=N``, :mod:`fiat.bench.mcp_upstream`)."""
        return int(self.wait_log(r"port=(\d+)").group(1))

    def wait_http(self, url: str, ok: Callable[[httpx.Response], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if ok(httpx.get(url, timeout=1)):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start for the benchmark: {self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def _fiat(*args: str) -> list[str]:
    return [sys.executable, "-m", "fiat.cli.main", *args]


class _Servers:
    """Every process of the run: the upstream and hop over HTTP, and (governed) ``fiat serve``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.children: list[_Child] = []
        self.env = {**os.environ, **child_env()}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> _Child:
        child = _Child(name, argv, self.tmp / f"{name}.log", env or self.env)
        self.children.append(child)
        return child

    def http_upstream(self) -> str:
        port = self.start("upstream-http", [*UPSTREAM, "--http", "0"]).port()
        return f"http://127.0.0.1:{port}/mcp"

    def http_hop(self, upstream_url: str) -> str:
        port = self.start("hop-http", [*UPSTREAM, "--http", "0", "--forward", upstream_url]).port()
        return f"http://127.0.0.1:{port}/mcp"

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()


# -- the rows ----------------------------------------------------------------------------------


@asynccontextmanager
async def _client(target: list[str] | str, errlog: TextIO, env: dict[str, str] | None = None) -> AsyncIterator[Any]:
    """The SDK's client of a URL (streamable HTTP) or a command it starts (stdio)."""
    from mcp import Client
    from mcp.client.stdio import stdio_client

    if isinstance(target, str):
        async with Client(target) as client:
            yield client
        return
    params = stdio_params(target)
    if env:
        params = params.model_copy(update={"env": {**(params.env or {}), **env}})
    async with Client(stdio_client(params, errlog=errlog)) as client:
        yield client


async def _call(client: Any, tool: str) -> float:
    t0 = time.perf_counter()
    result = await client.call_tool(tool, ARGUMENTS)
    elapsed = time.perf_counter() - t0
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise RuntimeError(f"the benchmark's call of {tool} failed: {text}")
    return elapsed


async def _measure(
    rows: dict[str, tuple[list[str] | str, str, dict[str, str] | None]],
    calls: int,
    warmup: int,
    errlog: TextIO,
    progress: Progress | None,
) -> dict[str, list[float]]:
    """Open every row's client, warm each up, then ``calls`` rounds of one call per row."""
    latencies: dict[str, list[float]] = {name: [] for name in rows}
    async with AsyncExitStack() as stack:
        clients = {}
        for name, (target, _, env) in rows.items():
            clients[name] = await stack.enter_async_context(_client(target, errlog, env))
        for name, client in clients.items():
            for _ in range(warmup):
                await _call(client, rows[name][1])
        task = progress.add_task("tool calls", total=calls) if progress else None
        for i in range(calls):
            for name, client in clients.items():
                latencies[name].append(await _call(client, rows[name][1]))
            if progress and task is not None:
                progress.update(task, completed=i + 1)
    return latencies


# -- the profile of one governed call ----------------------------------------------------------


#: The names the gateway gives each call's heartbeat thread and (``spooled``) its receipt's
#: background upload thread (``fiat.mcp.gateway``).
HEARTBEAT_THREAD = "fiat-mcp-guard-"
RECEIPT_THREAD = "fiat-mcp-receipt-"
#: Threads whose receipt uploads are off the call's path: those, and the spool's flusher
#: (``fiat.enforce.spool``), which may pick up a receipt spooled but not yet logged.
OFF_PATH_THREADS = (RECEIPT_THREAD, "fiat-spool-flush")


class _Stopwatch:
    """Wall time per named part, per call, from wrappers around the gateway's own functions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: dict[str, float] = {}
        self.calls: list[dict[str, float]] = []
        self.off_path: list[float] = []  # the background receipt uploads (``spooled``)
        self._undo: list[Callable[[], None]] = []

    def add(self, part: str, seconds: float) -> None:
        thread = threading.current_thread().name
        if thread.startswith(HEARTBEAT_THREAD):
            return  # the heartbeat's own checks overlap the call's parts: what they cost the call is
            # the time the call's end waits for that thread (``heartbeat_stop``)
        with self.lock:
            if thread.startswith(OFF_PATH_THREADS):
                if part == "upload":  # after the answer, overlapping the next call: not the call's
                    self.off_path.append(seconds)
                return
            self.current[part] = self.current.get(part, 0.0) + seconds

    def wrap(self, owner: Any, attr: str, part: str) -> None:
        original = getattr(owner, attr)
        is_class = isinstance(owner, (type, type(sys)))
        if asyncio.iscoroutinefunction(original):

            @functools.wraps(original)
            async def timed_async(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await original(*a, **kw)
                finally:
                    self.add(part, time.perf_counter() - t0)

            setattr(owner, attr, timed_async)
        else:

            @functools.wraps(original)
            def timed(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return original(*a, **kw)
                finally:
                    self.add(part, time.perf_counter() - t0)

            setattr(owner, attr, timed)
        if is_class:
            self._undo.append(lambda: setattr(owner, attr, original))
        else:
            self._undo.append(lambda: owner.__dict__.pop(attr, None))

    def next_call(self, total: float) -> None:
        with self.lock:
            self.current["total"] = total
            self.calls.append(self.current)
            self.current = {}

    def undo(self) -> None:
        for fn in reversed(self._undo):
            fn()
        self._undo.clear()


#: The profile's parts, in the order of a call (what each timed function is).
PARTS = {
    "measure": "environment measurement (twice: before asking, and fresh for the permit check)",
    "dpop": "DPoP proof (one Ed25519 signature, client side)",
    "authorize": "authorize round trip (HTTP to `fiat serve`: DPoP verify, evidence, Cedar, permit and "
    "decision signatures, durable log append), DPoP proof aside",
    "verify_permit": "local permit verification (signature, key validity, claims, cnf, action, environment)",
    "check": "trust checks (the gate at establishment, the final check)",
    "upstream": "the upstream call (SDK client → upstream over stdio → back)",
    "heartbeat_stop": "ending the call: stopping the heartbeat thread (woken, then joined) and the result's digest",
    "receipt_sign": "receipt signature (DSSE, runtime key)",
    "spool": "receipt spool write (temporary file, fsync, rename, fsync of the directory)",
    "upload": "receipt upload round trip on the call's path (HTTP to `fiat serve`, durably logged)",
}


async def _profile_calls(cfg: Any, url: str, calls: int, warmup: int) -> dict[str, Any]:
    """The profile of one governed call in each receipt mode of :data:`VARIANTS`, a gateway each."""
    from fiat.mcp import Gateway
    from fiat.mcp import settings as mcp_settings

    gc = mcp_settings.parse({"servers": {SERVER: {"command": UPSTREAM, "env": child_env()}}}, "fiat bench mcp")
    name = f"{SERVER}___{TOOL}"
    out: dict[str, Any] = {}
    for variant in VARIANTS:  # the mode is read from the configuration, as FIAT_MCP_RECEIPTS sets it
        gateway = Gateway(replace(cfg, mcp=replace(cfg.mcp, receipts=variant)), gc, url=url)
        await gateway.start()
        try:
            for _ in range(warmup):
                await _governed_once(gateway, name)
            out[variant] = await _profile_pass(gateway, name, calls)
        finally:
            await gateway.close()
    return out


def _join_receipt_uploads() -> None:
    """Wait for the background receipt uploads still running (``spooled``), so none overlaps what follows."""
    for thread in threading.enumerate():
        if thread.name.startswith(RECEIPT_THREAD):
            thread.join(30)


async def _profile_pass(gateway: Any, name: str, calls: int) -> dict[str, Any]:
    """``calls`` governed calls, each part timed (:data:`PARTS`)."""
    from fiat.enforce import guard as guard_module
    from fiat.enforce.guard import Session
    from fiat.enforce.spool import ReceiptSpool

    watch = _Stopwatch()
    governor = gateway.governor
    assert governor is not None
    try:
        watch.wrap(governor.measurer, "measure", "measure")
        watch.wrap(governor.client, "_proof", "dpop")
        watch.wrap(governor.client, "authorize", "authorize")
        watch.wrap(guard_module, "verify_permit_locally", "verify_permit")
        watch.wrap(Session, "check", "check")
        watch.wrap(Session, "gate", "check")
        watch.wrap(gateway.upstreams[SERVER], "call", "upstream")
        watch.wrap(gateway, "_finish", "finish")
        watch.wrap(Session, "sign_receipt", "receipt_sign")
        watch.wrap(ReceiptSpool, "put", "spool")
        watch.wrap(ReceiptSpool, "upload", "upload")
        for _ in range(calls):
            t0 = time.perf_counter()
            await _governed_once(gateway, name)
            watch.next_call(time.perf_counter() - t0)
        await asyncio.to_thread(_join_receipt_uploads)
    finally:
        watch.undo()
    totals = [c["total"] for c in watch.calls]
    parts: dict[str, float] = {}
    for part in PARTS:
        if part != "heartbeat_stop":
            parts[part] = statistics.fmean(c.get(part, 0.0) for c in watch.calls)
    # The authorize wrapper includes the DPoP proof it makes, and the call's end (_finish) the
    # receipt's parts on the call's path: count each once, as its own part.
    parts["authorize"] -= parts["dpop"]
    finish = statistics.fmean(c.get("finish", 0.0) for c in watch.calls)
    parts["heartbeat_stop"] = max(0.0, finish - parts["receipt_sign"] - parts["spool"] - parts["upload"])
    mean = statistics.fmean(totals)
    rest = mean - sum(parts.values())
    off = watch.off_path
    return {
        "calls": len(totals),
        "p50_ms": round(_pct(totals, 0.5) * 1000, 3),
        "mean_ms": round(mean * 1000, 3),
        "parts_us": {k: round(parts[k] * 1e6, 1) for k in PARTS} | {"other": round(rest * 1e6, 1)},
        "upload_off_path": {"uploads": len(off), "mean_us": round(statistics.fmean(off) * 1e6, 1) if off else 0.0},
    }


async def _governed_once(gateway: Any, name: str) -> None:
    outcome = await gateway.govern(PRINCIPAL, name, ARGUMENTS)
    if outcome.outcome != "completed":
        text = " ".join(getattr(c, "text", "") for c in outcome.result.content)
        raise RuntimeError(f"the profiled governed call did not complete ({outcome.outcome}): {text}")


# -- the governed set-up -----------------------------------------------------------------------


class _Authority:
    """A temporary home with the bench's policy published, and a real ``fiat serve`` on it."""

    def __init__(self, servers: _Servers, policies: Path) -> None:
        from fiat.config import load_config
        from fiat.home import init_home

        self.home = servers.tmp / "home"
        init_home(self.home)
        self.cfg = load_config(self.home, require=True)
        self.env = {**servers.env, "FIAT_HOME": str(self.home)}
        subprocess.run(_fiat("policy", "publish", str(policies)), env=self.env, check=True, capture_output=True)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        serve = servers.start("fiat-serve", _fiat("serve", "--port", str(port)), self.env)
        serve.wait_http(self.url + "/healthz", lambda r: r.status_code == 200)

    def stdio_gateway(self) -> list[str]:
        return _fiat("mcp", "--principal", PRINCIPAL, "--name", SERVER, "--url", self.url, "--", *UPSTREAM)

    def http_gateway(self, servers: _Servers, upstream_url: str, variant: str, env: dict[str, str]) -> str:
        port = _free_port()
        config = servers.tmp / f"gateway-{variant}.toml"
        config.write_text(
            "[gateway]\n"
            f'host = "127.0.0.1"\nport = {port}\n\n'
            "[identity]\n"
            f'static = "{PRINCIPAL}"\n\n'
            f"[servers.{SERVER}]\n"
            f'url = "{upstream_url}"\n'
        )
        child = servers.start(
            f"gateway-http-{variant}",
            _fiat("mcp", "serve", "--config", str(config), "--url", self.url),
            {**self.env, **env},
        )
        child.wait_log(r"fiat mcp: serving")
        return f"http://127.0.0.1:{port}/mcp"


# -- the run -----------------------------------------------------------------------------------


def _gateway_available() -> bool:
    try:
        import fiat.mcp  # noqa: F401
    except ImportError:
        return False
    return True


def run_mcp_bench(
    calls: int = 200,
    warmup: int = 20,
    governed: bool = True,
    profile_calls: int | None = None,
    workdir: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """The rows, the floor (measured before and after the rows; their mean is used) and the profile."""
    governed = governed and _gateway_available()
    load = os.getloadavg()  # the machine's load when the run began (other work skews latency)
    progress = Progress(console=console, transient=True, disable=console is None)
    reps = max(200, min(3000, calls * 6))
    appends = max(50, min(500, calls))
    with progress, _scratch(workdir) as tmp, open(tmp / "stdio-servers.log", "w") as errlog:
        policies = write_policies(tmp / "policies")
        progress.add_task("floor", total=None)
        floor_before = _auth_floor(policies, tmp, reps, appends)
        servers = _Servers(tmp)
        try:
            up = servers.http_upstream()
            hop = servers.http_hop(up)
            rows: dict[str, tuple[list[str] | str, str, dict[str, str] | None]] = {
                "direct_stdio": (UPSTREAM, TOOL, None),
                "direct_http": (up, TOOL, None),
                "hop_stdio": ([*UPSTREAM, "--forward", "--", *UPSTREAM], TOOL, None),
                "hop_http": (hop, TOOL, None),
            }
            authority = None
            if governed:
                authority = _Authority(servers, policies)
                name = f"{SERVER}___{TOOL}"
                for variant, (_, env) in VARIANTS.items():
                    rows[f"gateway_stdio_{variant}"] = (
                        authority.stdio_gateway(),
                        name,
                        {"FIAT_HOME": str(authority.home), **env},
                    )
                    rows[f"gateway_http_{variant}"] = (authority.http_gateway(servers, up, variant, env), name, None)
            latencies = asyncio.run(_measure(rows, calls, warmup, errlog, progress))
            profile = None
            if authority is not None:
                progress.add_task("profile of one governed call", total=None)
                profile = asyncio.run(_profile_calls(authority.cfg, authority.url, profile_calls or calls, warmup))
        finally:
            servers.close()
        floor_after = _auth_floor(policies, tmp, reps, appends)
    return _result(latencies, floor_before, floor_after, calls, warmup, profile) | {
        "load_average": [round(x, 2) for x in load]
    }


def _result(
    latencies: dict[str, list[float]],
    before: dict[str, float],
    after: dict[str, float],
    calls: int,
    warmup: int,
    profile: dict[str, Any] | None,
) -> dict[str, Any]:
    rows = {name: _stats(values) for name, values in latencies.items()}
    auth = {k: (before[k] + after[k]) / 2 for k in before}
    faces: dict[str, Any] = {}
    for face in ("stdio", "http"):
        direct, hop = rows[f"direct_{face}"], rows[f"hop_{face}"]
        hop_added_us = (hop["p50_ms"] - direct["p50_ms"]) * 1000
        floor_us = auth["auth_us"] + hop_added_us
        entry: dict[str, Any] = {
            "hop_added_us": round(hop_added_us, 1),
            "floor_us": round(floor_us, 1),
            "variants": {},
        }
        for variant, (meaning, _) in VARIANTS.items():
            governed = rows.get(f"gateway_{face}_{variant}")
            if governed is None:
                continue
            added_us = (governed["p50_ms"] - direct["p50_ms"]) * 1000
            added_mean_us = (governed["mean_ms"] - direct["mean_ms"]) * 1000
            ratio = added_us / floor_us
            entry["variants"][variant] = {
                "meaning": meaning,
                "added_us": round(added_us, 1),
                "added_mean_us": round(added_mean_us, 1),
                "ratio_to_floor": round(ratio, 2),
                "target_met": ratio <= 1.5,
            }
        faces[face] = entry
    return {
        "benchmark": "mcp",
        "machine": machine(),
        "calls": calls,
        "warmup": warmup,
        "arguments": ARGUMENTS,
        "floor": {k: round(v, 1) for k, v in auth.items()}
        | {"auth_before_us": round(before["auth_us"], 1), "auth_after_us": round(after["auth_us"], 1)},
        "rows": rows,
        "faces": faces,
        "target_ratio": 1.5,
        "profile": profile,
    }


# -- the report --------------------------------------------------------------------------------

ROW_NAMES = {
    "direct": "direct: client → upstream",
    "hop": "bare hop: client → SDK pass-through → upstream",
    "gateway": "governed: client → gateway → upstream",
}


def _row_label(name: str) -> tuple[str, str]:
    kind, face, *variant = name.split("_", 2)
    label = ROW_NAMES[kind]
    if variant:
        label += f" ({variant[0]})"
    return face, label


def render_markdown(r: dict[str, Any]) -> str:
    m, f = r["machine"], r["floor"]
    lines = [
        f"### `fiat bench mcp` — {m['cpu']}, {m['cores']} cores, Python {m['python']}, SQLite {m['sqlite']}",
        "",
        f"One `tools/call` of `echo` ({len(json.dumps(r['arguments']))}-byte arguments), the SDK's client, "
        f"{r['calls']:,} sequential calls per row after {r['warmup']} warm-up calls, rows interleaved call by call "
        f"(load average {' / '.join(str(x) for x in r['load_average'])} when the run began):",
        "",
        "| face | path | p50 (ms) | p99 (ms) | mean (ms) |",
        "|---|---|---:|---:|---:|",
    ]
    order = ["direct", "hop", "gateway"]
    variants = list(VARIANTS)

    def place(name: str) -> tuple[int, int, int]:
        kind, face, *variant = name.split("_", 2)
        return (face != "stdio", order.index(kind), variants.index(variant[0]) if variant else -1)

    for name, row in sorted(r["rows"].items(), key=lambda kv: place(kv[0])):
        face, label = _row_label(name)
        lines.append(f"| {face} | {label} | {row['p50_ms']} | {row['p99_ms']} | {row['mean_ms']} |")
    lines += [
        "",
        f"Floor of one authorization, in process, in the same run (mean of {f['auth_before_us']} µs before and "
        f"{f['auth_after_us']} µs after the rows): one raw Cedar evaluation of the same request ({f['cedar_us']} µs) "
        f"+ one raw Ed25519 signature ({f['sign_us']} µs) + one durable log append at batch size 1 "
        f"(SHA-256 + SQLite insert, WAL + synchronous=FULL, one commit: {f['append_us']} µs; a single agent "
        f"calling sequentially has nothing to share a commit with) = {f['auth_us']} µs.",
        "",
        "| face | bare hop adds (p50) | floor: authorization + hop | variant | gateway adds (p50) | (mean) "
        "| ratio to the floor | ≤ 1.5× |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for face, e in sorted(r["faces"].items(), key=lambda kv: kv[0] != "stdio"):
        if not e["variants"]:
            lines.append(f"| {face} | {e['hop_added_us']} µs | {e['floor_us']} µs | — | — | — | — | — |")
        for variant in [v for v in VARIANTS if v in e["variants"]]:
            v = e["variants"][variant]
            lines.append(
                f"| {face} | {e['hop_added_us']} µs | {e['floor_us']} µs | {variant}: {v['meaning']} | "
                f"{v['added_us']} µs | {v['added_mean_us']} µs | {v['ratio_to_floor']}× | "
                f"{'yes' if v['target_met'] else '**no**'} |"
            )
    p = r.get("profile")
    if p:
        modes = [mode for mode in VARIANTS if mode in p]
        first = p[modes[0]]
        lines += [
            "",
            f"One governed call taken apart ({first['calls']:,} calls per receipt mode of a `fiat.mcp.Gateway` in "
            "the bench's process, upstream over stdio, the same `fiat serve`; mean wall time per call of each part):",
            "",
            "| part | " + " | ".join(f"{mode} (µs)" for mode in modes) + " | share (" + modes[0] + ") |",
            "|---|" + "---:|" * (len(modes) + 1),
        ]
        total = first["mean_ms"] * 1000
        for part in [*PARTS, "other"]:  # in the order of a call
            us = first["parts_us"][part]
            what = PARTS.get(part, "the gateway's own work between them (threads, heartbeat, digests, copies)")
            cells = " | ".join(str(p[mode]["parts_us"][part]) for mode in modes)
            lines.append(f"| {what} | {cells} | {round(100 * us / total, 1)} % |")
        cells = " | ".join(f"**{round(p[mode]['mean_ms'] * 1000, 1)}** (p50 {p[mode]['p50_ms']} ms)" for mode in modes)
        lines.append(f"| **a governed call, in process** | {cells} | 100 % |")
        for mode in modes:
            off = p[mode]["upload_off_path"]
            if off["uploads"]:
                lines += [
                    "",
                    f"{mode}: {off['uploads']:,} receipt uploads ran after their answers, off the call's path, "
                    f"{off['mean_us']} µs each (mean), overlapping the next call.",
                ]
        auth = first["parts_us"]["authorize"]
        inside = f["cedar_us"] + 2 * f["sign_us"] + f["append_us"]
        lines += [
            "",
            f"Of the authorize round trip's {auth} µs ({modes[0]}), the same run's floors account for "
            f"{round(inside, 1)} µs (Cedar {f['cedar_us']} µs, two Ed25519 signatures — permit and decision "
            f"statement — {round(2 * f['sign_us'], 1)} µs, one durable append {f['append_us']} µs); the other "
            f"{round(auth - inside, 1)} µs are HTTP both ways, DPoP verification, evidence appraisal, request "
            "canonicalization and the decider's queue.",
        ]
    return "\n".join(lines) + "\n"
