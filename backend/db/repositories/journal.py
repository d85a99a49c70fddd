"""The statements of one run-journal write (``RunExecutor.record``): the lease-checked update of
the run, the artifacts' upserts, the events' insert and the task's mirror, in one transaction.

They are the service's hottest writes (a few per model reply of every run), so on PostgreSQL
they go straight through asyncpg on a connection from the engine's pool: the same statements as
the Core ones on SQLite, at less than half the CPU (``bench/runs_throughput.py``: a journal
write cost ~1.5-2 ms of CPU through SQLAlchemy Core and ~0.6-0.9 through asyncpg). They are
counted in the same ``mgx_db_statements`` / ``mgx_db_transactions`` as everything else.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import JSON
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db.models import Run, RunEvent
from backend.db.repositories.artifacts import ArtifactRepository, ArtifactSummary
from backend.db.repositories.run_events import RunEventRepository
from backend.db.repositories.runs import RunRepository
from backend.db.repositories.tasks import TaskRepository, mirror_parameters
from backend.observability.database import count_statements, count_transaction


class JournalStatements(Protocol):
    async def update_leased(
        self, run_id: uuid.UUID, holder: str, statuses: Collection[str], values: dict[str, Any], *,
        reserve_events: int, now: datetime,
    ) -> tuple[int, uuid.UUID, int] | None: ...

    async def save_artifact(
        self, run_id: uuid.UUID, name: str, media_type: str, content: bytes, *, now: datetime
    ) -> ArtifactSummary: ...

    async def insert_events(self, events: Sequence[RunEvent]) -> None: ...

    async def mirror_run_statuses(self, changes: Sequence[tuple[uuid.UUID, uuid.UUID, str]]) -> None: ...


@asynccontextmanager
async def journal_transaction(engine: AsyncEngine) -> AsyncIterator[JournalStatements]:
    """One transaction for a journal write, committed when the block ends without an error."""
    async with engine.connect() as connection:
        if connection.dialect.driver == "asyncpg":
            driver = (await connection.get_raw_connection()).driver_connection
            count_transaction()
            async with driver.transaction():
                yield AsyncpgJournal(driver)
        else:
            async with connection.begin():
                yield CoreJournal(connection)


class CoreJournal:
    """The journal's statements as SQLAlchemy Core, on any database."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.runs = RunRepository(connection)  # type: ignore[arg-type]
        self.artifacts = ArtifactRepository(connection)  # type: ignore[arg-type]
        self.events = RunEventRepository(connection)  # type: ignore[arg-type]
        self.tasks = TaskRepository(connection)

    async def update_leased(self, *args: Any, **kwargs: Any) -> tuple[int, uuid.UUID, int] | None:
        return await self.runs.update_leased(*args, **kwargs)

    async def save_artifact(self, *args: Any, **kwargs: Any) -> ArtifactSummary:
        return await self.artifacts.save(*args, **kwargs)

    async def insert_events(self, events: Sequence[RunEvent]) -> None:
        await self.events.insert_numbered(events)

    async def mirror_run_statuses(self, changes: Sequence[tuple[uuid.UUID, uuid.UUID, str]]) -> None:
        await self.tasks.mirror_run_statuses(changes)


class AsyncpgJournal:
    """The same statements through asyncpg's own calls (PostgreSQL). Parameters go as asyncpg
    takes them on an engine connection: JSON as text (SQLAlchemy's codec), aware datetimes."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def update_leased(
        self, run_id: uuid.UUID, holder: str, statuses: Collection[str], values: dict[str, Any], *,
        reserve_events: int, now: datetime,
    ) -> tuple[int, uuid.UUID, int] | None:
        now = values.get("updated_at", now)  # a status change's own time, else the write's
        columns = tuple(column for column in values if column != "updated_at")
        params = [_driver_value(column, values[column]) for column in columns]
        count_statements(1)
        row = await self.driver.fetchrow(
            _leased_update_sql(columns), run_id, holder, list(statuses), reserve_events, now, *params
        )
        return None if row is None else (int(row[0]), row[1], int(row[2]))

    async def save_artifact(
        self, run_id: uuid.UUID, name: str, media_type: str, content: bytes, *, now: datetime
    ) -> ArtifactSummary:
        summary = ArtifactSummary(name, media_type, len(content), hashlib.sha256(content).hexdigest())
        count_statements(1)
        await self.driver.execute(
            UPSERT_ARTIFACT_SQL, uuid.uuid4(), run_id, name, media_type, summary.size, summary.sha256, content, now
        )
        return summary

    async def insert_events(self, events: Sequence[RunEvent]) -> None:
        if events:
            count_statements(1)
            await self.driver.execute(
                INSERT_EVENTS_SQL,
                [event.run_id for event in events],
                [event.seq for event in events],
                [event.type for event in events],
                [json.dumps(event.data) for event in events],
                [event.created_at for event in events],
            )

    async def mirror_run_statuses(self, changes: Sequence[tuple[uuid.UUID, uuid.UUID, str]]) -> None:
        count_statements(1)
        await self.driver.executemany(
            MIRROR_SQL,
            [(p["mirrored_task"], p["mirrored_run"], p["run_status"], p["completed"], p["failed"])
             for p in mirror_parameters(changes)],
        )


_JSON_COLUMNS = frozenset(column.key for column in Run.__table__.columns if isinstance(column.type, JSON))


def _driver_value(column: str, value: Any) -> Any:
    return json.dumps(value) if column in _JSON_COLUMNS and value is not None else value


@functools.cache
def _leased_update_sql(columns: tuple[str, ...]) -> str:
    """``RunRepository.update_leased`` as SQL for asyncpg: $1 run, $2 holder, $3 statuses,
    $4 events to reserve, $5 ``updated_at``, then one parameter per column in ``columns``."""
    assigned = {column: f"${index}" for index, column in enumerate(columns, start=6)}
    assigned = {column: f"{placeholder}::jsonb" if column in _JSON_COLUMNS else placeholder
                for column, placeholder in assigned.items()}
    assigned["updated_at"] = "$5"
    sets = ", ".join(f"{column} = {value}" for column, value in assigned.items())
    return (
        f"UPDATE runs SET {sets}, next_event_seq = next_event_seq + $4, version = version + 1 "
        "WHERE id = $1 AND lease_owner = $2 AND cancel_requested IS false AND status = ANY($3::varchar[]) "
        "RETURNING next_event_seq - $4, task_id, attempt"
    )


UPSERT_ARTIFACT_SQL = (
    "INSERT INTO artifacts (id, run_id, name, media_type, size, sha256, content, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (run_id, name) DO UPDATE SET "
    "media_type = excluded.media_type, content = excluded.content, size = excluded.size, "
    "sha256 = excluded.sha256, created_at = excluded.created_at"
)
INSERT_EVENTS_SQL = (
    "INSERT INTO run_events (run_id, seq, type, data, created_at) "
    "SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::varchar[], $4::jsonb[], $5::timestamptz[])"
)
MIRROR_SQL = (
    "UPDATE tasks SET status = CASE WHEN last_run_id = $2 THEN $3 ELSE status END, "
    "last_run_status = CASE WHEN last_run_id = $2 THEN $3 ELSE last_run_status END, "
    "successful_runs = successful_runs + $4, failed_runs = failed_runs + $5 WHERE id = $1"
)
