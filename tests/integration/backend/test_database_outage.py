"""A PostgreSQL outage, for real: the app runs against a private cluster that the test stops and
starts again. Liveness stays 200 throughout (an outage must not get pods restarted), readiness
turns 503 naming the database, and comes back to 200 once the server is back, without a
restart of the app. Under load, every request of an outage (stop -m fast, stop -m immediate,
start) answers 503 with Retry-After and the cause, never 500, and the log says once that the
database went away and once that it is back, without a traceback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from backend.app.main import create_app
from backend.config import load_settings
from mgx_agent.llm import LLMConfig
from mgx_agent.testing.fake_llm import FakeLLMServer
from tests.integration.backend.conftest import fake_llm_config
from tests.private_postgres import PrivatePostgres, server_binaries
from tests.services import services_required

pytestmark = pytest.mark.slow

PROBE_BUDGET_SECONDS = 2.0
RECOVERY_TIMEOUT_SECONDS = 10.0


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running throw-away PostgreSQL cluster of this module's own (never the shared server);
    every test leaves it running."""
    binaries = server_binaries()
    if binaries is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
        if services_required():
            pytest.fail(f"{message} and MGX_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)
    cluster = PrivatePostgres(binaries)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


async def test_postgres_outage_keeps_live_and_fails_ready_until_the_server_returns(
    private_postgres: PrivatePostgres,
) -> None:
    settings = load_settings(
        _env_file=None,
        database_url=private_postgres.url,
        db_auto_migrate=True,
        mgx_sandbox="off",
        runner_workers=1,
        runner_poll_seconds=0.2,
    )
    app = create_app(settings, LLMConfig(_env_file=None))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=10) as client:
            assert (await client.get("/health/ready")).status_code == 200
            task = await client.post("/tasks/", json={"title": "outage", "description": "outlives the database"})
            assert task.status_code == 201, task.text

            await asyncio.to_thread(private_postgres.stop_immediately)
            for _ in range(3):  # repeatedly: the probes must not wear anything out
                started = time.monotonic()
                live = await client.get("/health/live")
                assert live.status_code == 200 and time.monotonic() - started < 0.5
                started = time.monotonic()
                ready = await client.get("/health/ready")
                took = time.monotonic() - started
                assert ready.status_code == 503, ready.text
                assert took < PROBE_BUDGET_SECONDS, f"readiness took {took:.2f}s with the database down"
                body = ready.json()
                assert body["detail"].startswith("not ready: database: "), body["detail"]
                assert body["checks"]["database"]["ok"] is False
                assert body["checks"]["runner"]["ok"] is True, "the runner keeps going through the outage"
            during = await client.get(f"/tasks/{task.json()['id']}")
            assert during.status_code == 503, during.text
            assert during.headers["content-type"].startswith("application/problem+json")
            assert during.headers["retry-after"] == "5"
            assert during.json()["detail"].startswith("the database is unavailable: "), during.json()["detail"]

            await asyncio.to_thread(private_postgres.start)
            deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
            while (ready := await client.get("/health/ready")).status_code != 200:
                assert time.monotonic() < deadline, f"still not ready after the database returned: {ready.text}"
                await asyncio.sleep(0.1)
            fetched = await client.get(f"/tasks/{task.json()['id']}")
            assert fetched.status_code == 200 and fetched.json()["title"] == "outage"
            status = (await client.get("/health/status")).json()
            assert status["status"] == "ok" and status["runner"]["queue_depth"] == 0


