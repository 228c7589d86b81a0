"""The health page (``/ui/health``) in real Chromium against a real ``fiat serve`` and real ``fiat run``s."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.processes import FIAT, FiatServer, cli_env
from ui.conftest import Watched, make_home, wait_js

PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    home = make_home(tmp_path_factory.mktemp("health"))
    s = FiatServer(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "250"}).start()
    try:
        yield s
    finally:
        s.stop()


def fiat_run(server: FiatServer, seconds: float) -> subprocess.Popen[bytes]:
    argv = [*FIAT, "run", "--home", str(server.home), "--url", server.url]
    argv += ["--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE]
    argv += ["--", sys.executable, "-c", f"import time; time.sleep({seconds})"]
    return subprocess.Popen(argv, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def log_size(w: Watched) -> int:
    return int(w.page.locator("#tile-log").inner_text().replace(",", ""))


def test_the_page_shows_growth_a_connected_runtime_and_charts(
    server: FiatServer, open_page: Callable[..., Watched]
) -> None:
    w = open_page(server.url, "/ui/health")
    page = w.page
    page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'", timeout=10_000)
    before = log_size(w)
    run = fiat_run(server, 8)
    try:
        # While it runs, its trust stream names the runtime; the row shows a fresh trust state.
        row = page.locator("#runtimes tbody tr:not([data-runtime='anonymous'])[data-runtime]")
        row.first.wait_for(timeout=30_000)
        freshness = row.first.locator("td.freshness")
        assert "s ago" in freshness.inner_text()
        assert "fresh" in (freshness.get_attribute("class") or "")
        page.wait_for_function(
            f"() => Number(document.getElementById('tile-log').textContent.replace(/,/g, '')) > {before}",
            timeout=20_000,
        )
    finally:
        run.wait(timeout=60)
    assert run.returncode == 0
    assert log_size(w) > before
    # Charts get points (a sample every 2 s) and say what they show to a screen reader.
    page.wait_for_function(
        "() => Number(document.querySelector('#chart-log polyline')?.dataset.points || 0) >= 2", timeout=15_000
    )
    assert page.locator("#chart-log").get_attribute("role") == "img"
    assert "samples" in page.locator("#summary-log").inner_text()
    assert page.locator("#witnesses").inner_text() == "no witnesses configured"
    # The time window switch asks for another window and redraws.
    with page.expect_request(lambda r: "/v1/health?window=3600" in r.url):
        page.select_option("#window", "3600")
    page.wait_for_function("() => document.querySelector('#chart-log desc').textContent.includes('last 60 minutes')")


def test_the_page_marks_itself_stale_when_the_server_stops(
    server: FiatServer, open_page: Callable[..., Watched]
) -> None:
    w = open_page(server.url, "/ui/health")
    w.page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'", timeout=10_000)
    server.stop()
    w.page.wait_for_function("() => document.getElementById('conn').dataset.state === 'stale'", timeout=10_000)
    assert "stale" in w.page.locator("#conn").inner_text()
    # The browser logs each refused poll as a console error: expected here, and nothing else is.
    w.console_errors[:] = [e for e in w.console_errors if "ERR_CONNECTION_REFUSED" not in e]


def test_health_is_listed_as_a_served_page() -> None:
    assert (Path(__file__).resolve().parents[2] / "src" / "fiat" / "api" / "ui" / "health.html").is_file()


def test_the_witness_panel_shows_verified_cosigners_and_each_witness(
    tmp_path: Path, open_page: Callable[..., Watched]
) -> None:
    """Three real witnesses (``fiat witness serve``) cosign the log; the page lists each cosignature of
    the served checkpoint as verified under that witness's key, and each witness's submissions; a
    killed witness's row shows the failure while the quorum still holds."""
    from fiat.config import load_config
    from fiat.home import log_keys
    from support.witnesses import enroll, running, three_witnesses

    env = {"FIAT_LOG_WITNESS_QUORUM": "2", "FIAT_LOG_WITNESS_INTERVAL_MS": "200", "FIAT_LOG_WITNESS_TIMEOUT_MS": "500"}
    home = make_home(tmp_path)
    log_vkey = log_keys(load_config(home, require=True))[0].verifier.encode()
    with running(three_witnesses(tmp_path, log_vkey)) as ws:
        enroll(home, ws, env)
        server = FiatServer(home, env=env).start()
        try:
            w = open_page(server.url, "/ui/health")
            page = w.page
            wait_js(page, "document.getElementById('witnesses').textContent.startsWith('3 of 3 witnesses')", 20)
            items = page.locator("#cosigners li").all_inner_texts()
            assert sorted(i.split(" (")[0] for i in items) == sorted(wit.name for wit in ws), items
            assert all("✓ verified" in i for i in items), items
            rows = page.locator("#witness-status tbody tr")
            assert rows.count() == 3
            assert all(r.split("\t")[1] != "none yet" for r in rows.all_inner_texts()), rows.all_inner_texts()
            ws[0].kill()
            wait_js(
                page,
                f"[...document.querySelectorAll('#witness-status tbody tr')].some((r) => "
                f"r.cells[0].textContent === {ws[0].name!r} && r.cells[4].textContent !== 'none')",
                20,
            )
            assert "quorum 2" in page.locator("#witnesses").inner_text()
        finally:
            server.stop()
