"""``/ui/``: the five web surfaces, served from files inside the package (no CDN, no build step).

* ``/ui/`` — the index of the five pages;
* ``/ui/console`` (governance console), ``/ui/demo`` (runtime governance demo),
  ``/ui/verify`` (the in-browser proof viewer), ``/ui/health`` (health dashboard),
  ``/ui/lineage`` (lineage explorer);
* ``/ui/assets/<name>`` — their scripts and style sheets.

Every file is read from ``fiat/api/ui/`` once, by a fixed name listed when the module is
imported: nothing of the request path reaches the file system. Every response carries a
Content-Security-Policy that lets a page load and connect to its own origin only
(``default-src 'none'``; ``script-src``/``style-src``/``connect-src 'self'``), so no
request can leave a page for another host, and ``frame-ancestors 'none'`` so no other
site can frame the console's buttons.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Awaitable, Callable
from functools import cache

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from fiat.api.context import ApiContext

UI_PACKAGE = "fiat.api"
UI_FOLDER = "ui"

#: The pages: path under /ui/ → file.
PAGES: dict[str, str] = {
    "": "index.html",
    "console": "console.html",
    "demo": "demo.html",
    "verify": "verify.html",
    "health": "health.html",
    "lineage": "lineage.html",
}

MEDIA_TYPES = {  # RFC 9239 §6 for JavaScript
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _folder() -> importlib.resources.abc.Traversable:
    return importlib.resources.files(UI_PACKAGE) / UI_FOLDER


def asset_names() -> list[str]:
    """Every servable file under ``fiat/api/ui/`` (sub-folders as ``a/b.js``), by suffix."""
    names: list[str] = []

    def walk(folder: importlib.resources.abc.Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif any(entry.name.endswith(s) for s in MEDIA_TYPES) and not entry.name.endswith(".html"):
                names.append(prefix + entry.name)

    walk(_folder(), "")
    return sorted(names)


@cache
def _read(name: str) -> tuple[bytes, str]:
    path = _folder()
    for part in name.split("/"):
        path = path / part
    body = path.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _serve(name: str) -> Callable[[Request], Awaitable[Response]]:
    media_type = MEDIA_TYPES["." + name.rsplit(".", 1)[1]]

    async def serve(request: Request) -> Response:
        body, etag = _read(name)
        headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    return serve


def install(app: FastAPI, ctx: ApiContext) -> None:
    del ctx  # the pages read the public API like any other client
    for path, file in PAGES.items():
        app.add_route(f"/ui/{path}", _serve(file), methods=["GET", "HEAD"], include_in_schema=False)
        if path:  # /ui/console/ → /ui/console
            app.add_route(f"/ui/{path}/", _redirect(f"/ui/{path}"), include_in_schema=False)

    async def ui_root(_: Request) -> Response:
        return RedirectResponse("/ui/", status_code=308)

    app.add_route("/ui", ui_root, include_in_schema=False)
    for name in asset_names():
        app.add_route(f"/ui/assets/{name}", _serve(name), methods=["GET", "HEAD"], include_in_schema=False)


def _redirect(to: str) -> Callable[[Request], Awaitable[Response]]:
    async def redirect(request: Request) -> Response:
        query = request.url.query
        return RedirectResponse(to + (f"?{query}" if query else ""), status_code=308)

    return redirect
