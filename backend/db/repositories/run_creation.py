"""A run's creation on PostgreSQL (``POST /runs`` without an ``Idempotency-Key``): one
transaction of three round trips straight through asyncpg, instead of the eight the Core path
makes (BEGIN, the task's lock, the counts, the run, its first event, the task's counters, the
NOTIFY, COMMIT), each through SQLAlchemy's statement machinery.

1. ``BEGIN`` and the task's row lock, sent together. The lock serialises creations on one task.
2. One statement (data-modifying CTEs) that counts the task's runs, decides, and writes: the run
   row, its ``run.created`` event, the task's counters and latest run, the NOTIFY that wakes the
   runners of other processes. It runs after the lock, so its snapshot sees every run committed
   before it (a lock inside the same statement would not: the counts would read the snapshot
   taken before waiting for it). Nothing is written when the task is not there for the caller,
   or when it has an active run and concurrent runs are not allowed; it then says which.
3. ``COMMIT`` (``ROLLBACK`` when nothing was written).

The rows are the Core path's (``RunService.create_run``): the same columns, defaults, event and
counters, so the two paths are interchangeable; tests run both databases through the same API.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.repositories.journal import RUN_COLUMN_TYPES, encode_run_value
from backend.observability.database import count_statements, count_transaction


@dataclass(frozen=True)
class Creation:
    found: bool  # the task exists and the caller may see it
    number: int | None  # the new run's number; None when nothing was written


async def create_run_postgresql(
    connection: AsyncConnection,
    row: dict[str, Any],
    *,
    restricted_to: str | None,
    active_statuses: Collection[str],
    overrides: dict[str, Any],
    channel: str,
) -> Creation:
    """Write ``row`` (a complete ``new_run_row``; the statement sets its ``number``, the task's
    next) with its first event and the task's side, all or nothing. ``restricted_to``: the only
    owner whose task the caller may see (None: any)."""
    task_id = row["task_id"]
    if not isinstance(task_id, uuid.UUID):  # it goes into the statement's text
        raise TypeError(f"task_id must be a UUID, not {type(task_id).__name__}")
    driver = (await connection.get_raw_connection()).driver_connection
    count_transaction()
    count_statements(2)
    try:
        await driver.execute(f"BEGIN; SELECT 1 FROM tasks WHERE id = '{task_id}' FOR UPDATE")
        record = await driver.fetchrow(
            _CREATE_SQL,
            task_id,
            restricted_to,
            list(active_statuses),
            json.dumps(overrides),
            channel,
            *[encode_run_value(column, row[column]) for column in _INSERTED],
        )
        created = Creation(found=bool(record["found"]), number=record["number"])
        await driver.execute("COMMIT" if created.number is not None else "ROLLBACK")
    except BaseException:
        await _abandon(connection, driver)
        raise
    return created


async def _abandon(connection: AsyncConnection, driver: Any) -> None:
    """Leave no transaction open on a connection that goes back to the pool: roll back, or,
    when that fails too (the connection broke, or a cancelled statement is still in flight),
    take the connection out of the pool."""
    try:
        await driver.execute("ROLLBACK")
    except Exception:
        with contextlib.suppress(Exception):
            await connection.invalidate()


# Every column but the two the statement fills itself (the task, the number), in table order.
_INSERTED = tuple(column for column in RUN_COLUMN_TYPES if column not in {"task_id", "number"})


def _create_sql() -> str:
    """Parameters: $1 the task, $2 the only owner the caller may see (null: any), $3 the active
    statuses, $4 the run's config overrides (JSON), $5 the NOTIFY channel, then the run's columns
    in ``_INSERTED`` order."""
    values = {column: f"${index}::{RUN_COLUMN_TYPES[column]}" for index, column in enumerate(_INSERTED, start=6)}
    columns = ", ".join(["task_id", "number", *_INSERTED])
    selected = ", ".join(["allowed.id", "allowed.number", *values.values()])
    return f"""
WITH task AS (
    SELECT id, config FROM tasks WHERE id = $1 AND ($2::varchar IS NULL OR owner = $2)
), counts AS (
    SELECT count(*) FILTER (WHERE status = ANY($3::text[])) AS active, coalesce(max(number), 0) AS highest
    FROM runs WHERE task_id = $1
), allowed AS (
    SELECT task.id, counts.highest + 1 AS number FROM task, counts
    WHERE counts.active = 0
        OR coalesce($4::jsonb -> 'allow_concurrent_runs', task.config -> 'allow_concurrent_runs') = 'true'::jsonb
), run AS (
    INSERT INTO runs ({columns}) SELECT {selected} FROM allowed
    RETURNING id, number, status, created_at
), event AS (
    INSERT INTO run_events (run_id, seq, type, data, created_at)
    SELECT run.id, 1, 'run.created', jsonb_build_object('task_id', $1::text, 'number', run.number), run.created_at
    FROM run
), task_side AS (
    UPDATE tasks SET total_runs = total_runs + 1, last_run_id = run.id, last_run_at = run.created_at,
        last_run_status = run.status, status = run.status
    FROM run WHERE tasks.id = $1
), notified AS (
    SELECT pg_notify($5, 'queued') FROM run
)
SELECT (SELECT count(*) FROM task) AS found, (SELECT number FROM run) AS number,
    (SELECT count(*) FROM notified) AS notified"""


_CREATE_SQL = _create_sql()
