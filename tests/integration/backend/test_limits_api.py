"""Request limits over HTTP: the body cap (413, also for chunked bodies on a real server), the
rate limit (429 with Retry-After; per address, per key, shared through Redis), the cap on open
event streams (SSE 429, WebSocket 4429), security headers and CORS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import websockets
from fastapi import FastAPI
from mgx_agent.llm import LLMConfig

from backend.app.main import create_app
from backend.services.rate_limits import RateLimiter
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.integration.backend.events_support import create_queued_run, serve

TASK = {"title": "fizzbuzz", "description": "write fizzbuzz(n)"}
PROBLEM = "application/problem+json"


@pytest.fixture
def build_app(sqlite_template: Path, tmp_path: Path) -> Callable[..., FastAPI]:
    """``build_app(**settings)``: the app on one SQLite database (shared by every app of the test),
    without runner workers; ``serve`` runs its lifespan."""
    database = sqlite_copy(sqlite_template, tmp_path)

    def build(**overrides: object) -> FastAPI:
        settings = make_settings(database, runner_workers=0, mgx_sandbox="off", **overrides)
        return create_app(settings, LLMConfig(_env_file=None))

    return build


@pytest.fixture
async def start_app(build_app: Callable[..., FastAPI]) -> AsyncIterator[Callable[..., Awaitable[FastAPI]]]:
    """``await start_app(**settings)``: a built app with its lifespan running, for ASGI clients."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: object) -> FastAPI:
            app = build_app(**overrides)
            await stack.enter_async_context(app.router.lifespan_context(app))
            return app

        yield start


