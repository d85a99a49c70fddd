"""One run-journal write (``RunExecutor.record``): the lease-checked update of the run (which
reserves the events' ``seq`` numbers), the artifacts' upserts, the events' insert and, when the
status changed, the task's mirror, all or nothing.

These are the service's hottest writes (a few per model reply of every run). On PostgreSQL the
whole write is one statement (data-modifying CTEs that all read the run's UPDATE, so nothing is
written when the lease is gone), sent straight through asyncpg on a connection of the engine's
pool: one round trip, no BEGIN/COMMIT, no SQLAlchemy statement machinery. Elsewhere (SQLite) it
is the same work as Core statements in one transaction. Both count in ``mgx_db_statements`` and
``mgx_db_transactions``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db.models import Run, RunEvent
from backend.db.repositories.artifacts import ArtifactRepository, ArtifactSummary
from backend.db.repositories.run_events import RunEventRepository
from backend.db.repositories.runs import RunRepository
from backend.db.repositories.tasks import TaskRepository, run_counts
from backend.observability.database import count_statements, count_transaction

# A reply's message says which execution made it: after a lost lease the redo says it again
# under a new attempt (the run's, as the lease-checked update returns it).
ATTEMPT_STAMPED = "agent.message"


@dataclass(frozen=True)
class JournalBatch:
    run_id: uuid.UUID
    holder: str
    statuses: Sequence[str]  # the run must be in one of these (and leased to ``holder``)
    values: dict[str, Any]  # run columns to set
    now: datetime
    artifacts: Sequence[tuple[ArtifactSummary, bytes]]
    events: Sequence[tuple[str, dict[str, Any], datetime]]  # (type, data, created_at), in order
    mirror_status: str | None  # the run's new status, to mirror on its task


@dataclass(frozen=True)
class WrittenBatch:
    first_seq: int
    task_id: uuid.UUID
    events: list[tuple[str, dict[str, Any], datetime]]  # as stored (messages stamped)


async def write_journal(engine: AsyncEngine, batch: JournalBatch) -> WrittenBatch | None:
    """Write ``batch``; None (and nothing written) when the lease is gone."""
    async with engine.connect() as connection:
        if connection.dialect.driver == "asyncpg":
            driver = (await connection.get_raw_connection()).driver_connection
            return await _write_postgresql(driver, batch)
        async with connection.begin():
            return await _write_core(connection, batch)


def _stamped(
    batch: JournalBatch, attempt: int, replaced: dict[int, dict[str, Any]] | None = None
) -> list[tuple[str, dict[str, Any], datetime]]:
    """The batch's events as stored: messages stamped with the attempt, and an event whose data
    the database could not take as it was (``replaced``, by position) as it went in, so that
    subscribers see live what a replay gives them."""
    stamped = []
    for index, (kind, data, at) in enumerate(batch.events):
        data = (replaced or {}).get(index, data)
        stamped.append((kind, {**data, "attempt": attempt} if kind == ATTEMPT_STAMPED else data, at))
    return stamped


async def _write_core(connection: AsyncConnection, batch: JournalBatch) -> WrittenBatch | None:
    reserved = await RunRepository(connection).update_leased(  # type: ignore[arg-type]
        batch.run_id, batch.holder, batch.statuses, batch.values, reserve_events=len(batch.events), now=batch.now
    )
    if reserved is None:  # the update matched no row: nothing was written
        return None
    first_seq, task_id, attempt = reserved
    artifacts = ArtifactRepository(connection)  # type: ignore[arg-type]
    for summary, content in batch.artifacts:
        await artifacts.save(batch.run_id, summary.name, summary.media_type, content, now=batch.now)
    events = _stamped(batch, attempt)
    await RunEventRepository(connection).insert_numbered(  # type: ignore[arg-type]
        [
            RunEvent(run_id=batch.run_id, seq=seq, type=kind, data=data, created_at=at)
            for seq, (kind, data, at) in enumerate(events, start=first_seq)
        ]
    )
    if batch.mirror_status is not None:
        await TaskRepository(connection).mirror_run_statuses([(task_id, batch.run_id, batch.mirror_status)])
    return WrittenBatch(first_seq, task_id, events)


async def _write_postgresql(driver: Any, batch: JournalBatch) -> WrittenBatch | None:
    """The whole batch as one statement on an asyncpg connection. Every array goes as text[]
    and is cast in SQL (contents as hex, JSON and times as text): asyncpg knows text[] of itself
    but introspects the catalogue for uuid[], bytea[], jsonb[] and the rest, two more queries on
    each new connection of the pool."""
    values = dict(batch.values)
    updated_at = values.pop("updated_at", batch.now)  # a status change's own time, else the write's
    unknown = values.keys() - _WRITABLE_TYPES.keys()
    if unknown:
        raise ValueError(f"the journal does not write these run columns: {sorted(unknown)}")
    completed, failed = run_counts(batch.mirror_status) if batch.mirror_status else (0, 0)
    encoded = [json.dumps(data) for _, data, _ in batch.events]
    storable = [_storable_json(text) for text in encoded]
    replaced = {index: json.loads(text) for index, text in enumerate(storable) if text is not encoded[index]}
    count_transaction()
    count_statements(1)
    row = await driver.fetchrow(
        _BATCH_SQL,
        batch.run_id,
        batch.holder,
        list(batch.statuses),
        len(batch.events),
        updated_at,
        [str(uuid.uuid4()) for _ in batch.artifacts],
        [summary.name for summary, _ in batch.artifacts],
        [summary.media_type for summary, _ in batch.artifacts],
        [str(summary.size) for summary, _ in batch.artifacts],
        [summary.sha256 for summary, _ in batch.artifacts],
        [content.hex() for _, content in batch.artifacts],
        batch.now,
        [kind for kind, _, _ in batch.events],
        storable,
        [at.isoformat() for _, _, at in batch.events],
        batch.mirror_status,
        completed,
        failed,
        list(values),
        *[encode_run_value(column, values.get(column)) for column in _WRITABLE_TYPES],
    )
    if row is None:
        return None
    first_seq, task_id, attempt = int(row[0]), row[1], int(row[2])
    return WrittenBatch(first_seq, task_id, _stamped(batch, attempt, replaced))


def encode_run_value(column: str, value: Any) -> Any:
    """A run column's value as asyncpg takes it in the statements on PostgreSQL: JSON as text
    (as SQLAlchemy's codecs on its connections take it), text without U+0000."""
    if value is None:
        return None
    if column in _JSON_COLUMNS:
        return _storable_json(json.dumps(value))
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


# A U+0000 escape, not one that is an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _storable_json(text: str) -> str:
    """JSON text that PostgreSQL's jsonb takes: it refuses U+0000, which the team's output can
    carry (a plan the model wrote as JSON with a "\\u0000" in it, an engine's reply); it becomes
    U+FFFD. SQLite stores it as it is. The sources the service knows (the model client, the
    sandbox's output) already replace it; this is the write's own guard."""
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


_JSON_COLUMNS = frozenset(column.key for column in Run.__table__.columns if isinstance(column.type, JSON))
# Each run column's PostgreSQL type without its length, for the casts of the parameters (an
# explicit cast to varchar(32) would cut a longer value short instead of failing).
RUN_COLUMN_TYPES = {
    column.key: column.type.compile(dialect=postgresql.dialect()).split("(")[0] for column in Run.__table__.columns
}
# What the statement may set on the run; the rest are the run's identity and what the statement
# itself maintains.
_MAINTAINED = frozenset({"id", "task_id", "created_at", "updated_at", "next_event_seq", "version"})
_WRITABLE_TYPES = {column: kind for column, kind in RUN_COLUMN_TYPES.items() if column not in _MAINTAINED}


def _batch_sql() -> str:
    """The batch statement, one text for every batch, so each pooled connection prepares it
    once (a text per set of run columns had most writes of a fresh pool pay a prepare round trip).
    Parameters: $1 run, $2 holder, $3 allowed statuses, $4 events to reserve, $5 updated_at;
    artifacts as arrays $6 ids, $7 names, $8 media types, $9 sizes, $10 digests, $11 contents,
    $12 their time; events as arrays $13 types, $14 data, $15 times (every array as text[]); $16
    the status to mirror on the task (null: none) with $17 / $18 the counts it adds; $19 the names
    of the run columns to set, then one value per writable column (null where not set)."""
    sets = [
        f"{column} = CASE WHEN '{column}' = ANY($19::text[]) THEN ${index}::{kind} ELSE {column} END"
        for index, (column, kind) in enumerate(_WRITABLE_TYPES.items(), start=20)
    ]
    assignments = ",\n        ".join(
        [*sets, "updated_at = $5", "next_event_seq = next_event_seq + $4", "version = version + 1"]
    )
    return f"""
WITH run AS (
    UPDATE runs SET {assignments}
    WHERE id = $1 AND lease_owner = $2 AND cancel_requested IS false AND status = ANY($3::text[])
    RETURNING next_event_seq - $4 AS first_seq, task_id, attempt
), artifacts AS (
    INSERT INTO artifacts (id, run_id, name, media_type, size, sha256, content, created_at)
    SELECT a.id, $1, a.name, a.media_type, a.size, a.sha256, decode(a.hex, 'hex'), $12
    FROM run, unnest($6::text[]::uuid[], $7::text[], $8::text[], $9::text[]::integer[], $10::text[], $11::text[])
        AS a(id, name, media_type, size, sha256, hex)
    ON CONFLICT (run_id, name) DO UPDATE SET media_type = excluded.media_type, content = excluded.content,
        size = excluded.size, sha256 = excluded.sha256, created_at = excluded.created_at
), events AS (
    INSERT INTO run_events (run_id, seq, type, data, created_at)
    SELECT $1, run.first_seq + e.position - 1, e.type,
        CASE WHEN e.type = '{ATTEMPT_STAMPED}' THEN e.data || jsonb_build_object('attempt', run.attempt) ELSE e.data END,
        e.created_at
    FROM run, unnest($13::text[], $14::text[]::jsonb[], $15::text[]::timestamptz[]) WITH ORDINALITY
        AS e(type, data, created_at, position)
), task AS (
    UPDATE tasks SET
        status = CASE WHEN last_run_id = $1 THEN $16 ELSE status END,
        last_run_status = CASE WHEN last_run_id = $1 THEN $16 ELSE last_run_status END,
        successful_runs = successful_runs + $17, failed_runs = failed_runs + $18
    FROM run WHERE tasks.id = run.task_id AND $16::varchar IS NOT NULL
)
SELECT first_seq, task_id, attempt FROM run"""


_BATCH_SQL = _batch_sql()
