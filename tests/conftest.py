"""Fixtures shared by every test package: databases (SQLite and PostgreSQL), Redis, the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL

from backend.app.main import create_app
from backend.config import Settings, load_settings
from tests.databases import PostgresTestDatabase, build_sqlite_template, sqlite_copy
from tests.parallel import pytest_xdist_auto_num_workers, pytest_xdist_make_scheduler  # noqa: F401 (hooks)
from tests.services import postgres_url_for_tests, redis_url_for_tests, tcp_reachable, unavailable


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresTestDatabase | None]:
    """A throw-away PostgreSQL database for the session, or None when the server is unreachable."""
    server = postgres_url_for_tests()
    if not tcp_reachable(server, 5432):
        yield None
        return
    database = PostgresTestDatabase(server)
    database.create()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    sqlite_template: Path,
    tmp_path: Path,
) -> URL:
    """A migrated, empty database: every test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_copy(sqlite_template, tmp_path)
    database: PostgresTestDatabase | None = request.getfixturevalue("postgres_database")
    if database is None:
        unavailable("PostgreSQL", postgres_url_for_tests())
    database.truncate()
    return database.url


def make_settings(database_url: URL, **overrides: object) -> Settings:
    """Settings isolated from the developer's environment file."""
    values = {"database_url": database_url.render_as_string(hide_password=False), "db_auto_migrate": False}
    values.update(overrides)
    return load_settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url: URL) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app over ASGI, with the lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def redis_url() -> str:
    """URL of a reachable Redis database reserved for tests; flushed before each test."""
    import redis.asyncio as redis

    url = redis_url_for_tests()
    if not tcp_reachable(url, 6379):
        unavailable("Redis", url)
    connection = redis.Redis.from_url(url)
    try:
        await connection.flushdb()
    finally:
        await connection.aclose()
    return url
