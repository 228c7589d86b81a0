"""The demo page's controls (``/v1/demo/...``, :mod:`fiat.api.routes.demo`) against a real ``fiat serve``.

Each server is a real child process on a fresh home with the example policies; each run it
launches is a real ``fiat run`` child of that server (:mod:`fiat.demo_runs`):

* who may launch: nobody without the admin token on a home that is not a demo home (401), a
  wrong token neither; the admin token may; on a demo home (``[ui] demo_controls``) anyone may
  from the server's own pages, but not a request another site's page makes (``Origin``,
  ``Sec-Fetch-Site``, a ``Host`` that is not the server's own: 403);
* the demo route revokes only runs its runner launched: a permit of some other execution,
  named in its path, is refused (404) and stays unrevoked (the other run keeps running);
* a measured file changed under a running job halts it at ``environment``, with a receipt;
* at most :data:`fiat.demo_runs.MAX_RUNNING` runs at once (429), and a server that is
  stopped ends every run it launched, and their commands: no process is left behind.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fiat.config import load_config
from fiat.demo_runs import MAX_OUTPUT_BYTES, MAX_RUNNING, DemoClosed, DemoRunner
from fiat.errors import ConfigError
from support import EXAMPLES
from support.processes import FIAT, FiatServer, clean_env, cli_env, free_port, ok
from support.processes import fiat_text as fiat_cli

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo-runs") / "home"
    ok(fiat_cli("init", "--home", path, "--json"))
    ok(fiat_cli("policy", "publish", EXAMPLES, "--home", path, "--json"))
    return path


def server(home: Path, *, demo_controls: bool, drain_s: float = 5.0) -> FiatServer:
    env = {"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "250", "FIAT_SERVER_DRAIN_S": str(drain_s)}
    if demo_controls:
        env["FIAT_UI_DEMO_CONTROLS"] = "true"
    return FiatServer(home, env=env).start()


@pytest.fixture(scope="module")
def admin_server(home: Path) -> Iterator[FiatServer]:
    s = server(home, demo_controls=False)
    try:
        yield s
    finally:
        s.stop()
    assert "Traceback" not in s.text(), s.text()[-4000:]


@pytest.fixture(scope="module")
def demo_server(home: Path) -> Iterator[FiatServer]:
    s = server(home, demo_controls=True)
    try:
        yield s
    finally:
        s.stop()
    assert "Traceback" not in s.text(), s.text()[-4000:]


def launch(s: FiatServer, scenario: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{s.url}/v1/demo/runs", json={"scenario": scenario}, headers=headers or {}, timeout=30)


def run_of(s: FiatServer, run_id: str) -> dict[str, Any]:
    runs = httpx.get(f"{s.url}/v1/demo/runs", timeout=10).json()["runs"]
    return next(r for r in runs if r["runId"] == run_id)


def wait_for(s: FiatServer, run_id: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    """The run once one of its events is ``phase``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = run_of(s, run_id)
        if any(e["phase"] == phase for e in run["events"]):
            return run
        time.sleep(0.2)
    raise AssertionError(f"no {phase} event of {run_id} within {timeout} s: {run_of(s, run_id)}")


def admin_token(home: Path) -> str:
    return (home / "keys" / "admin.token").read_text().strip()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc: each process's parent)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- who may use the controls --------------------------------------------------------------------


def test_without_the_admin_token_or_a_demo_home_the_controls_are_refused(admin_server: FiatServer) -> None:
    info = httpx.get(f"{admin_server.url}/v1/demo/scenarios").json()
    assert info["controls"] == "admin-token"
    assert {s["name"] for s in info["scenarios"]} >= {"allowed", "denied", "long-job", "file-changed"}
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Basic x"}):
        r = launch(admin_server, "allowed", headers)
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith(PROBLEM) and "admin" in r.json()["detail"]
        assert httpx.post(f"{admin_server.url}/v1/demo/runs/run_x/revoke", headers=headers).status_code == 401
    assert httpx.get(f"{admin_server.url}/v1/demo/runs").json()["runs"] == []  # nothing started


