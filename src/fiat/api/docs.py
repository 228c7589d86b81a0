"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served with no CDN: both pages work offline.

FastAPI's own pages load their JavaScript and CSS from a CDN, so on a machine
without Internet access they are blank. These pages reference only same-origin
URLs under ``/docs/assets/``, served from the files the ``fastapi-offline``
distribution installs (Swagger UI 5 and ReDoc 2 builds, MIT / Apache-2.0).
Swagger UI's online validator badge (an image from another origin) is off, and ReDoc's
"API docs by Redocly" footer logo, which its build loads from ``cdn.redoc.ly``, is pointed at
the same-origin favicon as the file is served (``tests/ui/test_pages.py`` watches a real
browser render both pages with no request to another host).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Awaitable, Callable
from functools import cache
from typing import NamedTuple

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from fiat.api.problems import Problem

ASSETS_PACKAGE = "fastapi_offline"  # a declared dependency; its static/ folder holds the builds
ASSETS_DISTRIBUTION = "fastapi-offline"
ASSETS_PREFIX = "/docs/assets"
CACHE_ASSETS = "public, max-age=86400"


class Asset(NamedTuple):
    file: str
    media_type: str
    #: (what, with): a reference to another origin inside the build, replaced as the file is served.
    rewrite: tuple[bytes, bytes] | None = None


#: The only files served under /docs/assets/: fixed names, no path from the request reaches the file system.
ASSETS: dict[str, Asset] = {
    "swagger-ui-bundle.js": Asset("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),  # RFC 9239 §6
    "swagger-ui.css": Asset("swagger-ui.css", "text/css; charset=utf-8"),
    "redoc.standalone.js": Asset(
        "redoc.standalone.js",
        "text/javascript; charset=utf-8",
        (b"https://cdn.redoc.ly/redoc/logo-mini.svg", ASSETS_PREFIX.encode() + b"/favicon.png"),
    ),
    "favicon.png": Asset("favicon.png", "image/png"),
}


@cache
def _read(file: str, rewrite: tuple[bytes, bytes] | None = None) -> bytes:
    try:
        body = (importlib.resources.files(ASSETS_PACKAGE) / "static" / file).read_bytes()
        return body if rewrite is None else body.replace(*rewrite)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        detail = f"the API documentation's files are not installed (pip install {ASSETS_DISTRIBUTION})"
        raise Problem(503, "Service Unavailable", detail) from exc


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Add the two documentation pages, the OAuth 2 redirect page and their assets to ``app``
    (built with ``docs_url=None, redoc_url=None`` so that FastAPI adds no CDN pages)."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or f"{docs_url}/oauth2-redirect"

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        base = root(request)
        return _unframable(
            get_swagger_ui_html(
                openapi_url=base + openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{base}{ASSETS_PREFIX}/swagger-ui-bundle.js",
                swagger_css_url=f"{base}{ASSETS_PREFIX}/swagger-ui.css",
                swagger_favicon_url=f"{base}{ASSETS_PREFIX}/favicon.png",
                oauth2_redirect_url=base + oauth2_redirect_url,
                swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
            )
        )

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc_html(request: Request) -> HTMLResponse:
        base = root(request)
        return _unframable(
            get_redoc_html(
                openapi_url=base + openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{base}{ASSETS_PREFIX}/redoc.standalone.js",
                redoc_favicon_url=f"{base}{ASSETS_PREFIX}/favicon.png",
                with_google_fonts=False,
            )
        )

    app.add_route(docs_url, swagger_ui_html, include_in_schema=False)
    app.add_route(oauth2_redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route(redoc_url, redoc_html, include_in_schema=False)
    for name, asset in ASSETS.items():
        app.add_route(
            f"{ASSETS_PREFIX}/{name}", _asset_endpoint(asset), name=f"docs_asset_{name}", include_in_schema=False
        )


def _unframable(page: HTMLResponse) -> HTMLResponse:
    """No other site may frame the pages ("Try it out" sends real requests: clickjacking).
    Only ``frame-ancestors``: FastAPI's pages start Swagger UI and ReDoc from inline scripts."""
    page.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    page.headers["X-Frame-Options"] = "DENY"
    return page


def _asset_endpoint(asset: Asset) -> Callable[[Request], Awaitable[Response]]:
    async def serve(_: Request) -> Response:
        return Response(
            _read(asset.file, asset.rewrite), media_type=asset.media_type, headers={"Cache-Control": CACHE_ASSETS}
        )

    return serve
