"""Every dependency failure is a 503 problem with Retry-After and the real cause, never a 500
(outages of a live server: test_database_outage.py); readiness tells a database that cannot be
written from one that can, and does not queue behind busy requests."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from backend.app.main import create_app
from mgx_agent.llm import LLMConfig
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.services import postgres_url_for_tests, unavailable


async def test_misconfigured_postgres_is_said_at_start_up_and_answers_503_naming_the_cause(
    postgres_database, caplog: pytest.LogCaptureFixture
) -> None:
    if postgres_database is None:
        unavailable("PostgreSQL", postgres_url_for_tests())
    missing = postgres_database.url.set(database="mgx_no_such_database")
    unknown_role = postgres_database.url.set(username="mgx_no_such_role")
    unmigrated = postgres_database.url.set(database=f"mgx_unmigrated_{uuid.uuid4().hex[:8]}")
    server = await asyncpg.connect(postgres_database.url.set(drivername="postgresql").render_as_string(False))
    await server.execute(f'CREATE DATABASE "{unmigrated.database}"')
    cases = (
        (missing, "the database does not exist"),
        (unknown_role, "the database refused the login"),
        (unmigrated, "the schema is not migrated"),
    )
    try:
        await _answers_503_naming(cases, caplog)
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{unmigrated.database}" WITH (FORCE)')
        await server.close()


async def _answers_503_naming(cases, caplog) -> None:  # type: ignore[no-untyped-def]
    for url, cause in cases:
        caplog.clear()
        app = create_app(make_settings(url, mgx_sandbox="off", runner_workers=0), LLMConfig(_env_file=None))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                answer = await client.get("/tasks/")
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
        assert cause in answer.json()["detail"], answer.json()
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("database not usable: ")]
        assert len(said) == 1, [r.getMessage() for r in caplog.records]


def read_only(path: Path, on: bool) -> None:
    """Make a file read-only even for root (which writes through permission bits): the
    immutable attribute, as a read-only mount would; plain permissions for anyone else."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)
    else:
        path.chmod(stat.S_IRUSR if on else stat.S_IRUSR | stat.S_IWUSR)


async def test_a_sqlite_database_that_cannot_be_written_is_not_ready_and_writes_say_why(
    sqlite_template, tmp_path: Path
) -> None:
    url = sqlite_copy(sqlite_template, tmp_path)
    app = create_app(make_settings(url, mgx_sandbox="off", runner_workers=0), LLMConfig(_env_file=None))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get("/health/ready")).status_code == 200
            database = Path(url.database)
            read_only(database, True)
            try:
                # Connections opened from now on find the file read-only (as after a restart).
                await app.state.engine.dispose()
                await app.state.probe_engine.dispose()
                ready = await client.get("/health/ready")
                written = await client.post("/tasks/", json={"title": "read-only"})
            finally:
                read_only(database, False)
    assert ready.status_code == 503, ready.text
    assert "read-only" in ready.json()["checks"]["database"]["detail"], ready.json()
    assert written.status_code == 503, written.text
    assert "attempt to write a readonly database" in written.json()["detail"], written.json()


async def test_readiness_stays_ready_while_requests_queue_for_the_pool(database_url) -> None:
    """Hundreds of concurrent requests wait for a one-connection pool (1000 against the default
    pool in the issue, the same queue in small); the probe has its own connection."""
    app = create_app(
        make_settings(
            database_url, mgx_sandbox="off", runner_workers=0, rate_limit_per_minute=0, db_pool_size=1, db_max_overflow=0
        ),
        LLMConfig(_env_file=None),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
            load = [asyncio.create_task(client.get("/tasks/")) for _ in range(100)]
            await asyncio.sleep(0.05)  # the pool is taken and the requests queue for it
            probes = []
            for _ in range(3):
                probes.append(await client.get("/health/ready"))
            pending = sum(not request.done() for request in load)
            answers = await asyncio.gather(*load)
    assert pending > 0, "the probes ran after the load, not during it"
    assert [probe.status_code for probe in probes] == [200, 200, 200], [probe.text for probe in probes]
    assert {answer.status_code for answer in answers} == {200}
