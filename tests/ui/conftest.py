"""Real Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) against a real ``fiat serve``.

Every page a test opens through :func:`open_page` is watched: a console error, an uncaught
exception or a request to any origin but the server's fails the test at teardown. A
machine without ``/usr/bin/chromium`` skips these tests with the reason
(``scripts/system-deps.sh`` installs it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support.processes import FiatServer, ok
from support.processes import fiat as fiat_cli

CHROMIUM = Path(os.environ.get("FIAT_TEST_CHROMIUM", "/usr/bin/chromium"))
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "fiat" / "examples" / "policies"

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, sync_playwright
except ImportError:  # pragma: no cover - a dev install has it
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if sync_playwright is None:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (scripts/system-deps.sh)")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: the tests may run as root, where Chromium's own sandbox refuses to start.
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
    try:
        yield b
    finally:
        b.close()


@dataclass
class Watched:
    """A page and what it did that a test must not allow."""

    page: Page
    origin: str
    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [f"console: {e}" for e in self.console_errors] + [f"request: {r}" for r in self.foreign_requests]


def watch(page: Page, origin: str) -> Watched:
    w = Watched(page, origin)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            w.console_errors.append(f"{msg.text} ({msg.location.get('url', '')}:{msg.location.get('lineNumber', '')})")

    def on_request(req: Request) -> None:
        w.requests.append(req.url)
        parts = urlsplit(req.url)
        if parts.scheme in ("data", "blob"):
            return
        if f"{parts.scheme}://{parts.netloc}" != origin:
            w.foreign_requests.append(req.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: w.console_errors.append(f"uncaught: {exc}"))
    page.on("request", on_request)
    return w


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Watched]]:
    """``open_page(server_url, path="/ui/", **context_options)`` → a watched page; fails the test
    at teardown on a console error or a request to another origin."""
    opened: list[tuple[Watched, object]] = []

    def opener(base: str, path: str = "/ui/", **options: object) -> Watched:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, **options)  # type: ignore[arg-type]
        page = context.new_page()
        parts = urlsplit(base)
        w = watch(page, f"{parts.scheme}://{parts.netloc}")
        opened.append((w, context))
        page.goto(base + path)
        return w

    yield opener
    problems = [p for w, _ in opened for p in w.problems()]
    for _, context in opened:
        context.close()  # type: ignore[attr-defined]
    assert not problems, "\n".join(problems)


def make_home(base: Path) -> Path:
    home = base / "home"
    ok(fiat_cli("init", "--home", home, "--json"))
    ok(fiat_cli("policy", "publish", EXAMPLES, "--home", home, "--json"))
    return home


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    """A real ``fiat serve`` on a fresh home with the example policies (trust state every 250 ms)."""
    home = make_home(tmp_path_factory.mktemp("ui"))
    s = FiatServer(home, env={"FIAT_AUTHORITY_TRUST_INTERVAL_MS": "250"}).start()
    try:
        yield s
    finally:
        s.stop()
