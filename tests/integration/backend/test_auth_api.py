"""Authentication with API_KEYS and per-key isolation: every protected operation of
``/openapi.json`` refuses callers without a valid key, keys see only what they created (on SQLite
and PostgreSQL), WebSockets and SSE authenticate too, and the service refuses to run open on a
network address."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from mgx_agent.testing.fake_llm import FakeLLMServer
from sqlalchemy.engine import URL

from backend.app.main import create_app
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.integration.backend.conftest import fake_llm_config

PROJECT_ROOT = Path(__file__).resolve().parents[3]
ALICE_KEY, BOB_KEY, OPS_KEY = "alice-key-5f2c9d", "bob-key-81ae07", "ops-key-c0ffee"
API_KEYS = f"alice:{ALICE_KEY},bob:{BOB_KEY},ops:{OPS_KEY}:admin"
ALICE, BOB, OPS = ({"Authorization": f"Bearer {ALICE_KEY}"}, {"X-API-Key": BOB_KEY}, {"X-API-Key": OPS_KEY})
CHALLENGE = 'Bearer realm="mgx-agent-api"'
WRONG_CREDENTIALS = (
    {"Authorization": "Bearer not-a-key"},
    {"X-API-Key": ALICE_KEY[:-1]},
    {"Authorization": f"Basic {ALICE_KEY}"},
)


def is_public(path: str) -> bool:
    return path == "/" or path.startswith("/health/")


def assert_unauthorized(response: httpx.Response, what: str) -> None:
    assert response.status_code == 401, f"{what}: {response.status_code} {response.text[:200]}"
    assert response.headers["content-type"].startswith("application/problem+json"), what
    assert response.headers["www-authenticate"] == CHALLENGE, what
    assert response.json()["type"] == "urn:mgx:problem:unauthorized", what


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def keyed(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app with three keys (alice, bob, admin ops) on SQLite, nothing executing runs."""
    settings = make_settings(sqlite_copy(sqlite_template, tmp_path), api_keys=API_KEYS, runner_workers=0)
    async with running(create_app(settings)) as http:
        yield http


@pytest.fixture
def request_log() -> Iterator[list[str]]:
    """Every line uvicorn logs (access log and WebSocket handshakes), as written."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error", "backend")]
    for logger in loggers:
        logger.addHandler(handler)
    yield lines
    for logger in loggers:
        logger.removeHandler(handler)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app under uvicorn on a loopback port, access log on; yields its base URL."""
    # log_config=None: uvicorn keeps the handlers already attached (request_log's) instead of replacing them.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info", log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn stopped during start-up"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def concrete(path: str) -> str:
    """An OpenAPI path template with every parameter filled in."""
    return re.sub(r"\{name(:path)?\}", "plan.json", re.sub(r"\{\w+_id\}", str(uuid.uuid4()), path))


async def create_task_and_run(
    http: httpx.AsyncClient, headers: dict[str, str], title: str
) -> tuple[dict, dict]:
    task = await http.post("/tasks/", json={"title": title}, headers=headers)
    assert task.status_code == 201, task.text
    run = await http.post("/runs/", json={"task_id": task.json()["id"]}, headers=headers)
    assert run.status_code == 201, run.text
    return task.json(), run.json()


# Every route


async def test_every_protected_operation_refuses_missing_and_wrong_keys(keyed: httpx.AsyncClient) -> None:
    schema = (await keyed.get("/openapi.json")).json()
    public = protected = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            what = f"{method.upper()} {path}"
            body = {"json": {}} if "requestBody" in operation else {}
            if is_public(path):
                public += 1
                assert "security" not in operation, what
                response = await keyed.request(method, concrete(path), **body)
                assert response.status_code != 401, what
                continue
            protected += 1
            assert {"BearerAuth": []} in operation["security"], what
            assert {"ApiKeyAuth": []} in operation["security"], what
            assert "401" in operation["responses"], what
            assert_unauthorized(await keyed.request(method, concrete(path), **body), f"{what} without a key")
            for wrong in WRONG_CREDENTIALS:
                response = await keyed.request(method, concrete(path), headers=wrong, **body)
                assert_unauthorized(response, f"{what} with {wrong}")
            response = await keyed.request(method, concrete(path), headers=OPS, **body)
            assert response.status_code != 401, f"{what} with the admin key"
    assert public >= 5  # /, /health/, live, ready, status
    assert protected >= 17  # tasks, runs, artifacts, logs, events (and whatever was added since)


