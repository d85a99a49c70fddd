"""The API documentation works on a closed network: /docs and /redoc, opened in headless Chromium
against a real uvicorn process, render from the service's own assets and fetch nothing from any
other host; Swagger UI's "Try it out" reaches the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.e2e.conftest import ApiServer, service_env
from tests.services import unavailable

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_SCHEMES = {"data", "blob", "about"}
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The API on a loopback port with an embedded SQLite database."""
    workdir = tmp_path_factory.mktemp("docs-server")
    env = service_env(f"sqlite:///{workdir / 'mgx.db'}", llm_base_url=None, LOG_LEVEL="WARNING")
    server = ApiServer(env, workdir, name="docs").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        unavailable("Chromium", str(CHROMIUM))
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class RecordedPage:
    """A fresh page that records the URL of every request it makes."""

    def __init__(self, browser: Browser) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)

    def off_host(self, base_url: str) -> list[str]:
        own = urlsplit(base_url).netloc
        return [
            url for url in self.requests
            if urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).netloc != own
        ]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def recorded(browser: Browser) -> Iterator[RecordedPage]:
    page = RecordedPage(browser)
    try:
        yield page
    finally:
        page.close()


def test_swagger_ui_renders_offline_and_try_it_out_calls_the_api(
    docs_server: ApiServer, recorded: RecordedPage
) -> None:
    page = recorded.page
    page.goto(f"{docs_server.base_url}/docs")
    health = page.locator(".opblock.opblock-get").filter(has=page.locator('[data-path="/health/"]'))
    health.wait_for()
    assert page.locator(".opblock").count() >= 10  # the operations of every router rendered

    health.locator(".opblock-summary").click()
    health.locator("button.try-out__btn").click()
    health.locator("button.execute").click()
    status = health.locator(".live-responses-table .response .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert '"status": "ok"' in health.locator(".live-responses-table").inner_text()

    assert f"{docs_server.base_url}/health/" in recorded.requests
    assert f"{docs_server.base_url}/static/docs/swagger-ui-bundle.js" in recorded.requests
    assert recorded.off_host(docs_server.base_url) == []
    assert recorded.errors == []  # among others, no Content-Security-Policy violation


def test_redoc_renders_operations_offline(docs_server: ApiServer, recorded: RecordedPage) -> None:
    page = recorded.page
    page.goto(f"{docs_server.base_url}/redoc")
    page.locator("h2", has_text="Liveness: the process answers").wait_for()
    assert page.locator("h2", has_text="Basic health").count() == 1
    page.wait_for_load_state("networkidle")

    assert f"{docs_server.base_url}/static/docs/redoc.standalone.js" in recorded.requests
    assert recorded.off_host(docs_server.base_url) == []
    assert recorded.errors == []
