"""The floor for ``bench/api_latency.py``: a bare FastAPI app that runs the service's SQL for
``GET /tasks/{id}``, ``GET /tasks/?limit=50`` and ``POST /tasks/`` on the same database.

The statements below are the service's own, captured from its SQL log (``DEBUG=true``) and
copied verbatim (PostgreSQL dialect of asyncpg, ``$n::TYPE`` parameters); the connections come
from the service's engine factory (``backend.db.engine.create_engine``: same driver, pool size
and checkout check), and each request runs them in one transaction as the service does (reads end in
ROLLBACK, the creation in COMMIT). What is left out is everything the service adds around the
SQL: ORM objects, pydantic schemas, app-wide dependencies (JSON check, auth, rate limit),
middleware, problem+json handling. ``tests/integration/bench/test_minimal_app.py`` checks that
the statements still match the service's.

    DATABASE_URL=postgresql://... [DB_POOL_SIZE=10] uvicorn bench.minimal_app:app --workers N
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Body, FastAPI, HTTPException, Response
from sqlalchemy.engine import make_url

from backend.db.engine import create_engine

TASK_COLUMNS = (
    "id, title, description, config, status, owner, total_runs, successful_runs, failed_runs, "
    "last_run_id, last_run_status, last_run_at, created_at, updated_at, version"
)
_SELECTED_COLUMNS = ", ".join(f"tasks.{column.strip()}" for column in TASK_COLUMNS.split(","))

SELECT_TASK = f"SELECT {_SELECTED_COLUMNS} FROM tasks WHERE tasks.id = $1::UUID"
COUNT_TASKS = "SELECT count(*) AS count_1 FROM tasks"
LIST_TASKS = (
    f"SELECT {_SELECTED_COLUMNS} FROM tasks ORDER BY tasks.created_at DESC, tasks.id "
    "LIMIT $1::INTEGER OFFSET $2::INTEGER"
)
INSERT_TASK = (
    f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1::UUID, $2::VARCHAR, $3::VARCHAR, $4::JSONB, "
    "$5::VARCHAR, $6::VARCHAR, $7::INTEGER, $8::INTEGER, $9::INTEGER, $10::UUID, $11::VARCHAR, "
    "$12::TIMESTAMP WITH TIME ZONE, $13::TIMESTAMP WITH TIME ZONE, $14::TIMESTAMP WITH TIME ZONE, "
    "$15::INTEGER)"
)
STATEMENTS = {"get": [SELECT_TASK], "list": [COUNT_TASKS, LIST_TASKS], "create": [INSERT_TASK]}

_NAMES = [column.strip() for column in TASK_COLUMNS.split(",")]


def _task(row: Any) -> dict[str, Any]:
    task = dict(zip(_NAMES, row, strict=True))
    # The driver hands JSONB over as text; the service's JSON type decodes it the same way.
    task["config"] = json.loads(task["config"]) if isinstance(task["config"], str) else task["config"]
    return task


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    url = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql+asyncpg")
    app.state.engine = create_engine(
        url,
        pool_size=int(os.environ.get("DB_POOL_SIZE", "10")),
        max_overflow=int(os.environ.get("DB_MAX_OVERFLOW", "20")),
    )
    yield
    await app.state.engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/tasks/{task_id}")
async def get_task(task_id: uuid.UUID) -> dict[str, Any]:
    async with app.state.engine.connect() as connection:
        row = (await connection.exec_driver_sql(SELECT_TASK, (task_id,))).first()
    if row is None:
        raise HTTPException(404)
    return _task(row)


@app.get("/tasks/")
async def list_tasks(limit: int = 50, offset: int = 0) -> dict[str, Any]:
    async with app.state.engine.connect() as connection:
        total = (await connection.exec_driver_sql(COUNT_TASKS)).scalar_one()
        rows = (await connection.exec_driver_sql(LIST_TASKS, (limit, offset))).all()
    return {"items": [_task(row) for row in rows], "total": total, "limit": limit, "offset": offset}


@app.post("/tasks/", status_code=201)
async def create_task(response: Response, body: dict[str, Any] = Body()) -> dict[str, Any]:
    now = datetime.now(UTC)
    row = (
        uuid.uuid4(), body["title"], body.get("description", ""), json.dumps(body.get("config", {})),
        "pending", None, 0, 0, 0, None, None, None, now, now, 1,
    )
    async with app.state.engine.begin() as connection:
        await connection.exec_driver_sql(INSERT_TASK, row)
    response.headers["Location"] = f"/tasks/{row[0]}"
    return _task(row)