async def test_openapi_declares_the_schemes_for_swagger_ui(keyed: httpx.AsyncClient) -> None:
    schema = (await keyed.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {**schemes["BearerAuth"], "type": "http", "scheme": "bearer"}
    api_key, query = schemes["ApiKeyAuth"], schemes["AccessTokenQuery"]
    assert (api_key["type"], api_key["in"], api_key["name"]) == ("apiKey", "header", "X-API-Key")
    assert (query["type"], query["in"], query["name"]) == ("apiKey", "query", "access_token")
    query_operations = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if {"AccessTokenQuery": []} in operation.get("security", [])
    }
    assert query_operations == {("/runs/{run_id}/events", "get")}


async def test_documentation_needs_no_key(keyed: httpx.AsyncClient) -> None:
    assets = ("/static/docs/swagger-ui-bundle.js", "/static/docs/redoc.standalone.js")
    for page in ("/docs", "/redoc", "/openapi.json", *assets):
        assert (await keyed.get(page)).status_code == 200, page


async def test_bearer_and_x_api_key_both_authenticate(keyed: httpx.AsyncClient) -> None:
    for headers in (
        {"Authorization": f"Bearer {ALICE_KEY}"},
        {"authorization": f"bearer {ALICE_KEY}"},
        {"X-API-Key": ALICE_KEY},
    ):
        assert (await keyed.get("/tasks/", headers=headers)).status_code == 200, headers
    # The query parameter is for event streams only.
    response = await keyed.get("/tasks/", params={"access_token": ALICE_KEY})
    assert_unauthorized(response, "GET /tasks/?access_token")


