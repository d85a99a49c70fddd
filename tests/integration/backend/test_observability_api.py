"""Request ids, access log lines and ``GET /metrics`` over HTTP, with real databases; the run
metrics move when runs execute (fake LLM server)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mgx_agent.testing.fake_llm import FakeLLMServer
from sqlalchemy.engine import URL

from backend.app.main import create_app
from backend.observability.logs import REQUEST_ID, ContextFilter
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.integration.backend.conftest import fake_llm_config, start_run, wait_for_status
from tests.integration.backend.events_support import create_queued_run, serve
from tests.observability_support import Samples, delta, parse_metrics, value

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
async def http(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app on SQLite (these behaviours do not depend on the database), with a route that fails."""
    app = create_app(make_settings(sqlite_copy(sqlite_template, tmp_path), runner_workers=0))

    async def fail() -> None:
        raise RuntimeError("an unexpected failure")

    app.add_api_route("/test-failure", fail, methods=["GET"])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return parse_metrics(response.text)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog with the service's context filter, as the service's own handler has it."""
    context = ContextFilter()
    caplog.handler.addFilter(context)
    caplog.set_level(logging.INFO)
    yield caplog
    caplog.handler.removeFilter(context)


# Request ids


async def test_a_sane_client_request_id_is_returned(http: httpx.AsyncClient) -> None:
    response = await http.get("/tasks/", headers={"X-Request-ID": "client-42.a:b/c"})
    assert response.headers["X-Request-ID"] == "client-42.a:b/c"


@pytest.mark.parametrize("sent", [None, "", "x" * 129, "two words", "line\u2028break", "<script>"])
async def test_a_missing_or_unsafe_request_id_is_replaced(http: httpx.AsyncClient, sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent.encode()}
    first = await http.get("/tasks/", headers=headers)
    second = await http.get("/tasks/", headers=headers)
    assert GENERATED_ID.fullmatch(first.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/no-such-route", {}, 404),
        ("GET", f"/tasks/{uuid.UUID(int=1)}", {}, 404),
        ("POST", "/tasks/", {"content": "x", "headers": {"Content-Type": "text/plain"}}, 415),
        ("POST", "/tasks/", {"json": {"title": ""}}, 422),
        ("GET", "/test-failure", {}, 500),
    ],
)
async def test_error_responses_carry_the_request_id(
    http: httpx.AsyncClient, method: str, path: str, kwargs: dict, status: int
) -> None:
    headers = {**kwargs.pop("headers", {}), "X-Request-ID": f"req-{status}"}
    response = await http.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["X-Request-ID"] == f"req-{status}"


async def test_refusals_at_the_edge_carry_the_request_id(sqlite_template: Path, tmp_path: Path) -> None:
    settings = make_settings(
        sqlite_copy(sqlite_template, tmp_path),
        runner_workers=0,
        api_keys="ci:edge-test-key-0123456789",
        max_body_bytes=1024,
        rate_limit_burst=2,
        rate_limit_per_minute=1,
    )
    app = create_app(settings)
    auth = {"Authorization": "Bearer edge-test-key-0123456789"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            refused = {
                401: await client.get("/tasks/", headers={"X-Request-ID": "edge-401"}),
                413: await client.post(
                    "/tasks/", headers={**auth, "X-Request-ID": "edge-413"}, json={"title": "x" * 2000}
                ),
            }
            for _ in range(5):
                response = await client.get("/tasks/", headers={**auth, "X-Request-ID": "edge-429"})
                if response.status_code == 429:
                    refused[429] = response
                    break
    assert set(refused) == {401, 413, 429}
    for status, response in refused.items():
        assert response.status_code == status
        assert response.headers["X-Request-ID"] == f"edge-{status}"


# Log lines


async def test_every_line_logged_for_a_request_carries_its_id(
    http: httpx.AsyncClient, captured: pytest.LogCaptureFixture
) -> None:
    response = await http.get("/test-failure", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 500

    error = next(record for record in captured.records if record.name == "backend.errors")
    assert error.request_id == "trace-me" and error.exc_info is not None
    (access,) = [record for record in captured.records if record.name == "backend.access"]
    assert access.request_id == "trace-me"
    assert (access.method, access.route, access.status) == ("GET", "/test-failure", 500)
    assert REQUEST_ID.get() is None, "the request's id must not outlive the request"


async def test_one_access_line_per_request_without_the_query_string(
    http: httpx.AsyncClient, captured: pytest.LogCaptureFixture
) -> None:
    task_id = uuid.UUID(int=7)
    await http.get(f"/tasks/{task_id}", params={"access_token": "query-secret"})
    await http.get("/tasks/", params={"q": "query-secret"})

    lines = [record for record in captured.records if record.name == "backend.access"]
    assert [record.getMessage().rsplit(" ", 1)[0] for record in lines] == [
        f"GET /tasks/{task_id} 404",
        "GET /tasks/ 200",
    ]
    assert [record.route for record in lines] == ["/tasks/{task_id}", "/tasks/"]
    assert all(record.duration_ms >= 0 for record in lines)
    assert not any("query-secret" in f"{record.getMessage()} {record.path}" for record in lines)


async def test_control_characters_in_a_path_cannot_forge_a_log_line(
    http: httpx.AsyncClient, captured: pytest.LogCaptureFixture
) -> None:
    await http.get("/tasks/x%0A2025-01-01 INFO backend forged")
    (access,) = [record for record in captured.records if record.name == "backend.access"]
    assert "\n" not in access.getMessage()
    assert "x\\x0a2025-01-01" in access.getMessage()


# Metrics


async def test_request_counters_move_by_route_template_and_status(http: httpx.AsyncClient) -> None:
    before = await scrape(http)
    for _ in range(3):
        await http.get(f"/tasks/{uuid.uuid4()}")
    await http.get("/no-such-route")
    await http.get("/tasks/")
    after = await scrape(http)

    assert delta(before, after, "mgx_http_requests_total", route="/tasks/{task_id}", status="404", method="GET") == 3
    assert delta(before, after, "mgx_http_requests_total", route="<unmatched>", status="404") == 1
    assert delta(before, after, "mgx_http_requests_total", route="/tasks/", status="200") == 1
    assert delta(before, after, "mgx_http_request_duration_seconds_count", route="/tasks/{task_id}") == 3
    # The first scrape is counted once it has answered, so the second one sees it.
    assert delta(before, after, "mgx_http_requests_total", route="/metrics", status="200") == 1


async def test_metrics_speak_prometheus_text_and_openmetrics_on_request(http: httpx.AsyncClient) -> None:
    plain = await http.get("/metrics")
    assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE mgx_http_requests_total counter" in plain.text
    assert "_created" not in plain.text

    openmetrics = await http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert openmetrics.text.endswith("# EOF\n")


async def test_database_gauges_are_read_at_scrape_time(http: httpx.AsyncClient) -> None:
    task = (await http.post("/tasks/", json={"title": "t", "description": "d"})).json()
    for _ in range(2):
        assert (await http.post("/runs/", json={"task_id": task["id"]})).status_code in (201, 409)
    samples = await scrape(http)
    assert value(samples, "mgx_database_up") == 1
    assert value(samples, "mgx_runs", status="queued") == 1  # the second run was refused: one active run
    assert value(samples, "mgx_runs", status="completed") == 0
    assert value(samples, "mgx_runner_queue_depth") == 1
    assert value(samples, "mgx_runner_running_runs") == 0
    assert value(samples, "mgx_runner_oldest_queued_age_seconds") >= 0


async def test_run_metrics_count_what_the_run_did(run_app, database_url: URL) -> None:  # type: ignore[no-untyped-def]
    client = await run_app(runner_workers=1)
    before = await scrape(client)
    _, run = await start_run(client, {"auto_approve_plan": True, "max_revision_rounds": 0})
    finished = await wait_for_status(client, run["id"], {"completed", "failed"}, timeout=30)
    after = await scrape(client)

    status = finished["status"]
    usage = finished["usage"]["total"]
    assert delta(before, after, "mgx_run_duration_seconds_count", status=status) == 1
    assert value(after, "mgx_runs", status=status) == 1
    assert value(after, "mgx_runner_queue_depth") == 0
    for phase in ("planning", "coding", "testing", "reviewing"):
        assert delta(before, after, "mgx_run_phase_duration_seconds_count", phase=phase) >= 1, phase
    # Every LLM call the run made is counted exactly once, with its model and role.
    assert delta(before, after, "mgx_llm_calls_total") == usage["llm_calls"] > 0
    assert delta(before, after, "mgx_llm_calls_total", model="gpt-4o-mini", role="alex") >= 1
    assert delta(before, after, "mgx_llm_tokens_total", kind="prompt") == usage["prompt_tokens"]
    assert delta(before, after, "mgx_llm_tokens_total", kind="completion") == usage["completion_tokens"]
    assert delta(before, after, "mgx_llm_cost_usd_total") == pytest.approx(usage["cost_usd"], abs=1e-7)
    assert delta(before, after, "mgx_llm_cost_usd_total") > 0


# The database plays no part in these two: SQLite only.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
async def test_cache_hits_and_misses_are_counted(run_app) -> None:  # type: ignore[no-untyped-def]
    client = await run_app(runner_workers=1, mgx_enable_caching=True, mgx_cache_backend="memory")
    before = await scrape(client)
    config = {"auto_approve_plan": True, "max_revision_rounds": 0}
    task, first = await start_run(client, config)
    first = await wait_for_status(client, first["id"], {"completed", "failed"}, timeout=30)
    second = (await client.post("/runs/", json={"task_id": task["id"]})).json()
    second = await wait_for_status(client, second["id"], {"completed", "failed"}, timeout=30)
    after = await scrape(client)

    usages = [run["usage"]["total"] for run in (first, second)]
    assert usages[1]["cache_hits"] > 0, "the second run of the same task is answered from the cache"
    assert delta(before, after, "mgx_llm_cache_lookups_total", result="hit") == sum(u["cache_hits"] for u in usages)
    assert delta(before, after, "mgx_llm_cache_lookups_total", result="miss") == sum(u["cache_misses"] for u in usages)
    assert delta(before, after, "mgx_llm_calls_total") == sum(u["llm_calls"] for u in usages)


@SQLITE_ONLY
async def test_live_subscribers_gauge_follows_open_streams(database_url: URL, fake_llm: FakeLLMServer) -> None:
    settings = make_settings(database_url, runner_workers=0, events_keepalive_seconds=0.2)
    app = create_app(settings, fake_llm_config(fake_llm))
    async with serve(app) as live:
        run = await create_queued_run(live.http)
        baseline = value(await scrape(live.http), "mgx_event_subscribers")
        async with live.http.stream("GET", f"/runs/{run['id']}/events") as stream:
            assert stream.status_code == 200
            assert value(await scrape(live.http), "mgx_event_subscribers") == baseline + 1
        deadline = time.monotonic() + 5
        while value(await scrape(live.http), "mgx_event_subscribers") != baseline:
            assert time.monotonic() < deadline, "the closed stream was still counted"
            await asyncio.sleep(0.05)