def http_client(app: FastAPI, address: str = "10.0.0.1") -> httpx.AsyncClient:
    """An ASGI client calling from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def task_count(http: httpx.AsyncClient) -> int:
    return (await http.get("/tasks/")).json()["total"]


def padded_task(size: int) -> bytes:
    """A valid task body of exactly ``size`` bytes (JSON padded with spaces)."""
    body = json.dumps(TASK).encode()
    return body + b" " * (size - len(body))


async def chunks(body: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["type"], body["status"]) == (f"urn:mgx:problem:{slug}", status)
    return body


class TestBodyLimit:
    async def test_a_declared_length_over_the_cap_is_413_and_nothing_is_stored(self, start_app) -> None:
        app = await start_app(max_body_bytes=1024)
        async with http_client(app) as http:
            json_type = {"Content-Type": "application/json"}
            response = await http.post("/tasks/", content=padded_task(1025), headers=json_type)
            body = assert_problem(response, 413, "payload-too-large")
            assert body["max_body_bytes"] == 1024 and "1024 bytes" in body["detail"]
            accepted = await http.post("/tasks/", content=padded_task(1024), headers=json_type)
            assert accepted.status_code == 201, accepted.text
            assert await task_count(http) == 1

    async def test_chunked_bodies_are_capped_on_a_real_server(self, build_app) -> None:
        async with serve(build_app(max_body_bytes=1024)) as live:
            requests: list[httpx.Request] = []

            async def record(request: httpx.Request) -> None:
                requests.append(request)

            async with httpx.AsyncClient(base_url=live.base_url, event_hooks={"request": [record]}) as http:
                headers = {"Content-Type": "application/json"}
                too_large = await http.post("/tasks/", content=chunks(padded_task(4096)), headers=headers)
                assert "content-length" not in requests[-1].headers
                assert requests[-1].headers["transfer-encoding"] == "chunked"
                assert_problem(too_large, 413, "payload-too-large")
                within = await http.post("/tasks/", content=chunks(padded_task(1000)), headers=headers)
                assert "content-length" not in requests[-1].headers
                assert within.status_code == 201, within.text  # the whole body reached the route
                assert within.json()["title"] == TASK["title"]
                declared = await http.post("/tasks/", content=padded_task(1 << 20), headers=headers)
                assert requests[-1].headers["content-length"] == str(1 << 20)
                assert_problem(declared, 413, "payload-too-large")
                assert await task_count(http) == 1


class TestRateLimit:
    async def test_an_empty_bucket_answers_429_with_retry_after(self, start_app) -> None:
        app = await start_app(rate_limit_per_minute=6, rate_limit_burst=2)
        async with http_client(app) as http:
            first, second = await http.get("/tasks/"), await http.post("/tasks/", json=TASK)
            assert (first.status_code, second.status_code) == (200, 201)
            assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("2", "1")
            assert second.headers["ratelimit-remaining"] == "0"
            refused = await http.post("/tasks/", json=TASK)
            body = assert_problem(refused, 429, "rate-limited")
            # 6 a minute is a token every 10 s; the bucket emptied a moment ago.
            assert refused.headers["retry-after"] == "10"
            assert body["retry_after"] == 10 and "retry in 10 s" in body["detail"]
            assert refused.headers["ratelimit-remaining"] == "0"
            assert int(refused.headers["ratelimit-reset"]) == 20
        async with http_client(app, "10.0.0.2") as other:
            assert await task_count(other) == 1  # the refused POST created nothing

    async def test_probes_metrics_and_docs_are_never_limited(self, start_app) -> None:
        app = await start_app(rate_limit_per_minute=1, rate_limit_burst=1)
        async with http_client(app) as http:
            assert (await http.get("/tasks/")).status_code == 200
            assert (await http.get("/tasks/")).status_code == 429
            for path in ["/", "/health/", "/health/live", "/metrics", "/openapi.json", "/docs", "/redoc"] * 3:
                response = await http.get(path)
                assert response.status_code == 200, (path, response.status_code)
                assert "ratelimit-limit" not in response.headers, path

    async def test_client_addresses_have_separate_buckets(self, start_app) -> None:
        app = await start_app(rate_limit_per_minute=1, rate_limit_burst=1)
        async with http_client(app, "10.0.0.1") as first, http_client(app, "10.0.0.2") as second:
            assert (await first.get("/tasks/")).status_code == 200
            assert (await first.get("/tasks/")).status_code == 429
            assert (await second.get("/tasks/")).status_code == 200

    async def test_api_keys_have_separate_buckets_from_one_address(self, start_app) -> None:
        app = await start_app(rate_limit_per_minute=1, rate_limit_burst=1, api_keys="alice:key-alice,bob:key-bob")
        async with http_client(app, "10.0.0.1") as http:
            alice = {"Authorization": "Bearer key-alice"}
            assert (await http.get("/tasks/", headers=alice)).status_code == 200
            assert (await http.get("/tasks/", headers=alice)).status_code == 429
            assert (await http.get("/tasks/", headers={"X-API-Key": "key-bob"})).status_code == 200

    async def test_refused_keys_are_counted_against_the_address(self, start_app) -> None:
        app = await start_app(rate_limit_per_minute=1, rate_limit_burst=2, api_keys="alice:key-alice")
        async with http_client(app, "10.0.0.7") as http:
            for _ in range(2):
                assert_problem(await http.get("/tasks/", headers={"X-API-Key": "guess"}), 401, "unauthorized")
            body = assert_problem(await http.get("/tasks/", headers={"X-API-Key": "guess-3"}), 429, "rate-limited")
            assert body["retry_after"] >= 1
            # The right key has its own bucket: guessing from an address does not lock its owner out.
            assert (await http.get("/tasks/", headers={"X-API-Key": "key-alice"})).status_code == 200

    async def test_the_bucket_refills(self, start_app) -> None:
        app = await start_app(rate_limit_per_minute=60, rate_limit_burst=1)
        now = [100.0]
        app.state.rate_limiter = RateLimiter(app.state.rate_limiter.policy, clock=lambda: now[0])
        async with http_client(app) as http:
            assert (await http.get("/tasks/")).status_code == 200
            now[0] += 0.25
            refused = await http.get("/tasks/")
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"  # 0.75 s, rounded up
            now[0] += 0.75
            assert (await http.get("/tasks/")).status_code == 200
            assert (await http.get("/tasks/")).status_code == 429

    async def test_processes_sharing_one_redis_share_the_bucket(self, start_app, redis_url: str) -> None:
        first_app = await start_app(rate_limit_per_minute=60, rate_limit_burst=2, redis_url=redis_url)
        second_app = await start_app(rate_limit_per_minute=60, rate_limit_burst=2, redis_url=redis_url)
        assert first_app.state.redis is not second_app.state.redis
        async with http_client(first_app) as first, http_client(second_app) as second:
            assert (await first.get("/tasks/")).status_code == 200
            assert (await second.get("/tasks/")).status_code == 200
            assert_problem(await first.get("/tasks/"), 429, "rate-limited")
            assert_problem(await second.get("/tasks/"), 429, "rate-limited")
        assert first_app.state.rate_limiter.store == "redis"

    async def test_zero_switches_the_limit_off(self, start_app) -> None:
        app = await start_app(rate_limit_per_minute=0, rate_limit_burst=1)
        async with http_client(app) as http:
            responses = [await http.get("/tasks/") for _ in range(20)]
        assert {response.status_code for response in responses} == {200}
        assert "ratelimit-limit" not in responses[-1].headers


async def open_sse(http: httpx.AsyncClient, run_id: str, stack: AsyncExitStack) -> httpx.Response:
    return await stack.enter_async_context(http.stream("GET", f"/runs/{run_id}/events", timeout=10))


async def wait_for_streams(app: FastAPI, count: int) -> None:
    deadline = time.monotonic() + 5
    while app.state.stream_slots.total != count:
        assert time.monotonic() < deadline, f"{app.state.stream_slots.total} streams open, expected {count}"
        await asyncio.sleep(0.01)


class TestStreamCap:
    async def test_sse_over_the_cap_is_429_and_a_closed_stream_frees_its_slot(self, build_app) -> None:
        app = build_app(max_streams_per_client=2)
        async with serve(app) as live:
            run = await create_queued_run(live.http)
            async with AsyncExitStack() as first_streams:
                for _ in range(2):
                    stream = await open_sse(live.http, run["id"], first_streams)
                    assert stream.status_code == 200
                    assert stream.headers["x-content-type-options"] == "nosniff"  # headers do not break SSE
                over = await live.http.get(f"/runs/{run['id']}/events")
                body = assert_problem(over, 429, "too-many-streams")
                assert "at most 2" in body["detail"]
                assert app.state.stream_slots.total == 2
            await wait_for_streams(app, 0)
            async with AsyncExitStack() as again:
                stream = await open_sse(live.http, run["id"], again)
                assert stream.status_code == 200
                assert (await stream.aiter_raw().__anext__()).startswith(b"retry: 1000")

    async def test_websocket_over_the_cap_is_closed_with_4429(self, build_app) -> None:
        app = build_app(max_streams_per_client=1)
        async with serve(app) as live:
            run = await create_queued_run(live.http)
            url = f"{live.ws_url}/ws/runs/{run['id']}"
            async with AsyncExitStack() as holding:
                await open_sse(live.http, run["id"], holding)
                async with websockets.connect(url) as socket:
                    with pytest.raises(websockets.ConnectionClosedError) as closed:
                        await socket.recv()
                assert closed.value.rcvd.code == 4429
                assert "too many open streams" in closed.value.rcvd.reason
            await wait_for_streams(app, 0)
            async with websockets.connect(url) as socket:
                await wait_for_streams(app, 1)  # the socket holds the slot now
                assert json.loads(await socket.recv())["type"] == "run.created"
            await wait_for_streams(app, 0)

    async def test_a_rate_limited_websocket_is_closed_with_4429(self, build_app) -> None:
        # Every connection comes from 127.0.0.1: one caller, one bucket.
        app = build_app(rate_limit_per_minute=1, rate_limit_burst=3)
        async with serve(app) as live:
            run = await create_queued_run(live.http)  # two tokens
            async with websockets.connect(f"{live.ws_url}/ws/runs/{run['id']}") as socket:
                assert json.loads(await socket.recv())["type"] == "run.created"  # the third
                async with websockets.connect(f"{live.ws_url}/ws/runs/{run['id']}") as refused:
                    with pytest.raises(websockets.ConnectionClosedError) as closed:
                        await refused.recv()
            assert closed.value.rcvd.code == 4429
            assert closed.value.rcvd.reason.startswith("rate limited: retry in ")


class TestHeaders:
    async def test_security_headers_on_api_problem_and_docs_responses(self, start_app) -> None:
        app = await start_app()
        async with http_client(app) as http:
            api, missing, docs = await http.get("/tasks/"), await http.get("/tasks/nope"), await http.get("/docs")
        for response in (api, missing, docs):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cross-origin-resource-policy"] == "same-origin"
        assert api.headers["content-security-policy"].startswith("default-src 'none'")
        assert "cache-control" not in api.headers
        assert missing.headers["content-type"] == PROBLEM and missing.headers["cache-control"] == "no-store"
        # The documentation page keeps the policy that lets it load its own scripts.
        assert "script-src 'self'" in docs.headers["content-security-policy"]
        assert docs.headers["content-security-policy"].count("default-src") == 1

    async def test_cors_preflight_from_an_allowed_and_a_disallowed_origin(self, start_app) -> None:
        app = await start_app(cors_origins=["http://console.local"], rate_limit_per_minute=1, rate_limit_burst=1)
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        async with http_client(app) as http:
            allowed = await http.options("/tasks/", headers={"Origin": "http://console.local", **preflight})
            other = await http.options("/tasks/", headers={"Origin": "http://evil.example", **preflight})
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "http://console.local"
            assert "POST" in allowed.headers["access-control-allow-methods"]
            assert other.status_code == 400
            assert "access-control-allow-origin" not in other.headers
            # A browser script can read why it was limited and when to retry.
            await http.get("/tasks/", headers={"Origin": "http://console.local"})
            refused = await http.get("/tasks/", headers={"Origin": "http://console.local"})
        assert refused.status_code == 429
        assert refused.headers["access-control-allow-origin"] == "http://console.local"
        exposed = {name.strip().lower() for name in refused.headers["access-control-expose-headers"].split(",")}
        assert {"retry-after", "x-request-id", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= exposed


async def test_openapi_declares_the_limits(start_app) -> None:
    app = await start_app()
    async with http_client(app) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert {"413", "429"} <= set(paths["/tasks/"]["post"]["responses"])
    assert "429" in paths["/tasks/{task_id}"]["get"]["responses"]
    assert "413" not in paths["/tasks/{task_id}"]["get"]["responses"]
    assert "Retry-After" in paths["/tasks/"]["get"]["responses"]["429"]["headers"]
    assert "429" in paths["/runs/{run_id}/events"]["get"]["responses"]
    assert not {"413", "429"} & set(paths["/health/live"]["get"]["responses"])
