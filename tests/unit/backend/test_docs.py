"""The documentation pages reference only the service's own assets, and every one of them loads."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app.main import create_app
from backend.config import Settings
from tests.conftest import make_settings
from tests.databases import sqlite_copy

EXTERNAL_URL = re.compile(r"(?:https?:)?//[a-z0-9.-]+", re.IGNORECASE)


class AssetLinks(HTMLParser):
    """Collects the URLs a page makes the browser fetch: ``src`` and ``href`` and ReDoc's ``spec-url``."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "spec-url"} and value:
                self.urls.append(value)


def asset_urls(html: str) -> list[str]:
    parser = AssetLinks()
    parser.feed(html)
    return parser.urls


@pytest.fixture
def docs_client(sqlite_template: Path, tmp_path: Path) -> TestClient:
    settings: Settings = make_settings(sqlite_copy(sqlite_template, tmp_path))
    return TestClient(create_app(settings))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_references_no_external_url(docs_client: TestClient, page: str) -> None:
    response = docs_client.get(page)
    assert response.status_code == 200
    assert EXTERNAL_URL.findall(response.text) == []
    assert "fonts.googleapis" not in response.text


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"/static/docs/swagger-ui.css", "/static/docs/swagger-ui-bundle.js", "/static/docs/favicon.png"}),
        ("/redoc", {"/static/docs/redoc.standalone.js", "/static/docs/favicon.png", "/openapi.json"}),
    ],
)
def test_every_asset_of_a_docs_page_is_served_by_the_app(
    docs_client: TestClient, page: str, expected: set[str]
) -> None:
    urls = set(asset_urls(docs_client.get(page).text))
    assert urls == expected
    for url in urls:
        response = docs_client.get(url)
        assert response.status_code == 200, url
        assert response.content, url


def test_swagger_ui_loads_the_local_schema_without_the_public_validator(docs_client: TestClient) -> None:
    html = docs_client.get("/docs").text
    assert "url: '/openapi.json'" in html
    assert '"validatorUrl": null' in html
    assert docs_client.get("/openapi.json").status_code == 200


def test_docs_honour_the_proxy_root_path(sqlite_template: Path, tmp_path: Path) -> None:
    app = create_app(make_settings(sqlite_copy(sqlite_template, tmp_path)))
    with TestClient(app, root_path="/mgx") as client:
        urls = asset_urls(client.get("/redoc").text)
    assert urls and all(url.startswith("/mgx/") for url in urls)


def test_docs_pages_are_not_part_of_the_schema(docs_client: TestClient) -> None:
    paths = docs_client.get("/openapi.json").json()["paths"]
    assert not {path for path in paths if path.startswith(("/docs", "/redoc", "/static"))}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_restrict_fetches_to_the_service(docs_client: TestClient, page: str) -> None:
    policy = docs_client.get(page).headers["content-security-policy"]
    directives = dict(directive.strip().split(" ", 1) for directive in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"


def test_redoc_bundle_is_served_without_its_cdn_logo(docs_client: TestClient) -> None:
    response = docs_client.get("/static/docs/redoc.standalone.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert b"cdn.redoc.ly" not in response.content
    assert b"Redoc" in response.content
