"""The API latency benchmark's floor, ``bench/minimal_app.py``, must run the service's SQL: the
statements each of the three measured operations sends to PostgreSQL are recorded from both apps
on the same database and compared, and both apps must answer with the same task."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from backend.app.main import create_app
from bench import minimal_app as minimal_module
from bench.api_latency import service_overrides
from tests.conftest import make_settings
from tests.databases import PostgresTestDatabase
from tests.services import postgres_url_for_tests, unavailable

pytestmark = pytest.mark.postgres


def _normalised(statement: str) -> str:
    return re.sub(r"\s+", " ", statement).strip()


class StatementLog:
    """The SQL statements an app's engine sends, in order (pings and BEGIN/ROLLBACK excluded)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def record(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        """A ``before_cursor_execute`` listener."""
        self.statements.append(_normalised(statement))

    def take(self) -> list[str]:
        """Statements on the tasks table since the last call (the runner's queries are on runs)."""
        taken = [s for s in self.statements if re.search(r"\b(FROM|INTO|UPDATE) tasks\b", s)]
        self.statements.clear()
        return taken


@asynccontextmanager
async def recording(
    app: FastAPI, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, StatementLog]]:
    async with app.router.lifespan_context(app):
        log = StatementLog()
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", log.record)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
            yield client, log


def benchmarked_service(database: PostgresTestDatabase) -> tuple[FastAPI, dict[str, str]]:
    """The service configured as the benchmark runs it (API key, unthrottled) and its headers."""
    env, headers = service_overrides("bench-test-key")
    settings = make_settings(database.url, runner_workers=0, **{name.lower(): value for name, value in env.items()})
    return create_app(settings), headers


@pytest.fixture
def database(postgres_database: PostgresTestDatabase | None) -> PostgresTestDatabase:
    if postgres_database is None:
        unavailable("PostgreSQL", postgres_url_for_tests())
    assert postgres_database is not None
    postgres_database.truncate()
    return postgres_database


@pytest.fixture
def minimal_app(database: PostgresTestDatabase, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The minimal app, connecting (at start-up) to the test database."""
    monkeypatch.setenv("DATABASE_URL", database.url.render_as_string(hide_password=False))
    return minimal_module.app


BODY = {"title": "parse durations", "description": "ISO-8601", "config": {"max_rounds": 3}}


async def _operations(client: httpx.AsyncClient, log: StatementLog, task_id: str | None) -> dict[str, Any]:
    """Run the three measured operations (reading ``task_id``, else the task just created);
    returns their statements and the bodies they answered."""
    created = await client.post("/tasks/", json=BODY)
    assert created.status_code == 201, created.text
    create_sql = log.take()
    one = await client.get(f"/tasks/{task_id or created.json()['id']}")
    assert one.status_code == 200, one.text
    get_sql = log.take()
    page = await client.get("/tasks/", params={"limit": 50})
    assert page.status_code == 200, page.text
    list_sql = log.take()
    return {
        "sql": {"create": create_sql, "get": get_sql, "list": list_sql},
        "created": created.json(),
        "one": one.json(),
        "page": page.json(),
    }


async def test_minimal_app_sends_the_services_statements(
    database: PostgresTestDatabase, minimal_app: FastAPI
) -> None:
    service, headers = benchmarked_service(database)
    async with recording(service, headers) as (client, log):
        served = await _operations(client, log, None)
    async with recording(minimal_app) as (client, log):
        minimal = await _operations(client, log, None)

    assert served["sql"] == minimal["sql"]
    assert served["sql"] == {
        name: [_normalised(statement) for statement in statements]
        for name, statements in minimal_module.STATEMENTS.items()
    }


async def test_minimal_app_answers_with_the_services_task(
    database: PostgresTestDatabase, minimal_app: FastAPI
) -> None:
    service, headers = benchmarked_service(database)
    async with recording(service, headers) as (client, log):
        served = await _operations(client, log, None)
    async with recording(minimal_app) as (client, log):
        minimal = await _operations(client, log, served["created"]["id"])

    assert minimal["one"] == served["one"]
    assert minimal["page"]["total"] == 2
    assert minimal["page"]["items"][1] == served["one"]  # newest first: the minimal app's task, then the service's

    def fixed(task: dict[str, Any]) -> dict[str, Any]:
        # The minimal app has no API keys, so it records no owner.
        return {key: value for key, value in task.items() if key not in {"id", "owner", "created_at", "updated_at"}}

    assert fixed(minimal["created"]) == fixed(served["created"])