async def test_keys_are_checked_before_routing(keyed: httpx.AsyncClient) -> None:
    # Without a key, a path that does not exist is not told apart from one that does.
    assert_unauthorized(await keyed.get("/no-such-resource"), "GET /no-such-resource")
    assert (await keyed.get("/no-such-resource", headers=ALICE)).status_code == 404
    # Nor is the body of a refused request read: a malformed one answers 401, not 422.
    malformed = await keyed.post("/tasks/", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_unauthorized(malformed, "POST /tasks/ with a malformed body")
    assert (await keyed.get("/tasks/", headers=OPS)).json()["total"] == 0
    # The probes stay open, with or without their trailing slash.
    assert (await keyed.get("/health", follow_redirects=True)).status_code == 200


async def test_no_key_appears_in_answers_or_logs(keyed: httpx.AsyncClient, request_log: list[str]) -> None:
    answers = [
        await keyed.get("/tasks/", headers={"X-API-Key": "wrong-" + ALICE_KEY}),
        await keyed.get("/tasks/", headers=ALICE),
        await keyed.get("/health/status"),
    ]
    status = answers[-1].json()
    assert status["auth"] == {"mode": "api_keys", "keys": 3, "admin_keys": 1}
    text = "\n".join([*(f"{answer.headers}\n{answer.text}" for answer in answers), *request_log])
    for key in (ALICE_KEY, BOB_KEY, OPS_KEY):
        assert key not in text


# Isolation between keys (SQLite and PostgreSQL)


async def test_another_keys_task_and_run_answer_404(run_app) -> None:  # type: ignore[no-untyped-def]
    http = await run_app(api_keys=API_KEYS, runner_workers=0)
    task, run = await create_task_and_run(http, ALICE, "alice's")
    assert (task["owner"], run["owner"]) == ("alice", "alice")
    task_url, run_url = f"/tasks/{task['id']}", f"/runs/{run['id']}"
    attempts = [
        ("GET", task_url, None),
        ("PATCH", task_url, {"title": "mine now"}),
        ("DELETE", task_url, None),
        ("POST", "/runs/", {"task_id": task["id"]}),
        ("GET", run_url, None),
        ("PATCH", run_url, {"label": "mine now"}),
        ("DELETE", run_url, None),
        ("POST", f"{run_url}/approve", {}),
        ("POST", f"{run_url}/reject", {"feedback": "no", "replan": False}),
        ("POST", f"{run_url}/cancel", None),
        ("GET", f"{run_url}/artifacts", None),
        ("GET", f"{run_url}/artifacts/plan.json", None),
        ("GET", f"{run_url}/logs", None),
        ("GET", f"{run_url}/events", None),
    ]
    for method, url, body in attempts:
        response = await http.request(method, url, json=body, headers=BOB)
        assert response.status_code == 404, f"{method} {url}: {response.status_code} {response.text[:200]}"
        assert response.headers["content-type"].startswith("application/problem+json")
    # Nothing changed, and the owner still acts on them.
    assert (await http.get(task_url, headers=ALICE)).json()["title"] == "alice's"
    assert (await http.get(run_url, headers=ALICE)).json()["status"] == "queued"
    assert (await http.post(f"{run_url}/cancel", headers=ALICE)).json()["status"] == "cancelled"


async def test_lists_hold_only_the_callers_items_and_admin_sees_all(run_app) -> None:  # type: ignore[no-untyped-def]
    http = await run_app(api_keys=API_KEYS, runner_workers=0)
    alice_task, alice_run = await create_task_and_run(http, ALICE, "alice's")
    bob_task, bob_run = await create_task_and_run(http, BOB, "bob's")

    async def ids(url: str, headers: dict[str, str], **params: str) -> tuple[set[str], int]:
        page = (await http.get(url, headers=headers, params=params)).json()
        return {item["id"] for item in page["items"]}, page["total"]

    assert await ids("/tasks/", ALICE) == ({alice_task["id"]}, 1)
    assert await ids("/tasks/", BOB, q="alice") == (set(), 0)
    assert await ids("/runs/", BOB) == ({bob_run["id"]}, 1)
    assert await ids("/runs/", BOB, task_id=alice_task["id"]) == (set(), 0)
    assert await ids("/tasks/", OPS) == ({alice_task["id"], bob_task["id"]}, 2)
    assert await ids("/runs/", OPS) == ({alice_run["id"], bob_run["id"]}, 2)
    # The admin acts on anyone's: what it creates is its own.
    renamed = await http.patch(f"/tasks/{bob_task['id']}", json={"title": "renamed"}, headers=OPS)
    assert renamed.status_code == 200
    assert (await http.post(f"/runs/{alice_run['id']}/cancel", headers=OPS)).json()["status"] == "cancelled"
    admin_run = await http.post("/runs/", json={"task_id": alice_task["id"]}, headers=OPS)
    assert admin_run.status_code == 201 and admin_run.json()["owner"] == "ops"
    assert admin_run.json()["id"] not in (await ids("/runs/", ALICE))[0]


async def test_idempotency_keys_are_per_api_key(run_app) -> None:  # type: ignore[no-untyped-def]
    http = await run_app(api_keys=API_KEYS, runner_workers=0)
    body = {"title": "same body", "description": "twice"}
    first = await http.post("/tasks/", json=body, headers={**ALICE, "Idempotency-Key": "shared-1"})
    second = await http.post("/tasks/", json=body, headers={**BOB, "Idempotency-Key": "shared-1"})
    replay = await http.post("/tasks/", json=body, headers={**BOB, "Idempotency-Key": "shared-1"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert (second.json()["owner"], replay.json()["id"], replay.headers["idempotent-replayed"]) == (
        "bob",
        second.json()["id"],
        "true",
    )
    runs = [
        await http.post("/runs/", json={"task_id": task["id"]}, headers={**headers, "Idempotency-Key": "run-1"})
        for task, headers in ((first.json(), ALICE), (second.json(), BOB))
    ]
    assert [run.status_code for run in runs] == [201, 201]
    assert runs[0].json()["id"] != runs[1].json()["id"]


# Event streams over a real socket


async def test_websockets_authenticate_and_stay_isolated(
    sqlite_template: Path, tmp_path: Path, fake_llm: FakeLLMServer, request_log: list[str]
) -> None:
    settings = make_settings(sqlite_copy(sqlite_template, tmp_path), api_keys=API_KEYS, runner_workers=0)
    app = create_app(settings, fake_llm_config(fake_llm))
    async with served(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        task, run = await create_task_and_run(http, ALICE, "streamed")
        ws = base_url.replace("http://", "ws://")
        refused = [
            (f"/ws/runs/{run['id']}", {}, 4401),
            (f"/ws/runs/{run['id']}?access_token=wrong", {}, 4401),
            (f"/ws/tasks/{task['id']}", {"X-API-Key": "wrong"}, 4401),
            (f"/ws/runs/{run['id']}", BOB, 4404),
            (f"/ws/tasks/{task['id']}?access_token={BOB_KEY}", {}, 4404),
        ]
        for path, headers, code in refused:
            async with websockets.connect(ws + path, additional_headers=headers) as socket:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(socket.recv(), 5)
                assert closed.value.rcvd.code == code, path
        accepted = [(f"/ws/runs/{run['id']}?after=0&access_token={ALICE_KEY}", {}), (f"/ws/runs/{run['id']}", OPS)]
        for path, headers in accepted:
            async with websockets.connect(ws + path, additional_headers=headers) as socket:
                first = json.loads(await asyncio.wait_for(socket.recv(), 5))
                assert (first["run_id"], first["type"]) == (run["id"], "run.created")
        # SSE from a browser's EventSource: the key in the query string.
        events_url = f"/runs/{run['id']}/events"
        async with http.stream("GET", events_url, params={"access_token": ALICE_KEY}) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    assert json.loads(line[5:])["type"] == "run.created"
                    break
        forbidden = await http.get(events_url, params={"access_token": BOB_KEY})
        assert forbidden.status_code == 404
    logged = "\n".join(request_log)
    assert "access_token=[redacted]" in logged  # the access log and the handshake lines were written
    for key in (ALICE_KEY, BOB_KEY, OPS_KEY):
        assert key not in logged


# Open mode


async def test_open_mode_runs_unfiltered_and_says_so(
    sqlite_template: Path, tmp_path: Path, request_log: list[str]
) -> None:
    database = sqlite_copy(sqlite_template, tmp_path)
    settings = make_settings(database, api_host="0.0.0.0", allow_open_access=True, runner_workers=0)
    async with running(create_app(settings)) as http:
        task = await http.post("/tasks/", json={"title": "anyone's"})
        assert task.status_code == 201 and task.json()["owner"] is None
        read = await http.get(f"/tasks/{task.json()['id']}", headers={"X-API-Key": "ignored"})
        assert read.status_code == 200
        status = (await http.get("/health/status")).json()
    assert status["auth"] == {"mode": "open"}
    assert any("API_KEYS is not set" in line and "0.0.0.0" in line for line in request_log)


def test_open_mode_on_a_network_address_refuses_to_start(tmp_path: Path) -> None:
    unset = ("API_", "ALLOW_", "DB_", "DATABASE")
    env = {key: value for key, value in os.environ.items() if not key.startswith(unset)}
    env.update(PYTHONPATH=str(PROJECT_ROOT), SQLITE_PATH=str(tmp_path / "mgx.db"), API_HOST="0.0.0.0")
    result = subprocess.run(
        [sys.executable, "-m", "backend.app.main"], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    output = result.stderr.decode().strip()
    assert result.returncode == 2, output
    assert output.splitlines() == [output]
    assert "API_KEYS" in output and "ALLOW_OPEN_ACCESS" in output and "Traceback" not in output
