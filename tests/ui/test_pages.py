"""Every page loads in real Chromium with no console error and no request to another host."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from fiat.api.routes.ui import CSP, PAGES, asset_names
from support.processes import FiatServer

from .conftest import Watched


def test_the_index_links_every_page(ui_server: FiatServer, open_page: Callable[..., Watched]) -> None:
    w = open_page(ui_server.url, "/ui/")
    links = {a.get_attribute("href") for a in w.page.locator("main a").all()}
    assert {f"/ui/{p}" for p in PAGES if p} <= links
    assert w.page.title().startswith("Fiat")


@pytest.mark.parametrize("path", sorted(p for p in PAGES if p))
def test_every_page_loads_in_chromium_with_no_error_and_no_other_host(
    ui_server: FiatServer, open_page: Callable[..., Watched], path: str
) -> None:
    # open_page fails the test at teardown on a console error, an uncaught exception or a
    # request to any origin but the server's; the page must also have drawn its heading.
    w = open_page(ui_server.url, f"/ui/{path}")
    w.page.wait_for_load_state("load")
    time.sleep(1.5)  # the page's first reads (and, for the live pages, its stream) are made
    assert w.page.locator("h1").first.inner_text().strip()
    assert w.page.locator(f'nav a[href="/ui/{path}"]').get_attribute("aria-current") == "page"
    assert all(r.startswith(ui_server.url) for r in w.requests)


def test_a_browser_asking_for_the_root_is_sent_to_the_pages(ui_server: FiatServer) -> None:
    r = httpx.get(ui_server.url + "/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    plain = httpx.get(ui_server.url + "/")
    assert plain.headers["content-type"].startswith("text/plain") and "web: /ui/" in plain.text


@pytest.mark.parametrize("path", sorted(PAGES))
def test_every_page_and_asset_is_served_with_the_policy(ui_server: FiatServer, path: str) -> None:
    r = httpx.get(f"{ui_server.url}/ui/{path}")
    assert r.status_code == 200, r.text
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["content-type"].startswith("text/html")
    again = httpx.get(f"{ui_server.url}/ui/{path}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


def test_assets_are_only_the_packaged_files(ui_server: FiatServer) -> None:
    names = asset_names()
    assert "common.js" in names and "common.css" in names
    for name in names:
        r = httpx.get(f"{ui_server.url}/ui/assets/{name}")
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
    for probe in ("../routes/ui.py", "..%2Froutes%2Fui.py", "index.html", "nope.js", "%2e%2e/%2e%2e/app.py"):
        assert httpx.get(f"{ui_server.url}/ui/assets/{probe}").status_code == 404, probe


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_reference_renders_offline(ui_server: FiatServer, open_page: Callable[..., Watched], path: str) -> None:
    # Swagger UI and ReDoc from the package, not a CDN: the page renders the operations with no
    # request leaving the server (open_page fails the test on any other origin).
    w = open_page(ui_server.url, path)
    selector = ".opblock-summary-path" if path == "/docs" else "[data-section-id]"
    w.page.wait_for_selector(selector, timeout=15000)
    assert "/v1/authorize" in w.page.content()
    headers = httpx.get(ui_server.url + path).headers  # and no other site may frame it (clickjacking)
    assert headers["x-frame-options"] == "DENY" and headers["content-security-policy"] == "frame-ancestors 'none'"
