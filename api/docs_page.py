"""``/api/v1/docs``: Swagger UI served from this process, never from a CDN.

FastAPI's own docs page loads Swagger UI's script and stylesheet from a CDN: without
internet the page is blank, and it is where operators type passwords, with no integrity
check on what runs there. Here the files come from a pinned, hashed package
(fastapi-offline, which ships a current Swagger UI 5 bundle; swagger-ui-bundle ships 4.15
from 2022), under ``/api/v1/docs-assets``, and a Content-Security-Policy lets the page run
only same-origin scripts and its own inline start-up script (by hash).
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def _policy(page: bytes) -> str:
    """The page's Content-Security-Policy: scripts from this origin, plus the inline
    script of this very page, by its hash (it holds the Swagger UI settings)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' {hashes}",
            # Swagger UI sets style attributes and renders data: images (icons, schemas).
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        )
    )


def install_docs(app: FastAPI, *, prefix: str) -> None:
    """Serve Swagger UI at ``{prefix}/docs`` and its files at ``{prefix}/docs-assets``.

    The app must be built with ``docs_url=None`` (no CDN page of FastAPI's own).
    """
    assets = f"{prefix}/docs-assets"
    app.mount(assets, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    html = get_swagger_ui_html(
        openapi_url=f"{prefix}/openapi.json",
        title=f"{app.title} - API docs",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
        # No redirect page: the OAuth2 password flow (the Authorize button) posts the
        # form to the document's token URL from this page; only browser-redirect flows
        # need one.
        oauth2_redirect_url=None,
    )
    page = bytes(html.body)
    headers = {
        "Content-Security-Policy": _policy(page),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }

    @app.get(f"{prefix}/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)
