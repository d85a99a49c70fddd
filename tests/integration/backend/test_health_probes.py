"""Probe semantics against real dependencies: liveness never looks at them, readiness answers
within 2 s even when one hangs, names what fails and recovers by itself; draining turns
readiness 503 and ends live streams cleanly; the status report carries no secret."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI
from mgx_agent.llm import LLMConfig
from mgx_agent.testing.fake_llm import FakeLLMServer
from pydantic import SecretStr
from sqlalchemy.engine import URL

from backend.app.main import create_app
from tests.conftest import make_settings
from tests.databases import PostgresTestDatabase, sqlite_copy
from tests.integration.backend.conftest import FAST_RUNNER_SETTINGS, fake_llm_config
from tests.integration.backend.events_support import create_queued_run, serve
from tests.integration.backend.stalling_proxy import StallingProxy
from tests.services import postgres_url_for_tests, unavailable

# The probe contract: an answer within 2 s whatever the dependencies do.
PROBE_BUDGET_SECONDS = 2.0
BASE_SETTINGS: dict[str, Any] = {**FAST_RUNNER_SETTINGS, "runner_workers": 0}


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=10) as client:
            yield client


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get(path)
    return response, time.monotonic() - started


def assert_not_ready(response: httpx.Response, *failing: str) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:mgx:problem:not-ready"
    for name in failing:
        assert f"{name}: " in body["detail"], body["detail"]
        assert body["checks"][name]["ok"] is False, body["checks"]
    return body


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> URL:
    return sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture
def postgres_test_database(postgres_database: PostgresTestDatabase | None) -> PostgresTestDatabase:
    if postgres_database is None:
        unavailable("PostgreSQL", postgres_url_for_tests())
    assert postgres_database is not None
    postgres_database.truncate()
    return postgres_database


async def test_hanging_redis_fails_readiness_within_two_seconds_and_live_stays_ok(sqlite_url: URL) -> None:
    async with StallingProxy() as black_hole:
        settings = make_settings(sqlite_url, **BASE_SETTINGS, redis_url=f"redis://127.0.0.1:{black_hole.port}/0")
        async with asgi_client(create_app(settings, LLMConfig(_env_file=None))) as client:
            live, live_took = await timed_get(client, "/health/live")
            (ready, ready_took), (status, status_took) = await asyncio.gather(
                timed_get(client, "/health/ready"), timed_get(client, "/health/status")
            )

    assert live.status_code == 200 and live_took < 0.5, live_took
    assert ready_took < PROBE_BUDGET_SECONDS, f"readiness took {ready_took:.2f}s"
    body = assert_not_ready(ready, "redis")
    assert "no answer within" in body["checks"]["redis"]["detail"]
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"] and body["checks"]["runner"]["ok"]
    assert status.status_code == 200 and status_took < PROBE_BUDGET_SECONDS, status_took
    assert status.json()["status"] == "degraded"
    assert status.json()["redis"]["reachable"] is False


@pytest.mark.postgres
async def test_hanging_postgres_fails_readiness_within_two_seconds_then_recovers(
    postgres_test_database: PostgresTestDatabase,
) -> None:
    server = postgres_test_database.url
    async with StallingProxy((server.host or "127.0.0.1", server.port or 5432)) as proxy:
        settings = make_settings(server.set(host="127.0.0.1", port=proxy.port), **BASE_SETTINGS)
        async with asgi_client(create_app(settings, LLMConfig(_env_file=None))) as client:
            assert (await client.get("/health/ready")).status_code == 200
            task = await client.post("/tasks/", json={"title": "outage", "description": "survives a hang"})
            assert task.status_code == 201, task.text

            proxy.stall()
            live, live_took = await timed_get(client, "/health/live")
            (ready, ready_took), (status, status_took) = await asyncio.gather(
                timed_get(client, "/health/ready"), timed_get(client, "/health/status")
            )
            assert live.status_code == 200 and live_took < 0.5, live_took
            assert ready_took < PROBE_BUDGET_SECONDS, f"readiness took {ready_took:.2f}s"
            body = assert_not_ready(ready, "database", "migrations")
            assert "no answer within" in body["checks"]["database"]["detail"]
            assert body["checks"]["runner"]["ok"] is True
            assert status.status_code == 200 and status_took < PROBE_BUDGET_SECONDS, status_took
            report = status.json()
            assert report["status"] == "degraded" and report["database"]["ok"] is False
            assert report["runner"]["queue_depth"] is None and "no answer" in report["runner"]["queue_error"]

            proxy.resume()
            deadline = time.monotonic() + 10
            while (ready := await client.get("/health/ready")).status_code != 200:
                assert time.monotonic() < deadline, f"still not ready after the database came back: {ready.text}"
                await asyncio.sleep(0.1)
            assert (await client.get(f"/tasks/{task.json()['id']}")).status_code == 200


async def test_readiness_names_a_runner_that_is_not_claiming(sqlite_url: URL) -> None:
    app = create_app(make_settings(sqlite_url, **BASE_SETTINGS), LLMConfig(_env_file=None))
    async with asgi_client(app) as client:
        assert (await client.get("/health/ready")).json()["checks"]["runner"] == {"ok": True, "detail": "started"}
        await app.state.runner.stop()
        body = assert_not_ready(await client.get("/health/ready"), "runner")
        assert body["checks"]["runner"]["detail"] == "not started"


async def test_draining_turns_readiness_503_and_ends_streams_cleanly(
    sqlite_url: URL, fake_llm: FakeLLMServer
) -> None:
    app = create_app(make_settings(sqlite_url, **BASE_SETTINGS), fake_llm_config(fake_llm))
    async with serve(app) as live:
        run = await create_queued_run(live.http)
        async with live.http.stream("GET", f"/runs/{run['id']}/events", timeout=10) as stream:
            lines = stream.aiter_lines()
            while (await anext(lines)) != "event: run.created":
                pass
            socket = await websockets.connect(f"{live.ws_url}/ws/tasks/{run['task_id']}")

            drain = asyncio.create_task(app.state.shutdown.drain())
            rest = await asyncio.wait_for(_read_to_end(lines), PROBE_BUDGET_SECONDS)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), PROBE_BUDGET_SECONDS)
            await drain

        # The stream ended with its body complete (no protocol error above) and said why.
        assert ": server shutting down; reconnect with Last-Event-ID" in rest
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert_not_ready(await live.http.get("/health/ready"), "shutdown")
        assert (await live.http.get("/health/live")).status_code == 200
        status = (await live.http.get("/health/status")).json()
        assert status["status"] == "draining" and status["draining"] is True
        assert status["events"]["subscribers"] == 0
        # A stream opened while draining ends at once, so its client reconnects elsewhere.
        late = await asyncio.wait_for(live.http.get(f"/runs/{run['id']}/events"), PROBE_BUDGET_SECONDS)
        assert late.status_code == 200 and late.text.startswith("retry: 1000")
        assert "server shutting down" in late.text


async def _read_to_end(lines: AsyncIterator[str]) -> list[str]:
    return [line async for line in lines]


async def test_status_reports_operations_data_and_no_secret(sqlite_url: URL, fake_llm: FakeLLMServer) -> None:
    secrets = {
        "db_password": "pg-secret-4417",
        "redis_password": "redis-secret-2290",
        "llm_key": "sk-secret-8812",
        "llm_url_password": "url-secret-3321",
        "llm_url_query": "query-secret-6650",
        "api_key": "api-key-secret-5039",
    }
    async with StallingProxy() as closed_redis:
        pass  # its port is closed again: Redis is configured and unreachable
    settings = make_settings(
        sqlite_url,
        **{**BASE_SETTINGS, "mgx_enable_caching": True},
        db_password=secrets["db_password"],
        redis_url=f"redis://:{secrets['redis_password']}@127.0.0.1:{closed_redis.port}/0",
        api_keys=f"ops:{secrets['api_key']}:admin",
    )
    base = fake_llm.base_url.replace("http://", f"http://mgx:{secrets['llm_url_password']}@")
    llm = LLMConfig(
        _env_file=None,
        base_url=f"{base}?key={secrets['llm_url_query']}",
        api_key=SecretStr(secrets["llm_key"]),
        max_retries=0,
    )
    app = create_app(settings, llm)
    async with asgi_client(app) as client:
        client.headers["X-API-Key"] = secrets["api_key"]
        await create_queued_run(client)
        status = await client.get("/health/status")
        ready = await client.get("/health/ready")

    report = status.json()
    for name, secret in secrets.items():
        assert secret not in status.text, f"{name} appears in /health/status"
        assert secret not in ready.text, f"{name} appears in /health/ready"
    assert report["versions"]["service"] == report["version"]
    assert {"python", "fastapi", "sqlalchemy"} <= set(report["versions"])
    assert report["uptime_seconds"] >= 0 and report["draining"] is False
    assert report["runner"]["queue_depth"] == 1 and report["runner"]["oldest_queued_age_seconds"] >= 0
    assert report["events"] == {"subscribers": 0, "relay": "database-poll"}
    assert report["cache"]["backend"] == "memory" and {"hits", "misses", "entries"} <= set(report["cache"])
    assert report["llm"]["provider"] == "openai" and report["llm"]["api_key_configured"] is True
    assert report["llm"]["base_url"].startswith("http://127.0.0.1:") and report["llm"]["base_url"].endswith("?***")
    assert report["redis"]["configured"] is True and report["redis"]["reachable"] is False
    assert report["status"] == "degraded"


async def test_status_shows_the_demo_model_plainly(sqlite_url: URL) -> None:
    async with asgi_client(create_app(make_settings(sqlite_url, **BASE_SETTINGS), LLMConfig(_env_file=None))) as client:
        llm = (await client.get("/health/status")).json()["llm"]
    assert llm["provider"] == "demo" and llm["demo"] is True
    assert "demo model" in llm["note"]
