"""Every page loads in real Chromium with no console error and no request to another host."""

from __future__ import annotations

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
