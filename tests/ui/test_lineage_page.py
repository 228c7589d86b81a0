"""The lineage explorer (/ui/lineage) in real Chromium against a real ``fiat serve`` and a real
three-generation chain (``fiat run`` → ``fiat run --parent`` → grandchild).

Every page is watched (tests/ui/conftest.py): a console error or a request to another origin fails the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.lineage_chain import PRINCIPAL, renewing_home, run_chain, run_renewed
from support.processes import FiatServer

from .conftest import Watched, wait_js


@pytest.fixture(scope="module")
def chain(ui_server: FiatServer, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return run_chain(ui_server, Path(tmp_path_factory.mktemp("lineage-chain")))


#: The page's search has answered (it says "Searching…" from the moment one starts).
SEARCH_DONE = "(t => t !== '' && t !== 'Searching…')(document.getElementById('status').textContent)"


def search_principal(w: Watched, principal: str) -> None:
    """Search by principal once the page's own search at load has answered, and wait for the answer
    (otherwise that first answer may redraw the graph while a test is already walking it)."""
    wait_js(w.page, SEARCH_DONE)
    w.page.fill("#principal", principal)
    w.page.click("#search button[type=submit]")
    wait_js(w.page, SEARCH_DONE)


def test_a_principal_search_shows_the_three_generation_chain(
    ui_server: FiatServer, chain: list[str], open_page: Callable[..., Watched]
) -> None:
    root, child, grand = chain
    w = open_page(ui_server.url, "/ui/lineage")
    page = w.page
    search_principal(w, PRINCIPAL)
    wait_js(page, "document.querySelectorAll('#dag g.node').length === 3")
    assert page.locator("#dag path.edge.parent").count() == 2
    assert page.locator("#dag path.edge.renewal").count() == 0
    assert "3 permits, 2 links" in page.locator("#status").inner_text()
    # Layered by depth: each generation is drawn below its parent.
    depths = {g.get_attribute("data-id"): g.get_attribute("data-depth") for g in page.locator("#dag g.node").all()}
    assert depths == {root: "0", child: "1", grand: "2"}
    ys = [page.locator(f'#dag g.node[data-id="{j}"]').bounding_box()["y"] for j in chain]  # type: ignore[index]
    assert ys[0] < ys[1] < ys[2]
    edges = {(e.get_attribute("data-from"), e.get_attribute("data-to")) for e in page.locator("#dag path.edge").all()}
    assert edges == {(root, child), (child, grand)}
    # Labelled for screen readers: role, principal and state.
    g = page.locator(f'#dag g.node[data-id="{grand}"]')
    assert g.get_attribute("role") == "button"
    label = g.get_attribute("aria-label") or ""
    assert PRINCIPAL in label and "ended" in label and grand in label

    # Selecting the grandchild shows its evidence, receipt included; the hash keeps the selection.
    g.click()
    details = page.locator("#details-body")
    details.get_by_text("Receipt", exact=True).wait_for()
    page.wait_for_selector("#entries")
    text = details.inner_text()
    assert "completed" in text and "allow" in text and grand in text and child in text
    assert page.locator("#verify-link").get_attribute("href") == f"/ui/verify#{grand}"
    assert page.evaluate("location.hash") == f"#permit={grand}"
    assert g.get_attribute("aria-pressed") == "true"
    kinds = [r.inner_text() for r in page.locator("#entries tbody tr td:first-child").all()]
    assert {"permit", "decision", "receipt"} <= set(kinds)
    assert "available" in page.locator("#entries").inner_text()
    # The page read only the public lineage API, never the credentialed bundle.
    assert not [u for u in w.requests if "/v1/bundles/" in u]


def test_keyboard_navigation_moves_through_the_generations(
    ui_server: FiatServer, chain: list[str], open_page: Callable[..., Watched]
) -> None:
    root, child, grand = chain
    w = open_page(ui_server.url, "/ui/lineage")
    page = w.page
    search_principal(w, PRINCIPAL)
    wait_js(page, "document.querySelectorAll('#dag g.node').length === 3")
    page.locator("#clear").focus()
    page.keyboard.press("Tab")  # the first node of the graph is the next stop
    focused = "document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.id : null"
    assert page.evaluate(focused) == root
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == child
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == grand
    page.keyboard.press("ArrowUp")
    assert page.evaluate(focused) == child
    page.keyboard.press("Enter")
    wait_js(page, f"location.hash === '#permit={child}'")
    page.wait_for_selector("#entries")
    assert child in page.locator("#details-body").inner_text()
    assert page.locator(f'#dag g.node[data-id="{child}"]').get_attribute("aria-pressed") == "true"
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == grand


def test_the_hash_opens_a_permits_chain_with_it_selected(
    ui_server: FiatServer, chain: list[str], open_page: Callable[..., Watched]
) -> None:
    root, child, grand = chain
    w = open_page(ui_server.url, f"/ui/lineage#permit={child}")
    page = w.page
    wait_js(page, "document.querySelectorAll('#dag g.node').length === 3")
    page.wait_for_selector("#entries")
    assert page.locator("#permit").input_value() == child
    assert page.locator(f'#dag g.node[data-id="{grand}"]').count() == 1  # the whole chain, not only the child
    assert page.locator(f'#dag g.node[data-id="{child}"]').get_attribute("aria-pressed") == "true"
    assert root in page.locator("#details-body").inner_text()  # its parent, linked
    # A parent link in the details selects that node.
    page.locator("#details-body a", has_text=root).click()
    wait_js(page, f"location.hash === '#permit={root}'")


def test_a_bad_time_range_is_explained_not_sent(
    ui_server: FiatServer, chain: list[str], open_page: Callable[..., Watched]
) -> None:
    w = open_page(ui_server.url, "/ui/lineage")
    page = w.page
    page.wait_for_selector("#dag")  # the newest permits are shown at first
    page.fill("#since", "2030-01-02T00:00:00")
    page.fill("#until", "2030-01-01T00:00:00")
    page.click("#search button[type=submit]")
    wait_js(page, "document.getElementById('status').textContent.includes('since is after until')")
    assert page.locator("#status").get_attribute("role") == "status"
    assert not [u for u in w.requests if "since=2030" in u]  # checked here, not sent
    page.fill("#since", "")
    page.fill("#until", "")
    page.fill("#limit", "0")
    page.click("#search button[type=submit]")
    wait_js(page, "document.getElementById('status').textContent.includes('from 1 to 500')")


@pytest.fixture(scope="module")
def renewing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    s = FiatServer(renewing_home(tmp_path_factory.mktemp("lineage-renewing"))).start()
    try:
        run_renewed(s)
        yield s
    finally:
        s.stop()


def test_renewals_are_drawn_dashed_beside_the_permit_they_renew(
    renewing_server: FiatServer, open_page: Callable[..., Watched]
) -> None:
    w = open_page(renewing_server.url, "/ui/lineage")
    page = w.page
    page.wait_for_selector("#dag path.edge.renewal", state="attached")  # a flat line: no height to be "visible"
    renewals = page.locator("#dag path.edge.renewal")
    assert renewals.count() == page.locator("#dag g.node").count() - 1 >= 1
    assert page.locator("#dag path.edge.parent").count() == 0
    assert renewals.first.evaluate("e => getComputedStyle(e).strokeDasharray") not in ("", "none")
    boxes = [g.bounding_box() for g in page.locator("#dag g.node").all()]
    assert len({b["y"] for b in boxes if b}) == 1  # one generation: every renewal in the same layer
    states = [g.get_attribute("data-state") for g in page.locator("#dag g.node").all()]
    assert states.count("ended") == 1 and set(states) == {"renewed", "ended"}
    # Arrow keys walk along the renewal chain (→ to the renewal).
    page.locator("#dag g.node").first.focus()
    page.keyboard.press("ArrowRight")
    focused = page.evaluate("document.activeElement.dataset.id")
    assert focused == page.locator("#dag g.node").nth(1).get_attribute("data-id")