def test_the_admin_token_launches_a_real_fiat_run_with_a_receipt(admin_server: FiatServer, home: Path) -> None:
    r = launch(admin_server, "allowed", {"Authorization": f"Bearer {admin_token(home)}"})
    assert r.status_code == 201, r.text
    run = wait_for(admin_server, r.json()["runId"], "exit")
    phases = [e["phase"] for e in run["events"]]
    assert phases[0] == "started" and phases[-1] == "exit", phases
    assert {"permit", "heartbeat", "receipt"} <= set(phases), phases
    assert run["outcome"] == "completed" and run["exitCode"] == 0
    assert any(e["phase"] == "output" and e["text"] == "built and tested" for e in run["events"])
    beat = next(e for e in run["events"] if e["phase"] == "heartbeat")
    assert beat["checks"][:5] == ["trust-signature", "trust-continuity", "trust-fresh", "log-continuity", "revocation"]
    receipt = next(e for e in run["events"] if e["phase"] == "receipt")
    # The receipt really is in the log: its bundle is served for the run's permit.
    bundle = httpx.get(
        f"{admin_server.url}/v1/bundles/{receipt['permitId']}",
        headers={"Authorization": f"Bearer {admin_token(home)}"},
    )
    assert bundle.status_code == 200, bundle.text
    assert not alive(run["pid"])


def test_a_demo_home_lets_its_own_pages_launch_but_no_other_site(demo_server: FiatServer) -> None:
    assert httpx.get(f"{demo_server.url}/v1/demo/scenarios").json()["controls"] == "demo-home"
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},  # another port is another origin
        {"Sec-Fetch-Site": "cross-site"},
        # DNS rebinding: another site's name, resolved to this server; its Origin matches its Host.
        {"Host": f"evil.example:{demo_server.port}", "Origin": f"http://evil.example:{demo_server.port}"},
    ):
        r = launch(demo_server, "denied", headers)
        assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM), (headers, r.text)
    assert launch(demo_server, "nope").status_code == 404
    assert launch(demo_server, "approval").status_code == 404  # fiat demo's alone: it needs an approver key
    # A wrong admin token is not rescued by the demo flag.
    assert launch(demo_server, "denied", {"Authorization": "Bearer wrong"}).status_code == 401
    r = launch(demo_server, "denied", {"Origin": demo_server.url})
    assert r.status_code == 201, r.text
    run = wait_for(demo_server, r.json()["runId"], "exit")
    assert run["outcome"] == "denied" and run["exitCode"] == 125
    assert not any(e["phase"] in ("permit", "heartbeat", "receipt") for e in run["events"])


def test_the_demo_route_cannot_revoke_a_permit_it_did_not_launch(demo_server: FiatServer, home: Path) -> None:
    """Attack: with the demo flag anyone may revoke, so the route must only ever revoke its own runs."""
    other = subprocess.Popen(
        [*FIAT, "run", "--home", str(home), "--url", demo_server.url, "--principal", "agent:release-bot",
         "--action", "shell:run", "--resource", "repo:fiat", "--", "sleep", "30"],
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert other.stderr is not None
        line = other.stderr.readline()
        assert "permit pmt_" in line, line
        permit = line.split("permit ", 1)[1].split(":", 1)[0].strip()
        for path in (f"/v1/demo/runs/{permit}/revoke", "/v1/demo/runs/run_doesnotexist/revoke"):
            r = httpx.post(demo_server.url + path, json={"permitId": permit})
            assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM), r.text
        time.sleep(1.0)  # several heartbeats: had it been revoked, the guard would have halted it
        assert other.poll() is None, other.stderr.read()
        state = httpx.get(f"{demo_server.url}/v1/trust/state").json()["state"]
        payload = json.loads(base64.urlsafe_b64decode(state.split(".")[1] + "=="))
        assert permit not in json.dumps(payload)
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(30)


