"""``fiat bench mcp``: its servers on the SDK's low-level server, and a real quick run of the benchmark.

The servers are driven by the official SDK client over real stdio pipes and real HTTP; the
benchmark runs as the CLI does, against a real ``fiat serve`` and real gateway processes. No
timing is asserted (the machine decides those): the shape of the result, that every number
is a real, positive measurement, and that the ratios are computed from the measured rows.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fiat.bench.mcp_upstream import stdio_params
from support.processes import fiat, show

UPSTREAM = [sys.executable, "-m", "fiat.bench.mcp_upstream"]


@pytest.fixture
def http_upstream(tmp_path: Path) -> Iterator[str]:
    log = tmp_path / "upstream.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([*UPSTREAM, "--http", "0"], stderr=err, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not (m := re.search(r"port=(\d+)", log.read_text())):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            yield f"http://127.0.0.1:{m.group(1)}/mcp"
        finally:
            proc.terminate()
            proc.wait(10)


async def _echo_through(client: Client) -> None:
    tools = await client.list_tools()
    assert [t.name for t in tools.tools] == ["echo"]
    got = await client.call_tool("echo", {"text": "zoë", "n": 7})
    assert not got.is_error
    assert json.loads(got.content[0].text) == {"n": 7, "text": "zoë"}  # type: ignore[union-attr]
    with pytest.raises(MCPError, match="nope"):  # an unknown tool is refused, not echoed
        await client.call_tool("nope", {})


def test_the_echo_upstream_and_the_bare_hop_answer_over_stdio() -> None:
    async def run() -> None:
        async with Client(stdio_params(UPSTREAM)) as direct:
            await _echo_through(direct)
        async with Client(stdio_params([*UPSTREAM, "--forward", "--", *UPSTREAM])) as hop:
            await _echo_through(hop)

    anyio.run(run)


def test_the_echo_upstream_and_the_bare_hop_answer_over_http(http_upstream: str) -> None:
    async def run() -> None:
        async with Client(http_upstream) as direct:
            await _echo_through(direct)
        # the hop over stdio, forwarding to the HTTP upstream
        async with Client(stdio_params([*UPSTREAM, "--forward", http_upstream])) as hop:
            await _echo_through(hop)

    anyio.run(run)


def test_the_hop_without_an_upstream_is_refused() -> None:
    p = subprocess.run([*UPSTREAM, "--forward"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--forward needs an upstream" in p.stderr, p.stderr


def _positive(row: dict[str, float]) -> None:
    assert row["calls"] == 20
    assert 0 < row["p50Ms"] <= row["p99Ms"], row
    assert row["meanMs"] > 0, row


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_bench_mcp_quick_measures_every_row_the_floor_and_the_profile() -> None:
    p = fiat("bench", "mcp", "--quick", "--json", timeout=400)
    assert p.returncode == 0, show(p)
    r = json.loads(p.stdout)
    assert r["benchmark"] == "mcp" and r["calls"] == 20 and r["warmup"] == 3
    rows = r["rows"]
    faces = ("stdio", "http")
    variants = ("logged", "spooled")
    want = {f"direct{f.title()}" for f in faces} | {f"hop{f.title()}" for f in faces}
    want |= {f"gateway{f.title()}{v[0].upper()}{v[1:]}" for f in faces for v in variants}
    assert set(rows) == want, sorted(rows)
    for row in rows.values():
        _positive(row)

    floor = r["floor"]
    for part in ("cedarUs", "signUs", "appendUs", "authUs"):
        assert floor[part] > 0, floor
    assert floor["authUs"] == pytest.approx(floor["cedarUs"] + floor["signUs"] + floor["appendUs"], abs=0.2)
    assert floor["authUs"] == pytest.approx((floor["authBeforeUs"] + floor["authAfterUs"]) / 2, abs=0.2)

    for face in faces:
        e, direct, hop = r["faces"][face], rows[f"direct{face.title()}"], rows[f"hop{face.title()}"]
        assert e["hopAddedUs"] == pytest.approx((hop["p50Ms"] - direct["p50Ms"]) * 1000, abs=0.2)
        assert e["floorUs"] == pytest.approx(floor["authUs"] + e["hopAddedUs"], abs=0.2)
        assert set(e["variants"]) == set(variants)
        for variant, v in e["variants"].items():
            governed = rows[f"gateway{face.title()}{variant[0].upper()}{variant[1:]}"]
            assert v["addedUs"] == pytest.approx((governed["p50Ms"] - direct["p50Ms"]) * 1000, abs=0.2)
            assert v["ratioToFloor"] == pytest.approx(v["addedUs"] / e["floorUs"], abs=0.01)
            assert v["targetMet"] == (v["ratioToFloor"] <= 1.5)
            assert v["meaning"]
        assert "estimates" not in e  # measured rows only: nothing derived

    assert len(r["loadAverage"]) == 3
    prof = r["profile"]
    assert set(prof) == set(variants)  # one profile pass per receipt mode
    for mode, one in prof.items():
        assert one["calls"] == 20 and one["meanMs"] > 0 and one["p50Ms"] > 0
        parts = one["partsUs"]
        for part in ("measure", "dpop", "authorize", "verifyPermit", "check", "upstream", "receiptSign", "spool"):
            assert parts[part] > 0, (mode, part, parts)  # each part of a governed call really ran, every call
        assert parts["heartbeatStop"] >= 0
        assert sum(parts.values()) == pytest.approx(one["meanMs"] * 1000, rel=0.01)  # "other" is the rest
    # logged: the upload is on the call's path; spooled: every receipt is uploaded, after its answer
    assert prof["logged"]["partsUs"]["upload"] > 0 and prof["logged"]["partsUs"]["spool"] > 0
    assert prof["spooled"]["partsUs"]["upload"] == 0
    assert prof["spooled"]["uploadOffPath"]["uploads"] >= 20 and prof["spooled"]["uploadOffPath"]["meanUs"] > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_mcp_renders_the_benchmarks_md_tables() -> None:
    p = fiat("bench", "mcp", "--calls", "5", "--warmup", "1", "--no-governed", timeout=280)
    assert p.returncode == 0, show(p)
    text = p.stdout.decode()
    assert "### `fiat bench mcp`" in text
    assert "| stdio | bare hop: client → SDK pass-through → upstream |" in text, text
    assert "| http | direct: client → upstream |" in text, text
    assert "Floor of one authorization, in process, in the same run" in text
    assert "gateway" not in text.split("Floor of one")[0]  # --no-governed: no governed row


def test_bench_mcp_refuses_nonsense_counts() -> None:
    p = fiat("bench", "mcp", "--calls", "0")
    assert p.returncode != 0 and "--calls must be at least 1" in (p.stdout + p.stderr).decode(), show(p)
