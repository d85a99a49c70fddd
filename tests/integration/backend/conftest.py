"""Fixtures for the runs API: the app wired to a fake LLM server over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from mgx_agent.llm import LLMConfig
from mgx_agent.testing.fake_llm import FakeLLMServer
from sqlalchemy.engine import URL

from backend.app.main import create_app
from tests.conftest import make_settings

RunClientFactory = Callable[..., "AsyncIterator[httpx.AsyncClient]"]


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def fake_llm_config(server: FakeLLMServer) -> LLMConfig:
    return LLMConfig(_env_file=None, base_url=server.base_url, api_key="test-key", model="gpt-4o-mini", max_retries=0)


# Settings that keep the runner quick in tests: short polls, beats and leases, no sandbox, no cache.
FAST_RUNNER_SETTINGS: dict[str, object] = {
    "mgx_sandbox": "off",
    "runner_workers": 2,
    "runner_poll_seconds": 0.5,
    "runner_heartbeat_seconds": 0.2,
    "runner_lease_seconds": 3,
    "runner_shutdown_grace_seconds": 2,
    "mgx_enable_caching": False,
}


@pytest.fixture
async def run_app(database_url: URL, fake_llm: FakeLLMServer):  # type: ignore[no-untyped-def]
    """Start the app (runner included) with settings overrides; yields an HTTP client factory."""
    stack: list = []

    async def start(**overrides: object) -> httpx.AsyncClient:
        values = {**FAST_RUNNER_SETTINGS, **overrides}
        app = create_app(make_settings(database_url, **values), fake_llm_config(fake_llm))
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        stack.append((lifespan, client))
        client.app = app  # type: ignore[attr-defined]
        return client

    yield start
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


async def wait_for_status(
    client: httpx.AsyncClient, run_id: str, statuses: set[str] | str, timeout: float = 15
) -> dict:
    wanted = {statuses} if isinstance(statuses, str) else statuses
    deadline = time.monotonic() + timeout
    while True:
        run = (await client.get(f"/runs/{run_id}")).json()
        if run["status"] in wanted:
            return run
        assert time.monotonic() < deadline, f"run stayed {run['status']}, wanted {sorted(wanted)}: {run.get('error')}"
        await asyncio.sleep(0.05)


async def start_run(client: httpx.AsyncClient, config: dict | None = None, **run_body: object) -> tuple[dict, dict]:
    task = (
        await client.post(
            "/tasks/", json={"title": "fizzbuzz", "description": "write fizzbuzz(n)", "config": config or {}}
        )
    ).json()
    response = await client.post("/runs/", json={"task_id": task["id"], **run_body})
    assert response.status_code == 201, response.text
    return task, response.json()
