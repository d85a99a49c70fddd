"""A real browser follows a run: headless Chromium's EventSource receives every event through
completion, and reconnects with Last-Event-ID when the server restarts mid-run."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from mgx_agent.testing.fake_llm import FakeLLMServer
from tests.e2e.browsers import browser  # noqa: F401 (fixture)
from tests.e2e.events_support import api_process

pytestmark = pytest.mark.slow

EVENT_TYPES = [
    "run.created", "run.status", "run.phase", "run.plan_ready", "run.approval_required", "run.approved",
    "run.rejected", "agent.message", "agent.delta", "artifact.created", "sandbox.result", "run.usage",
    "run.log", "run.completed", "run.failed", "run.cancelled", "run.expired",
]
TERMINAL = ["run.completed", "run.failed", "run.cancelled", "run.expired"]

PAGE = """<!doctype html><html><body><script>
window.received = []; window.opens = 0; window.done = false;
const source = new EventSource("/runs/%(run_id)s/events");
source.onopen = () => { window.opens += 1; };
for (const type of %(types)s) {
  source.addEventListener(type, (message) => {
    const data = JSON.parse(message.data);
    window.received.push({id: message.lastEventId, type: message.type, seq: data.seq});
    if (%(terminal)s.includes(type) || (type === "run.rejected" && data.data.status === "rejected")) {
      source.close(); window.done = true;
    }
  });
}
</script></body></html>"""


def test_browser_eventsource_follows_a_run_through_completion_and_reconnects(
    tmp_path: Path, browser: Browser
) -> None:
    with FakeLLMServer() as fake_llm:
        settings = {
            "sqlite_path": tmp_path / "mgx.db",
            "db_auto_migrate": "true",
            "mgx_llm_base_url": fake_llm.base_url,
            "mgx_llm_api_key": "test-key",
            "runner_workers": 1,
            "runner_poll_seconds": 0.2,
        }
        server = api_process("api", tmp_path, **settings).start()
        try:
            with httpx.Client(base_url=server.base_url, timeout=10) as client:
                task = client.post("/tasks/", json={"title": "fizzbuzz", "description": "write fizzbuzz(n)"}).json()
                run = client.post("/runs/", json={"task_id": task["id"]}).json()

            page = browser.new_page()
            page_url = f"{server.base_url}/__eventsource_test__"
            html = PAGE % {"run_id": run["id"], "types": EVENT_TYPES, "terminal": TERMINAL}
            # Served from the API's own origin, as a same-origin app page would be.
            page.route(page_url, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
            page.goto(page_url)
            page.wait_for_function(
                "window.received.some((e) => e.type === 'run.approval_required')", timeout=20_000
            )

            # Restart the server on the same port: EventSource reconnects with Last-Event-ID.
            server.stop()
            server = api_process("api-restarted", tmp_path, port=server.port, **settings).start()
            page.wait_for_function("window.opens >= 2", timeout=20_000)
            with httpx.Client(base_url=server.base_url, timeout=10) as client:
                assert client.post(f"/runs/{run['id']}/approve", json={}).status_code == 200
                page.wait_for_function("window.done", timeout=30_000)
                logged = client.get(f"/runs/{run['id']}/logs", params={"limit": 1000}).json()["items"]
            received = page.evaluate("window.received")
        finally:
            server.stop()

    assert received[-1]["type"] == "run.completed"
    assert [(item["seq"], item["type"]) for item in received] == [(e["seq"], e["type"]) for e in logged]
    assert all(item["id"] == str(item["seq"]) for item in received)
