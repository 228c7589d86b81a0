"""The runtime governance demo page (``/ui/demo``) in real Chromium against a real ``fiat serve``.

* On a demo home (``[ui] demo_controls``) the page launches the long-running scenario — a real
  ``fiat run`` child of the server — shows its permit and its heartbeats (each with the checks
  that held) as they arrive, revokes it with its Revoke button, and shows the halt with the
  failed step (``revocation``) highlighted, then the receipt with its log index and a link to
  verify it in the browser; and the ``fiat run`` process is really gone.
* On a home that is not a demo home the page says the controls are the admin's, refuses to
  launch without the token, and launches with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from support.processes import FiatServer

from .conftest import Watched, make_home

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def demo_home_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    home = make_home(tmp_path_factory.mktemp("demo-page"))
    s = FiatServer(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "250", "FIAT_UI_DEMO_CONTROLS": "true"}).start()
    try:
        yield s
    finally:
        s.stop()
    assert "Traceback" not in s.text(), s.text()[-4000:]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_demo_page_shows_a_revocation_halting_a_real_fiat_run(
    demo_home_server: FiatServer, open_page: Callable[..., Watched]
) -> None:
    w = open_page(demo_home_server.url, "/ui/demo")
    page = w.page
    expect(page.locator("#mode")).to_contain_text("Demo home")
    expect(page.locator("#token-form")).to_be_hidden()
    page.get_by_role("button", name="Launch: A long job: revoke it while it runs").click()
    run = page.locator("article.run[data-scenario='long-job']").first
    expect(run).to_be_visible(timeout=15_000)
    expect(run.locator("li[data-phase='permit']")).to_contain_text("Permit established", timeout=30_000)
    beat = run.locator("li[data-phase='heartbeat']").first
    expect(beat).to_contain_text("verified", timeout=15_000)
    expect(beat.locator("ul.checks li.pass[data-check='revocation']")).to_be_visible()
    expect(beat).to_contain_text("in a row", timeout=10_000)  # more heartbeats arrive, live
    run_id = run.get_attribute("data-run-id")
    assert run_id
    listed = httpx.get(f"{demo_home_server.url}/v1/demo/runs").json()["runs"]
    pid = next(r["pid"] for r in listed if r["runId"] == run_id)
    assert alive(pid)
    run.get_by_role("button", name=f"Revoke the permit of {run_id}").click()
    expect(run.locator("li[data-phase='revoked']")).to_contain_text("log index", timeout=15_000)
    halt = run.locator("li[data-phase='halt']")
    expect(halt).to_contain_text("Halted at revocation", timeout=15_000)
    expect(halt.locator("ul.checks li.failed")).to_have_text("✗ revocation")
    expect(halt.locator("ul.checks li.pass[data-check='trust-fresh']")).to_be_visible()
    expect(halt.locator("ul.checks li.not-reached[data-check='environment']")).to_be_visible()
    receipt = run.locator("li[data-phase='receipt']")
    expect(receipt).to_contain_text("Receipt logged at log index", timeout=20_000)
    link = receipt.get_by_role("link", name="verify in browser")
    assert (link.get_attribute("href") or "").startswith("/ui/verify#pmt_")
    expect(run.locator("li[data-phase='exit']")).to_contain_text("Exited: halted")
    expect(run.locator(".state")).to_have_text("halted at revocation")
    expect(run.get_by_role("button", name=f"Revoke the permit of {run_id}")).to_be_hidden()
    # The `fiat run` process really exited.
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), f"fiat run (pid {pid}) is still running"
    ended = next(r for r in httpx.get(f"{demo_home_server.url}/v1/demo/runs").json()["runs"] if r["runId"] == run_id)
    assert ended["outcome"] == "halted" and ended["exitCode"] == 124 and ended["revoked"]
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def test_a_reloaded_page_replays_the_runs(demo_home_server: FiatServer, open_page: Callable[..., Watched]) -> None:
    w = open_page(demo_home_server.url, "/ui/demo")
    run = w.page.locator("article.run[data-scenario='long-job']").first
    expect(run.locator("li[data-phase='receipt']")).to_be_visible(timeout=15_000)
    expect(run.locator("li[data-phase='started']")).to_have_count(1)  # replayed once, not twice


def test_without_a_demo_home_the_controls_are_the_admins(
    ui_server: FiatServer, open_page: Callable[..., Watched]
) -> None:
    w = open_page(ui_server.url, "/ui/demo")
    page = w.page
    expect(page.locator("#mode")).to_contain_text("Admin only")
    page.get_by_role("button", name="Launch: Allowed and completed").click()
    expect(page.locator("#notice")).to_contain_text("Not launched")
    assert page.locator("article.run").count() == 0
    page.get_by_label("Admin token").fill((ui_server.home / "keys" / "admin.token").read_text().strip())
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#mode")).to_contain_text("use the admin token")
    page.get_by_role("button", name="Launch: Allowed and completed").click()
    run = page.locator("article.run[data-scenario='allowed']").first
    expect(run.locator("li[data-phase='receipt']")).to_contain_text("Receipt logged", timeout=30_000)
    expect(run.locator(".state")).to_have_text("completed")
    expect(run.locator("details.output summary")).to_contain_text("Output (")
