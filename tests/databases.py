"""Throw-away databases for tests: a migrated SQLite template copied per test, and a PostgreSQL
database created per test session, migrated once and truncated before each test."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from backend.db.engine import create_engine
from backend.db.migrations import upgrade_to_head
from backend.db.models import Base

TABLES = ", ".join(table.name for table in reversed(Base.metadata.sorted_tables))


async def _migrate(url: URL) -> None:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


def build_sqlite_template(directory: Path) -> Path:
    template = directory / "template.db"
    asyncio.run(_migrate(URL.create("sqlite+aiosqlite", database=str(template))))
    return template


def sqlite_copy(template: Path, directory: Path) -> URL:
    target = directory / "test.db"
    shutil.copyfile(template, target)
    return URL.create("sqlite+aiosqlite", database=str(target))


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresTestDatabase:
    """One database per test session on the server named by ``server_url``."""

    def __init__(self, server_url: str) -> None:
        self.server_url = make_url(server_url).set(drivername="postgresql+asyncpg")
        self.name = f"mgx_test_{uuid.uuid4().hex[:12]}"
        self.url = self.server_url.set(database=self.name)

    def create(self) -> None:
        async def create() -> None:
            connection = await asyncpg.connect(_asyncpg_dsn(self.server_url), timeout=5)
            try:
                await connection.execute(f'CREATE DATABASE "{self.name}"')
            finally:
                await connection.close()
            await _migrate(self.url)

        asyncio.run(create())

    def truncate(self) -> None:
        async def truncate() -> None:
            connection = await asyncpg.connect(_asyncpg_dsn(self.url), timeout=5)
            try:
                await connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
            finally:
                await connection.close()

        asyncio.run(truncate())

    def drop(self) -> None:
        async def drop() -> None:
            connection = await asyncpg.connect(_asyncpg_dsn(self.server_url), timeout=5)
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await connection.close()

        asyncio.run(drop())