async def test_run_signals_listener_reconnects_after_a_restart(private_postgres: PrivatePostgres) -> None:
    """Cross-process wake-ups (LISTEN/NOTIFY) come back after the server restarts."""
    from sqlalchemy.engine import make_url

    from backend.services.run_signals import CHANNEL, RunSignals

    signals = RunSignals()
    await signals.listen(make_url(private_postgres.url))

    async def notify_and_wait(timeout: float) -> bool:
        signals.queued_event.clear()
        connection = await asyncpg.connect(private_postgres.url, timeout=5)
        try:
            await connection.execute(f"NOTIFY {CHANNEL}, 'queued'")
        finally:
            await connection.close()
        try:
            await asyncio.wait_for(signals.queued_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    try:
        assert await notify_and_wait(2), "a NOTIFY reaches the listener"
        await asyncio.to_thread(private_postgres.stop_immediately)
        await asyncio.to_thread(private_postgres.start)
        deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
        while not await notify_and_wait(0.3):
            assert time.monotonic() < deadline, "the listener did not reconnect after the restart"
    finally:
        await signals.close()


async def empty_tables(cluster: PrivatePostgres) -> None:
    connection = await asyncpg.connect(cluster.url, timeout=5)
    try:
        await connection.execute("TRUNCATE tasks, runs, run_events, artifacts CASCADE")
    finally:
        await connection.close()


async def until_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
    while (ready := await client.get("/health/ready")).status_code != 200:
        assert time.monotonic() < deadline, f"not ready after the database returned: {ready.text}"
        await asyncio.sleep(0.1)


async def test_postgres_stopping_and_starting_under_load_answers_503_never_500(
    private_postgres: PrivatePostgres,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(
        _env_file=None,
        database_url=private_postgres.url,
        db_auto_migrate=True,
        mgx_sandbox="off",
        runner_workers=1,
        runner_poll_seconds=0.2,
        runner_heartbeat_seconds=0.2,
        rate_limit_per_minute=0,
    )
    app = create_app(settings, LLMConfig(_env_file=None))
    answers: Counter[int] = Counter()
    refusals: list[httpx.Response] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=20) as client:
            task = (await client.post("/tasks/", json={"title": "outage"})).json()
            many = (await client.post("/tasks/", json={"title": "runs", "config": {"allow_concurrent_runs": True}})).json()
            stop = asyncio.Event()

            async def load(worker: int) -> None:
                while not stop.is_set():
                    for call in (
                        client.get("/tasks/"),
                        client.get(f"/tasks/{task['id']}"),
                        client.post("/tasks/", json={"title": f"w{worker}"}),
                        client.patch(f"/tasks/{task['id']}", json={"description": f"w{worker}"}),
                        client.get("/runs/"),
                        # On PostgreSQL a creation goes straight through asyncpg (run_creation).
                        client.post("/runs/", json={"task_id": many["id"]}),
                    ):
                        response = await call
                        answers[response.status_code] += 1
                        if response.status_code >= 500:
                            refusals.append(response)
                    await asyncio.sleep(0.01)

            caplog.set_level(logging.INFO)
            workers = [asyncio.create_task(load(n)) for n in range(4)]
            try:
                for mode in ("fast", "immediate"):
                    await asyncio.sleep(0.3)
                    await asyncio.to_thread(private_postgres.stop, mode)
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(private_postgres.start)
                    await until_ready(client)
                await asyncio.sleep(1.0)  # the runner's loops succeed again and say so
            finally:
                stop.set()
                await asyncio.gather(*workers)

    assert 500 not in answers, [r.text for r in refusals if r.status_code == 500][:3]
    assert answers[503] > 0 and answers[200] > 0, answers
    for refused in refusals:
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5", refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["detail"].startswith("the database is unavailable: "), refused.json()
    gone = [r for r in caplog.records if "database unavailable while" in r.getMessage()]
    back = [r for r in caplog.records if "database is back after" in r.getMessage()]
    assert 1 <= len(gone) <= 4 and len(back) >= 1, [r.getMessage() for r in gone + back]
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("backend")]
    assert tracebacks == [], [f"{r.name}: {r.getMessage()}" for r in tracebacks][:5]


async def test_a_run_cut_off_by_an_outage_is_not_failed_and_finishes_after_it(
    private_postgres: PrivatePostgres, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The database going away under a running run is not the run's fault: its execution stops
    without a traceback, its lease lapses, and once the server is back the run is claimed again
    and completes from its checkpoint."""
    settings = load_settings(
        _env_file=None,
        database_url=private_postgres.url,
        db_auto_migrate=True,
        mgx_sandbox="off",
        mgx_enable_caching=False,
        runner_workers=1,
        runner_poll_seconds=0.2,
        runner_heartbeat_seconds=0.5,
        runner_lease_seconds=2,
    )
    fake_llm.latency_seconds = 0.3  # a run takes long enough to be caught in the middle
    await empty_tables(private_postgres)  # no run queued by an earlier test ahead of this one
    app = create_app(settings, fake_llm_config(fake_llm))
    caplog.set_level(logging.INFO)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=20) as client:
            task = (await client.post("/tasks/", json={"title": "outage", "config": {"auto_approve_plan": True}})).json()
            run = (await client.post("/runs/", json={"task_id": task["id"]})).json()
            deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
            while (await client.get(f"/runs/{run['id']}")).json()["status"] != "running":
                assert time.monotonic() < deadline, "the run never started executing"
                await asyncio.sleep(0.05)

            await asyncio.to_thread(private_postgres.stop_immediately)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(private_postgres.start)
            await until_ready(client)

            deadline = time.monotonic() + 3 * RECOVERY_TIMEOUT_SECONDS
            while (final := (await client.get(f"/runs/{run['id']}")).json())["status"] not in {"completed", "failed"}:
                assert time.monotonic() < deadline, f"the run did not finish after the outage: {final['status']}"
                await asyncio.sleep(0.1)
            logs = (await client.get(f"/runs/{run['id']}/logs", params={"limit": 500})).json()["items"]

    assert final["status"] == "completed", final["error"]
    attempts = {item["data"].get("attempt") for item in logs if item["type"] == "run.status"}
    assert len(attempts - {None}) >= 2, "the run was claimed again after the outage"
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("backend")]
    assert tracebacks == [], [f"{r.name}: {r.getMessage()}" for r in tracebacks][:5]
