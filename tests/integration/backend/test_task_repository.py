"""SQL for tasks below the API: a new row carries the table's defaults, and timestamps read on
PostgreSQL are aware UTC datetimes whatever the session's time zone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from backend.db.engine import Database, create_session_factory
from backend.db.models import Task
from backend.db.repositories.tasks import TaskRepository, new_task_row
from tests.databases import PostgresTestDatabase
from tests.services import postgres_url_for_tests, unavailable


def test_a_new_row_has_every_column_with_the_tables_defaults() -> None:
    now = datetime.now(UTC)
    first = new_task_row(title="Parse durations", created_at=now, updated_at=now)
    second = new_task_row(title="Slugify", config={"max_rounds": 2}, owner="alice", created_at=now, updated_at=now)
    assert list(first) == [column.key for column in Task.__table__.columns]
    assert isinstance(first["id"], uuid.UUID) and first["id"] != second["id"]
    assert (first["description"], first["config"], first["status"], first["owner"]) == ("", {}, "pending", None)
    assert (first["total_runs"], first["successful_runs"], first["failed_runs"], first["version"]) == (0, 0, 0, 1)
    assert (first["last_run_id"], first["last_run_status"], first["last_run_at"]) == (None, None, None)
    assert (second["config"], second["owner"]) == ({"max_rounds": 2}, "alice")
    first["config"]["max_rounds"] = 9  # each row gets its own default dict
    assert new_task_row(title="Third", created_at=now, updated_at=now)["config"] == {}


@pytest.mark.postgres
async def test_timestamps_read_on_postgresql_are_utc_whatever_the_session_zone(
    postgres_database: PostgresTestDatabase | None,
) -> None:
    if postgres_database is None:
        unavailable("PostgreSQL", postgres_url_for_tests())
    assert postgres_database is not None
    engine = create_async_engine(postgres_database.url, connect_args={"server_settings": {"timezone": "Asia/Tokyo"}})
    database = Database(engine, create_session_factory(engine))
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=5)))
    row = new_task_row(title="Zoned", created_at=moment, updated_at=moment, last_run_at=moment)
    try:
        async with database.writing() as connection:
            await TaskRepository(connection).insert(row)
        async with database.reading() as connection:
            stored = await TaskRepository(connection).read(row["id"])
            zone = (await connection.execute(text("SHOW timezone"))).scalar_one()
        async with database.writing() as connection:
            await connection.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": row["id"]})
    finally:
        await engine.dispose()
    assert zone == "Asia/Tokyo"
    assert stored is not None
    for name in ("created_at", "updated_at", "last_run_at"):
        assert stored[name] == moment, name
        assert stored[name].utcoffset() == timedelta(0), name
