"""``fiat bench ui``: each web page's weight and time to first render, and in-browser verification
timed beside the CLI's — in a real Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright).

The bench builds a scratch home (``fiat init``, the example policies), starts a real ``fiat serve``
on it, seeds it with real governed executions (``fiat run``: allowed, denied and a parent with a
child), exports one execution's evidence bundle and the trust root, and then:

* **pages** — every page under ``/ui/`` loaded ``loads`` times, each in a fresh browser context
  (a cold cache): the requests it makes, its weight (the bytes of every response body), the time
  to first contentful paint (the browser's own ``paint`` timing), ``DOMContentLoaded`` and
  ``load``. **Floor**, measured in the same run from the same server: the first paint of the
  smallest document it serves (``/log/checkpoint``, a few lines of plain text) — what any page
  costs before its own work.
* **verification** — the same bundle verified by the proof viewer's JavaScript verifier inside the
  page (WebCrypto, ``performance.now()`` around the call, no network), by ``fiat.verify`` in
  this process, and by the ``fiat verify`` command (a process of its own: interpreter start-up
  included, which is what an auditor at a shell waits for).

Playwright is a development dependency (``pip install -e '.[dev]'``); without it, or without
the browser, the bench says what to install.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress

from fiat.bench.log import machine
from fiat.errors import FiatError

CHROMIUM = Path(os.environ.get("FIAT_BENCH_CHROMIUM", "/usr/bin/chromium"))
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "policies"
#: The page that stands for "what any page costs": the smallest document the server has.
FLOOR_PATH = "/log/checkpoint"
#: The JavaScript that verifies one bundle in the proof viewer's page: window.fiatVerify(bundle, root).
VERIFY_JS = """async ([bundleB64, rootB64, reps]) => {
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bundle = bytes(bundleB64), root = bytes(rootB64);
  const times = [];
  let report = null;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    report = await window.fiatVerify(bundle, root);
    times.push(performance.now() - t0);
  }
  return { times, verified: report.verified, steps: report.steps.length };
}"""


#: One generation of a lineage chain: runs the next under ``fiat run --parent`` (its own permit id).
GENERATION = """import os, subprocess, sys
left, home, url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if left > 0:
    argv = [sys.executable, "-m", "fiat.cli.main", "run", "--home", home, "--url", url,
            "--parent", os.environ["FIAT_PERMIT_ID"], "--principal", "agent:release-bot",
            "--action", "shell:run", "--resource", "repo:fiat",
            "--", sys.executable, __file__, str(left - 1), home, url]
    sys.exit(subprocess.run(argv).returncode)
