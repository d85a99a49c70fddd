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
