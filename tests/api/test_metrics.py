"""``/metrics`` (the Prometheus text exposition, parsed by ``prometheus_client``'s own parser) and
``GET /v1/health`` against a real ``fiat serve``, moved by real ``fiat run`` executions."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from fiat.api.telemetry import Telemetry, percentile, runtime_label
from support.processes import FIAT, FiatServer, cli_env, ok
from support.processes import fiat as fiat_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "fiat" / "examples" / "policies"
PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    home = tmp_path_factory.mktemp("metrics") / "home"
    ok(fiat_cli("init", "--home", home, "--json"))
    ok(fiat_cli("policy", "publish", EXAMPLES, "--home", home, "--json"))
    s = FiatServer(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "250"}).start()
    try:
        yield s
    finally:
        s.stop()


def run(server: FiatServer, *command: str, principal: str = PRINCIPAL) -> subprocess.CompletedProcess[str]:
    argv = [*FIAT, "run", "--home", str(server.home), "--url", server.url]
    argv += ["--principal", principal, "--action", ACTION, "--resource", RESOURCE, "--", *command]
    return subprocess.run(argv, env=cli_env(), capture_output=True, text=True, timeout=60, check=False)


def families(server: FiatServer) -> dict[str, Any]:
    r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST, r.headers
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(fams: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    for s in fams[family].samples:
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


def buckets(fams: dict[str, Any], family: str, **labels: str) -> list[Sample]:
    out = [
        s
        for s in fams[family].samples
        if s.name == family + "_bucket" and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sorted(out, key=lambda s: float(s.labels["le"]))


def test_the_exposition_parses_with_help_and_type_and_counts_move(server: FiatServer) -> None:
    before = families(server)
    text = httpx.get(server.url + "/metrics").text
    for name in (
        "fiat_authorize_seconds",
        "fiat_log_integration_seconds",
        "fiat_log_tree_size",
        "fiat_decisions_total",
    ):
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text, name
    assert before["fiat_authorize_seconds"].type == "histogram"
    assert before["fiat_log_integration_seconds"].type == "histogram"
    assert before["fiat_log_tree_size"].type == "gauge"
    assert before["fiat_decisions"].type == "counter"
    size0 = value(before, "fiat_log_tree_size")
    allowed0 = value(before, "fiat_decisions", "fiat_decisions_total", decision="allow")
    denied0 = value(before, "fiat_decisions", "fiat_decisions_total", decision="deny")

    assert run(server, sys.executable, "-c", "pass").returncode == 0
    assert run(server, sys.executable, "-c", "pass", principal="agent:planner").returncode != 0  # denied

    after = families(server)
    assert value(after, "fiat_decisions", "fiat_decisions_total", decision="allow") == allowed0 + 1
    assert value(after, "fiat_decisions", "fiat_decisions_total", decision="deny") == denied0 + 1
    assert value(after, "fiat_decisions_allow", "fiat_decisions_allow_total") == allowed0 + 1  # the old name stays
    assert value(after, "fiat_log_tree_size") > size0
    assert value(after, "fiat_receipts", "fiat_receipts_total", outcome="completed") >= 1
    count = value(after, "fiat_authorize_seconds", "fiat_authorize_seconds_count", decision="allow")
    assert count == allowed0 + 1
    assert value(after, "fiat_authorize_seconds", "fiat_authorize_seconds_sum", decision="allow") > 0
    for fam, labels in (("fiat_authorize_seconds", {"decision": "allow"}), ("fiat_log_integration_seconds", {})):
        bs = buckets(after, fam, **labels)
        assert bs and bs[-1].labels["le"] == "+Inf"
        counts = [b.value for b in bs]
        assert counts == sorted(counts), f"{fam} buckets are not cumulative: {counts}"
        assert counts[-1] == value(after, fam, fam + "_count", **labels) > 0


def test_a_connected_runtime_shows_its_freshness_while_it_runs(server: FiatServer, tmp_path: Path) -> None:
    argv = [*FIAT, "run", "--home", str(server.home), "--url", server.url]
    argv += ["--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE]
    argv += ["--", sys.executable, "-c", "import time; time.sleep(8)"]
    proc = subprocess.Popen(argv, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        named: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not named:
            doc = httpx.get(server.url + "/v1/health", params={"window": 60}).json()
            named = [r for r in doc["runtimes"] if r["runtime"] != "anonymous" and r["freshnessS"] is not None]
            time.sleep(0.2)
        assert named, doc
        rt = named[0]
        assert rt["reported"].startswith("self")
        assert 0 <= rt["freshnessS"] < doc["freshnessBoundS"]  # 250 ms trust interval, 3 s bound
        assert rt["spoolBacklog"] == 0
        fams = families(server)
        assert value(fams, "fiat_trust_stream_subscribers") >= 1
        ages = [s for s in fams["fiat_trust_state_age_seconds"].samples if s.labels["runtime"] == rt["runtime"]]
        assert ages and ages[0].labels["reported"] == "self"
    finally:
        proc.wait(timeout=30)
    doc = httpx.get(server.url + "/v1/health", params={"window": 60}).json()
    assert all(r["runtime"] != rt["runtime"] for r in doc["runtimes"]), "a closed stream is still listed"


def test_health_samples_the_series_and_refuses_a_bad_window(server: FiatServer) -> None:
    deadline = time.monotonic() + 10
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = httpx.get(server.url + "/v1/health", params={"window": 300}).json()
        if len(doc["samples"]) >= 2:
            break
        time.sleep(0.5)
    assert doc["intervalS"] == 2.0 and len(doc["samples"]) >= 2
    s = doc["samples"][-1]
    for key in ("t", "logSize", "authorizationsPerS", "authorizeP50S", "authorizeP99S", "denials", "halts"):
        assert key in s
    assert doc["witnesses"] == {"configured": False, "cosigners": [], "note": "no witnesses configured"}
    assert doc["samples"] == sorted(doc["samples"], key=lambda x: x["t"])
    short = httpx.get(server.url + "/v1/health", params={"window": 1}).json()
    assert len(short["samples"]) <= 1
    for bad in ("0", "-5", "999999", "abc"):
        r = httpx.get(server.url + "/v1/health", params={"window": bad})
        assert r.status_code in (400, 422), (bad, r.status_code)


def test_a_stream_cannot_inject_labels_or_claim_odd_names(server: FiatServer) -> None:
    """Attack: a hostile stream names itself with exposition syntax; it shows as "invalid", nothing more."""
    evil = 'x"} fiat_decisions_total{decision="allow"} 1e9\n#'
    with (
        httpx.Client(timeout=10) as c,
        c.stream("GET", server.url + "/v1/trust/stream", params={"runtime": evil, "spool": "²"}) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()  # kept: a dropped iterator closes the stream
        next(lines)  # the first trust state has been sent
        doc = httpx.get(server.url + "/v1/health", params={"window": 10}).json()
        assert "invalid" in [x["runtime"] for x in doc["runtimes"]]
        assert all(x["spoolBacklog"] is None for x in doc["runtimes"] if x["runtime"] == "invalid")
        fams = families(server)  # still parses
        assert value(fams, "fiat_decisions", "fiat_decisions_total", decision="allow") < 1e9


def test_telemetry_percentiles_and_runtime_labels() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert runtime_label(None) == "anonymous" and runtime_label("a b") == "invalid"
    t = Telemetry(__import__("collections").Counter(), log_size=lambda: 5, epoch=lambda: 1, subscribers=lambda: 0)
    t.observe_authorize(0.01, "allow")
    t.observe_receipt("halted", "revocation: the permit was revoked")
    t.observe_receipt_once(7, "halted", "staleness: no fresh trust state")
    t.observe_receipt_once(7, "halted", "staleness: no fresh trust state")  # an idempotent re-upload
    point = t.sample()
    assert point["authorizations"] == 1 and point["halts"] == {"revocation": 1, "staleness": 1}