print("generation done")
"""


def _fiat(*args: str) -> list[str]:
    return [sys.executable, "-m", "fiat.cli.main", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ok(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    if p.returncode != 0:
        raise FiatError(f"{' '.join(argv[2:5])} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p


@contextmanager
def seeded_server(work: Path) -> Iterator[tuple[str, Path, Path, Path]]:
    """A real ``fiat serve`` on a fresh home with real executions in its log.

    Yields (url, home, bundle file of one allowed execution, trust-root file).
    """
    home = work / "home"
    _ok(_fiat("init", "--home", str(home), "--json"))
    _ok(_fiat("policy", "publish", str(EXAMPLES), "--home", str(home), "--json"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        _fiat("serve", "--home", str(home), "--host", "127.0.0.1", "--port", str(port)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise FiatError(f"fiat serve did not start: {(work / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.05)
        env = {**os.environ, "FIAT_RUNTIME_CONTAINMENT": "process"}
        run = [*_fiat("run", "--home", str(home), "--url", url)]
        bundle = work / "bundle.json"
        allowed = ("--principal", "agent:release-bot", "--action", "shell:run", "--resource", "repo:fiat")
        _ok([*run, *allowed, "--evidence", str(bundle), "--", sys.executable, "-c", "print('built')"], env)
        for i in range(3):
            _ok([*run, *allowed, "--", sys.executable, "-c", f"print({i})"], env)
        # Three generations: a root whose command runs a child `fiat run --parent $FIAT_PERMIT_ID`, and so on.
        chain = work / "generation.py"
        chain.write_text(GENERATION)
        _ok([*run, *allowed, "--", sys.executable, str(chain), "2", str(home), url], env)
        denied = ("--principal", "agent:support-assistant", "--action", "shell:run", "--resource", "repo:fiat")
        subprocess.run([*run, *denied, "--", "true"], capture_output=True, timeout=60, env=env)  # exits non-zero
        root = work / "trust-root.json"
        _ok(_fiat("trust-root", "export", "--home", str(home), "-o", str(root)))
        yield url, home, bundle, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def _load(browser: Any, url: str) -> dict[str, Any]:
    """One cold load of ``url`` in a fresh context: requests, bytes, paint and load timings (ms)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    responses: list[Any] = []
    page.on("response", lambda r: responses.append(r))
    try:
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle", timeout=5000)
        timing = page.evaluate(
            """() => {
              const nav = performance.getEntriesByType("navigation")[0];
              const fcp = performance.getEntriesByType("paint").find((e) => e.name === "first-contentful-paint");
              const fp = performance.getEntriesByType("paint").find((e) => e.name === "first-paint");
              return { fcp: fcp ? fcp.startTime : (fp ? fp.startTime : null),
                       dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd };
            }"""
        )
        weight = 0
        for r in responses:
            if r.request.resource_type == "eventsource":
                continue  # a live stream never ends: not part of the page's weight
            with suppress(Exception):  # a redirect or an aborted stream has no body
                weight += len(r.body())
        return {"requests": len(responses), "bytes": weight, **timing}
    finally:
        context.close()


