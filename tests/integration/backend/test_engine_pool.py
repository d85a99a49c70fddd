"""The PostgreSQL pool's liveness check: a pooled connection whose server backend went away is
replaced at checkout, without a request failing and without a ping round trip."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from backend.db.engine import create_engine
from backend.db.repositories import journal, run_creation
from backend.db.repositories.runs import new_run_row
from backend.db.types import utcnow
from tests.databases import PostgresTestDatabase
from tests.services import postgres_url_for_tests, unavailable

pytestmark = pytest.mark.asyncio


@pytest.fixture
def postgres_url(postgres_database: PostgresTestDatabase | None) -> URL:
    """PostgreSQL's only: an SQLite file has no server to lose and its pool checks nothing."""
    if postgres_database is None:
        unavailable("PostgreSQL", postgres_url_for_tests())
    return postgres_database.url


async def backend_pid(engine) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_whose_backend_was_terminated_is_replaced_at_checkout(postgres_url: URL) -> None:
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    try:
        first = await backend_pid(engine)
        killer = await asyncpg.connect(postgres_url.set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await killer.close()
        await asyncio.sleep(0.2)  # the terminated backend's FIN reaches the pooled socket
        # The pool's only connection is dead: without the check this statement fails.
        second = await backend_pid(engine)
        assert second != first
    finally:
        await engine.dispose()


async def test_a_checkout_of_a_live_connection_sends_nothing_to_the_server(postgres_url: URL) -> None:
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    sent: list[str] = []
    try:
        async with engine.connect() as connection:  # the pool's one connection, opened now
            raw = await connection.get_raw_connection()
            raw.driver_connection.add_query_logger(lambda record: sent.append(record.query))
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        # The statement itself goes as a prepared statement (not logged) in the checkout's own
        # transaction; pool_pre_ping sent BEGIN, ";" and ROLLBACK before it on every checkout.
        assert sent == ["BEGIN;", "ROLLBACK;"]
    finally:
        await engine.dispose()


async def test_the_hot_statements_prepare_without_reading_the_catalogue(postgres_url: URL) -> None:
    """The journal's write and a run's creation prepare on a new connection in one round trip:
    an array parameter of a type asyncpg does not know of itself (uuid[], jsonb[], ...) had it
    introspect the catalogue first, on every new connection of the pool."""
    connection = await asyncpg.connect(postgres_url.set(drivername="postgresql").render_as_string(hide_password=False))
    sent: list[str] = []
    connection.add_query_logger(lambda record: sent.append(record.query))
    try:
        await connection.prepare(journal._BATCH_SQL)
        await connection.prepare(run_creation._CREATE_SQL)
    finally:
        await connection.close()
    assert sent == []


@pytest.mark.parametrize("failure", ["cancelled waiting for the lock", "refused by the database"])
async def test_a_creation_that_fails_half_way_leaves_no_transaction_open(postgres_url: URL, failure: str) -> None:
    """A run's creation on PostgreSQL opens its transaction by hand (run_creation). Cancelled
    while it waits for the task's lock (a client of the MCP tool gave up), or refused by the
    database after BEGIN, it must leave neither a transaction nor the lock behind on the
    connection the pool gets back: the pool's only connection serves the next creation."""
    dsn = postgres_url.set(drivername="postgresql").render_as_string(hide_password=False)
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    holder = await asyncpg.connect(dsn)
    try:
        task_id = await holder.fetchval(
            "INSERT INTO tasks (id, title, description, config, status, total_runs, successful_runs, failed_runs,"
            " version, created_at, updated_at)"
            " VALUES (gen_random_uuid(), 'locked', '', '{}', 'pending', 0, 0, 0, 1, now(), now()) RETURNING id"
        )

        async def create(label: str | None = None) -> run_creation.Creation:
            now = utcnow()
            row = new_run_row(
                task_id=task_id, number=0, status="queued", pending_action="plan", next_event_seq=2,
                created_at=now, queued_at=now, updated_at=now, label=label,
            )
            async with engine.connect() as connection:
                return await run_creation.create_run_postgresql(
                    connection, row, restricted_to=None, active_statuses=["queued"], overrides={}, channel="mgx_runs"
                )

        if failure == "cancelled waiting for the lock":
            lock = holder.transaction()
            await lock.start()
            await holder.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", task_id)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(create(), 0.3)
            await lock.rollback()
        else:
            with pytest.raises(asyncpg.StringDataRightTruncationError):
                await create(label="x" * 201)  # the column holds 200; the API's schema says so first

        created = await asyncio.wait_for(create(), 5)
        assert created.found and created.number == 1
        states = await holder.fetch(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert not {row["state"] for row in states} & {"idle in transaction", "idle in transaction (aborted)"}
    finally:
        await holder.close()
        await engine.dispose()
