"""Interactive API documentation (``/docs`` Swagger UI, ``/redoc`` ReDoc) served without a CDN.

The service runs on closed networks, so every asset the two pages load (JavaScript, CSS,
favicon) comes from the service itself: the files shipped by the ``fastapi-offline`` package
(Swagger UI 5 and ReDoc 2 bundles), mounted under ``/static/docs``. ReDoc is told not to load
Google fonts and Swagger UI not to call the public schema validator. The ReDoc bundle
hard-codes one remote address, its sidebar logo on cdn.redoc.ly; the service serves the bundle
with a blank inline image in its place. Both pages also carry a Content-Security-Policy that
keeps every fetch on the service's own origin, so a future bundle cannot reach out either.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
DOCS_STATIC_URL = "/static/docs"

# The Swagger UI and ReDoc bundles shipped in the ``fastapi-offline`` wheel.
DOCS_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
REDOC_BUNDLE = "redoc.standalone.js"
# ReDoc 2 renders its "API docs by Redocly" sidebar logo from this address, unconditionally.
REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
BLANK_IMAGE = b"data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"

# Inline script and styles come from FastAPI's page templates and the bundles' own styling;
# ReDoc runs its search index in a worker created from a blob: URL.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)

SWAGGER_UI_PARAMETERS = {
    # The default badge asks validator.swagger.io to check the schema: a request off the host.
    "validatorUrl": None,
}


def install_offline_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` from local assets.

    The app must be created with ``docs_url=None`` and ``redoc_url=None`` so FastAPI's CDN-backed
    pages are not registered as well.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("create the app with docs_url=None and redoc_url=None before installing offline docs")

    # Registered before the static mount, which would otherwise answer for the original file.
    @app.get(f"{DOCS_STATIC_URL}/{REDOC_BUNDLE}", include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(
            offline_redoc_bundle(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"}
        )

    app.mount(DOCS_STATIC_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    def asset(request: Request, name: str) -> str:
        # root_path keeps the links right behind a reverse proxy that mounts the API under a prefix.
        return f"{request.scope.get('root_path', '')}{DOCS_STATIC_URL}/{name}"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}" if oauth2_redirect_url else None,
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), **SWAGGER_UI_PARAMETERS},
        )
        return with_content_security_policy(page)

    if oauth2_redirect_url:

        @app.get(oauth2_redirect_url, include_in_schema=False)
        async def swagger_ui_oauth2_redirect() -> HTMLResponse:
            return with_content_security_policy(get_swagger_ui_oauth2_redirect_html())

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, REDOC_BUNDLE),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )
        return with_content_security_policy(page)


def with_content_security_policy(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    return page


@lru_cache(maxsize=1)
def offline_redoc_bundle() -> bytes:
    """The ReDoc bundle with its one remote image replaced by a blank inline one."""
    return (DOCS_ASSETS_DIR / REDOC_BUNDLE).read_bytes().replace(REDOC_CDN_LOGO, BLANK_IMAGE)
