"""The API documentation works on a closed network: /docs and /redoc, opened in headless Chromium
against a real uvicorn process, render from the service's own assets and fetch nothing from any
other host; Swagger UI's "Try it out" reaches the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.browsers import RecordedPage, browser, recorded  # noqa: F401 (fixtures)
from tests.e2e.conftest import ApiServer, service_env

pytestmark = pytest.mark.slow



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