def run_ui_bench(*, loads: int = 5, verifications: int = 20, console: Console | None = None) -> dict[str, Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise FiatError("fiat bench ui needs Playwright: pip install -e '.[dev]'") from exc
    if not CHROMIUM.exists():
        raise FiatError(f"fiat bench ui needs Chromium at {CHROMIUM}: apt-get install chromium")
    from fiat.api.routes.ui import PAGES
    from fiat.verify import Bundle, TrustRoot, verify

    work = Path(tempfile.mkdtemp(prefix="fiat-bench-ui-"))
    progress = Progress(console=console, transient=True, disable=console is None)
    try:
        with progress, seeded_server(work) as (url, _home, bundle_file, root_file):
            bundle_bytes, root_bytes = bundle_file.read_bytes(), root_file.read_bytes()
            # fiat.verify in this process
            root = TrustRoot.parse(root_bytes)
            report = verify(Bundle.parse(bundle_bytes), root)
            if not report.verified:
                raise FiatError("the seeded bundle does not verify; the bench cannot time it")
            py_times = []
            for _ in range(max(verifications, 50)):
                t0 = time.perf_counter()
                verify(Bundle.parse(bundle_bytes), root)
                py_times.append((time.perf_counter() - t0) * 1000)
            cli_times = []
            for _ in range(3):
                t0 = time.perf_counter()
                _ok(_fiat("verify", str(bundle_file), "--trust-root", str(root_file)))
                cli_times.append((time.perf_counter() - t0) * 1000)
            pages: dict[str, dict[str, Any]] = {}
            task = progress.add_task("loading pages", total=(len(PAGES) + 1) * loads + 1)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
                try:
                    for name, path in [("floor", FLOOR_PATH), *((p or "index", f"/ui/{p}") for p in PAGES)]:
                        runs = []
                        for _ in range(loads):
                            runs.append(_load(browser, url + path))
                            progress.advance(task)
                        fcps = [r["fcp"] for r in runs if r["fcp"] is not None]
                        pages[name] = {
                            "path": path,
                            "requests": max(r["requests"] for r in runs),
                            "bytes": max(r["bytes"] for r in runs),
                            "fcp_p50_ms": round(statistics.median(fcps), 1) if fcps else None,
                            "dcl_p50_ms": round(statistics.median(r["dcl"] for r in runs), 1),
                            "load_p50_ms": round(statistics.median(r["load"] for r in runs), 1),
                        }
                    context = browser.new_context()
                    page = context.new_page()
                    page.goto(url + "/ui/verify", wait_until="load")
                    deadline = time.monotonic() + 10  # polled: the page's CSP refuses wait_for_function's eval
                    while not page.evaluate("typeof window.fiatVerify === 'function'"):
                        if time.monotonic() > deadline:
                            raise FiatError("the proof viewer did not load its verifier within 10 s")
                        time.sleep(0.05)
                    requests: list[str] = []
                    page.on("request", lambda r: requests.append(r.url))
                    b64 = base64.b64encode
                    js = page.evaluate(VERIFY_JS, [b64(bundle_bytes).decode(), b64(root_bytes).decode(), verifications])
                    progress.advance(task)
                    context.close()
                finally:
                    browser.close()
            if not js["verified"]:
                raise FiatError("the proof viewer did not verify the bundle fiat.verify verified")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor = pages.pop("floor")
    js_times = [float(t) for t in js["times"][1:] or js["times"]]  # the first call compiles the module's code
    py_p50 = statistics.median(py_times)
    return {
        "benchmark": "ui",
        "machine": machine(),
        "browser": f"Chromium ({CHROMIUM})",
        "loads": loads,
        "floor": floor,
        "pages": pages,
        "verification": {
            "bundle_bytes": len(bundle_bytes),
            "steps": js["steps"],
            "browser_p50_ms": round(statistics.median(js_times), 2),
            "browser_p99_ms": round(_pct(js_times, 0.99), 2),
            "browser_first_ms": round(float(js["times"][0]), 2),
            "python_p50_ms": round(py_p50, 2),
            "cli_p50_ms": round(statistics.median(cli_times), 1),
            "browser_to_python": round(statistics.median(js_times) / py_p50, 2),
            "requests_during_verification": len(requests),
        },
    }


def render_markdown(r: dict[str, Any]) -> str:
    m, f, v = r["machine"], r["floor"], r["verification"]
    lines = [
        f"### `fiat bench ui` — {m['cpu']}, {m['cores']} cores, {r['browser']}",
        "",
        f"Every page loaded {r['loads']} times, each in a fresh browser context (cold cache), from a real "
        "`fiat serve` seeded with real executions. Weight: the bytes of every response body (the live "
        "event stream excluded). FCP: first contentful paint; ratio: FCP to the floor's, measured in the same run.",
        "",
        "| page | requests | weight (KiB) | FCP p50 (ms) | ×floor | DOMContentLoaded p50 (ms) | load p50 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| floor: `{f['path']}` (plain text) | {f['requests']} | {f['bytes'] / 1024:.1f} | {f['fcp_p50_ms']} | 1.00 | "
        f"{f['dcl_p50_ms']} | {f['load_p50_ms']} |",
    ]
    for p in r["pages"].values():
        ratio = f"{p['fcp_p50_ms'] / f['fcp_p50_ms']:.2f}" if p["fcp_p50_ms"] and f["fcp_p50_ms"] else "—"
        lines.append(
            f"| `{p['path']}` | {p['requests']} | {p['bytes'] / 1024:.1f} | {p['fcp_p50_ms']} | {ratio} | "
            f"{p['dcl_p50_ms']} | {p['load_p50_ms']} |"
        )
    lines += [
        "",
        f"Verifying one bundle ({v['bundle_bytes']:,} bytes, {v['steps']} steps):",
        "",
        "| verifier | p50 (ms) |",
        "|---|---:|",
        f"| proof viewer, in the browser (WebCrypto; first call {v['browser_first_ms']} ms) | {v['browser_p50_ms']} |",
        f"| `fiat.verify`, in process | {v['python_p50_ms']} |",
        f"| `fiat verify` command (a process: start-up included) | {v['cli_p50_ms']} |",
        "",
        f"Browser to in-process Python: {v['browser_to_python']}×; network requests during the browser's "
        f"verifications: {v['requests_during_verification']}.",
    ]
    return "\n".join(lines)
