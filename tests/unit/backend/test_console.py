"""The console's page and files: served from the service itself, without a key, under a
Content-Security-Policy that allows nothing from elsewhere and no inline script or style."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app.main import create_app
from backend.console.router import STATIC_DIR
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.unit.backend.test_docs import EXTERNAL_URL, asset_urls

# import ... from "./x.js" and the vendored libraries' own imports.
MODULE_IMPORT = re.compile(r"""(?:^|\n)\s*import\s[^;]*?from\s+["']([^"']+)["']""")


@pytest.fixture
def console_client(sqlite_template: Path, tmp_path: Path) -> TestClient:
    settings = make_settings(sqlite_copy(sqlite_template, tmp_path), api_keys="ops:console-test-key-1")
    return TestClient(create_app(settings), follow_redirects=False)


def test_console_redirects_to_its_page_which_needs_no_key(console_client: TestClient) -> None:
    redirect = console_client.get("/console")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/console/"
    page = console_client.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "MGX console" in page.text
    assert console_client.get("/tasks/").status_code == 401  # the API behind it still does


def test_service_information_links_to_the_console(console_client: TestClient) -> None:
    assert console_client.get("/").json()["console"] == "/console/"


def test_csp_forbids_other_origins_and_inline_code(console_client: TestClient) -> None:
    policy = console_client.get("/console/").headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


def test_page_has_no_inline_script_or_style_and_no_external_url(console_client: TestClient) -> None:
    html = console_client.get("/console/").text
    assert EXTERNAL_URL.findall(html) == []
    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html


def test_every_file_the_page_and_its_modules_load_is_served(console_client: TestClient) -> None:
    html = console_client.get("/console/").text
    pending = [f"/console/{url}" for url in asset_urls(html) if url.startswith("static/")]
    seen: set[str] = set()
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        seen.add(url)
        response = console_client.get(url)
        assert response.status_code == 200, url
        assert response.headers["x-content-type-options"] == "nosniff"
        if url.endswith(".js"):
            assert response.headers["content-type"].startswith("text/javascript")
            base = url.rsplit("/", 1)[0]
            for imported in MODULE_IMPORT.findall(response.text):
                assert imported.startswith("."), f"{url} imports {imported} from elsewhere"
                pending.append(posixpath.normpath(f"{base}/{imported}"))
            if not url.startswith("/console/static/vendor/"):
                assert "http://" not in response.text and "https://" not in response.text, url
    assert {"/console/static/js/main.js", "/console/static/js/run_page.js", "/console/static/vendor/highlight/core.min.js"} <= seen


def test_every_vendored_file_is_listed_in_the_notice() -> None:
    notice = (STATIC_DIR / "vendor" / "NOTICE.md").read_text()
    vendored = [path for path in (STATIC_DIR / "vendor").rglob("*") if path.is_file() and path.suffix in {".js", ".css"}]
    assert vendored
    for path in vendored:
        assert str(path.relative_to(STATIC_DIR / "vendor")) in notice, path
