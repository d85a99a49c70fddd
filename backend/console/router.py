"""Serves the console: one HTML page at ``/console/`` and its static files at ``/console/static``.

Everything else the console shows comes from the public REST API and the run event stream,
called from the browser with the visitor's own key; this module holds no data and no rule.
The page and its assets need no key (they contain none and show nothing until the API
answers), like the API documentation.

Every answer carries a Content-Security-Policy that allows nothing from another origin and no
inline script or style, so text the team's models wrote can never run as code in the page.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CONSOLE_URL = "/console"
CONSOLE_STATIC_URL = f"{CONSOLE_URL}/static"
PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
PAGE_TEMPLATE = PACKAGE_DIR / "templates" / "console.html"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # The page's own address never leaves with a request (it may carry a run id).
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class ConsoleStaticFiles(StaticFiles):
    """Static files with the console's security headers; revalidated on every load, so a new
    release's scripts are never mixed with an old page."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


@lru_cache(maxsize=1)
def console_page() -> str:
    return PAGE_TEMPLATE.read_text(encoding="utf-8")


def install_console(app: FastAPI) -> None:
    """Register ``/console`` (redirect), ``/console/`` (the page) and the static mount."""

    @app.get(CONSOLE_URL, include_in_schema=False)
    async def console_redirect(request: Request) -> RedirectResponse:
        # The page's links are relative to /console/; root_path keeps it right behind a proxy prefix.
        return RedirectResponse(f"{request.scope.get('root_path', '')}{CONSOLE_URL}/", status_code=308)

    @app.get(f"{CONSOLE_URL}/", include_in_schema=False)
    async def console() -> HTMLResponse:
        return HTMLResponse(console_page(), headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    app.mount(CONSOLE_STATIC_URL, ConsoleStaticFiles(directory=STATIC_DIR), name="console-static")