def test_a_measured_file_changed_under_a_job_halts_it_at_environment(demo_server: FiatServer) -> None:
    r = launch(demo_server, "file-changed")
    assert r.status_code == 201, r.text
    run = wait_for(demo_server, r.json()["runId"], "exit")
    halt = next(e for e in run["events"] if e["phase"] == "halt")
    assert halt["step"] == "environment", halt
    assert run["outcome"] == "halted" and run["exitCode"] == 124 and run["receiptLogIndex"] is not None
    # Ending it once ended is refused, saying why.
    again = httpx.post(f"{demo_server.url}/v1/demo/runs/{run['runId']}/revoke")
    assert again.status_code == 409 and "ended" in again.json()["detail"]


def test_the_stream_replays_the_runs_then_follows_them(demo_server: FiatServer) -> None:
    with httpx.stream("GET", f"{demo_server.url}/v1/demo/stream", timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        seen: list[dict[str, Any]] = []
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == "run":
                seen.append(json.loads(line[6:]))
                if any(e["phase"] == "exit" for e in seen):
                    break
    assert seen and seen[0]["phase"] == "started" and seen[0]["seq"] == 1


# -- bounds and the end ------------------------------------------------------------------------


def test_at_most_four_runs_and_a_stopped_server_leaves_no_process(home: Path) -> None:
    s = server(home, demo_controls=True, drain_s=8.0)
    try:
        ids = []
        for _ in range(MAX_RUNNING):
            r = launch(s, "long-job")
            assert r.status_code == 201, r.text
            ids.append(r.json()["runId"])
        busy = launch(s, "allowed")
        assert busy.status_code == 429 and busy.headers["content-type"].startswith(PROBLEM), busy.text
        assert "at most 4" in busy.json()["detail"] and busy.headers["retry-after"]
        for run_id in ids:
            wait_for(s, run_id, "heartbeat")
        pids = {run_of(s, run_id)["pid"] for run_id in ids}
        tree = set(pids)
        for pid in pids:
            tree |= descendants(pid)
        assert len(tree) > len(pids)  # each guard's command runs below it
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(20)
        took = time.monotonic() - t0
        assert s.proc.returncode == 0, s.text()[-3000:]
        assert took < 8.0, took  # the runs end at the drain's start: it does not wait out drain_s
        deadline = time.monotonic() + 5
        while any(alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in tree if alive(p)], "processes left behind"
        assert "Traceback" not in s.text(), s.text()[-4000:]
    finally:
        s.stop()


def test_demo_controls_is_a_boolean_setting(tmp_path: Path) -> None:
    with clean_env():
        os.environ["FIAT_UI_DEMO_CONTROLS"] = "yes"
        assert load_config(tmp_path).ui.demo_controls is True
        os.environ["FIAT_UI_DEMO_CONTROLS"] = "maybe"
        with pytest.raises(ConfigError, match="true or false"):
            load_config(tmp_path)
        del os.environ["FIAT_UI_DEMO_CONTROLS"]
        assert load_config(tmp_path).ui.demo_controls is False
        (tmp_path / "fiat.toml").write_text("[ui]\ndemo_controls = 1\n")
        with pytest.raises(ConfigError, match="true or false"):
            load_config(tmp_path)


def test_a_run_that_cannot_reach_its_authority_ends_not_established_and_output_is_capped(tmp_path: Path) -> None:
    """The runner on its own (no server): ``fiat run`` fails closed, and what a run says is bounded."""
    home = tmp_path / "home"
    ok(fiat_cli("init", "--home", home, "--json"))
    published: list[dict[str, Any]] = []
    runner = DemoRunner(home, f"http://127.0.0.1:{free_port()}", published.append, env=cli_env())
    run = runner.launch("allowed")
    assert run.ended.wait(60), runner.runs()
    phases = [e["phase"] for e in published]
    assert phases[0] == "started" and phases[-1] == "exit" and "permit" not in phases, phases
    assert run.outcome == "not-established" and run.exit_code == 126, published[-1]
    assert published == runner.replay() and [e["seq"] for e in published] == list(range(1, len(published) + 1))
    before = len(published)
    for _ in range(40):
        runner._output(run, "x" * 1000, "command")
    said = published[before:]
    assert sum(len(e["text"]) for e in said) <= MAX_OUTPUT_BYTES + 100
    assert said[-1]["text"].startswith("(output past") and len(said) < 20
    runner.stop()
    with pytest.raises(DemoClosed):
        runner.launch("allowed")
