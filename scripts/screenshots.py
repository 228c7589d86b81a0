#!/usr/bin/env python3
"""Regenerate docs/screenshots/*.png: each of Fiat's web pages in real Chromium, on real data.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

It builds a scratch home, starts a real ``fiat serve`` on it and seeds it with real governed
executions (``fiat.bench.ui.seeded_server``: allowed, denied, a three-generation lineage), launches
the demo's long job and revokes it (so the demo page shows a halt), then photographs every page
at 1440×900 with Debian's ``/usr/bin/chromium`` driven by Playwright. Nothing is staged or
faked: what the pictures show is what the server held.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from fiat.bench.ui import CHROMIUM, seeded_server
from fiat.config import load_config
from fiat.keys.admin_token import read_admin_token

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1440, "height": 900}


def wait_js(page: Any, expression: str, timeout: float = 20.0) -> None:
    """Poll ``expression`` (the pages' CSP refuses Playwright's in-page ``wait_for_function``)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {expression}")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fiat-screens-") as tmp, seeded_server(Path(tmp)) as seeded:
        url, home, bundle, root = seeded
        token = read_admin_token(load_config(home, require=True).keys_dir)
        admin = {"Authorization": f"Bearer {token}"}
        lineage = httpx.get(f"{url}/v1/lineage", params={"principal": "agent:release-bot"}, timeout=30).json()
        deepest = max(lineage["nodes"], key=lambda n: n.get("depth") or 0)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
            page = context.new_page()

            def shot(name: str) -> None:
                path = args.out / f"{name}.png"
                page.screenshot(path=str(path))
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

            page.goto(f"{url}/ui/")
            shot("index")

            # Governance console: the live log, permits and their state, keys, policies.
            page.goto(f"{url}/ui/console")
            page.wait_for_load_state("networkidle")
            time.sleep(2)
            shot("console")

            # Demo: the long job launched, a few heartbeats, revoked from the API, halted.
            page.goto(f"{url}/ui/demo")
            time.sleep(1)
            run = httpx.post(f"{url}/v1/demo/runs", json={"scenario": "long-job"}, headers=admin, timeout=30)
            run.raise_for_status()
            run_id = run.json()["runId"]
            time.sleep(4)
            httpx.post(f"{url}/v1/demo/runs/{run_id}/revoke", headers=admin, timeout=30).raise_for_status()
            time.sleep(3)
            shot("demo")

            # Proof viewer: the trust root pinned, a real bundle verified in the browser.
            page.goto(f"{url}/ui/verify")
            page.set_input_files("#root-file", str(root))
            page.set_input_files("#bundle-file", str(bundle))
            time.sleep(2)
            shot("verify")

            # Health: a few samples in.
            page.goto(f"{url}/ui/health")
            time.sleep(6)
            shot("health")

            # Lineage: the three-generation chain, the grandchild selected.
            page.goto(f"{url}/ui/lineage#permit={deepest['id']}")
            wait_js(page, "document.querySelectorAll('#dag g.node').length >= 3")
            time.sleep(1)
            shot("lineage")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
