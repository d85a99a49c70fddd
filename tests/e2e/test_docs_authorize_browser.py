"""Swagger UI against a service with API_KEYS, in headless Chromium: a protected operation answers
401 until a key is entered with the Authorize button, then 200; the probes stay public."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import ApiServer, service_env
from tests.e2e.browsers import RecordedPage, browser, recorded  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

API_KEY = "swagger-key-7d1e90"


@pytest.fixture(scope="module")
def keyed_docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    workdir = tmp_path_factory.mktemp("keyed-docs-server")
    env = service_env(
        f"sqlite:///{workdir / 'mgx.db'}", llm_base_url=None, LOG_LEVEL="WARNING", API_KEYS=f"docs:{API_KEY}"
    )
    server = ApiServer(env, workdir, name="keyed-docs").start()
    try:
        yield server
    finally:
        server.stop()


def test_authorize_button_sends_the_key(keyed_docs_server: ApiServer, recorded: RecordedPage) -> None:
    page = recorded.page
    page.goto(f"{keyed_docs_server.base_url}/docs")
    tasks = page.locator(".opblock.opblock-get").filter(has=page.locator('[data-path="/tasks/"]'))
    tasks.wait_for()
    tasks.locator(".opblock-summary-control").click()
    tasks.locator("button.try-out__btn").click()
    status = tasks.locator(".live-responses-table .response .response-col_status")

    tasks.locator("button.execute").click()
    status.wait_for()
    assert status.inner_text().strip().startswith("401")

    page.locator(".auth-wrapper button.authorize").click()
    api_key_form = page.locator(".auth-container").filter(has_text="ApiKeyAuth")
    api_key_form.locator("input").fill(API_KEY)
    api_key_form.locator("button.authorize").click()
    page.locator(".modal-ux button.close-modal").click()

    tasks.locator("button.execute").click()
    page.wait_for_function(
        "el => el.innerText.trim().startsWith('200')", arg=status.element_handle(), timeout=20_000
    )
    assert '"items"' in tasks.locator(".live-responses-table").inner_text()
    # The only console errors are the 401 answers before authorizing (no CSP violation, no script error).
    assert all("401" in error for error in recorded.errors), recorded.errors
