"""SQL for tasks."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Integer, Result, Select, bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backend.db.models import Run, Task
from backend.db.types import column_default


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Every column of a task, selected without the ORM: reads that only answer with a task skip the
# identity map and change tracking, which cost more than the query on a page of 50.
TASK_COLUMNS = tuple(Task.__table__.columns)
# Built once: constructing a statement costs more than its compiled-SQL cache lookup saves.
READ_TASK = select(*TASK_COLUMNS).where(Task.id == bindparam("task_id"))
INSERT_TASK = insert(Task.__table__)


@cache
def _list_statements(by_owner: bool, by_status: bool, by_text: bool) -> tuple[Select[Any], Select[Any]]:
    """The count and page statements of ``TaskRepository.list`` for one combination of filters,
    built once with bound parameters: building them and their cache keys on every request cost
    more than running them."""
    conditions = []
    if by_owner:
        conditions.append(Task.owner == bindparam("owner"))
    if by_status:
        conditions.append(Task.status == bindparam("status"))
    if by_text:
        pattern = bindparam("pattern")
        conditions.append(or_(Task.title.ilike(pattern, escape="\\"), Task.description.ilike(pattern, escape="\\")))
    count = select(func.count()).select_from(Task).where(*conditions)
    page = (
        select(*TASK_COLUMNS)
        .where(*conditions)
        .order_by(Task.created_at.desc(), Task.id)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    return count, page


def _as_dicts(result: Result[Any]) -> list[dict[str, Any]]:
    """The rows as plain dicts: what the answers are validated from, built at C speed (a third of
    the cost of ``Row._asdict``, which showed in the profile of every page)."""
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


_DEFAULTS = {column.key: column_default(column) for column in TASK_COLUMNS}


def new_task_row(**values: Any) -> dict[str, Any]:
    """Every column of a new task: ``values``, and the table's Python-side defaults for the rest
    (``uuid4`` id, ``pending`` status, zero counters, version 1; None where there is none)."""
    return {key: values[key] if key in values else default() for key, default in _DEFAULTS.items()}


class TaskRepository:
    """On a session (changes), or on a plain connection for the reads that return rows."""

    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.session = session

    async def list(
        self, *, status: str | None, query: str | None, owner: str | None = None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of tasks (plain mappings: lists only read them), newest first, and the total;
        ``owner`` limits both to that owner's."""
        count, page = _list_statements(owner is not None, bool(status), bool(query))
        params: dict[str, Any] = {"owner": owner, "status": status, "limit": limit, "offset": offset}
        if query:
            params["pattern"] = _like_pattern(query)
        total = (await self.session.execute(count, params)).scalar_one()
        result = await self.session.execute(page, params)
        return _as_dicts(result), int(total or 0)

    async def get(self, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        """The task; ``for_update`` row-locks it until the transaction ends, so a version check
        and the write that follows are one atomic step (on SQLite ``BEGIN IMMEDIATE`` is the lock)."""
        if not for_update:
            return await self.session.get(Task, task_id)
        return await self.session.scalar(
            select(Task).where(Task.id == task_id).with_for_update().execution_options(populate_existing=True)
        )

    async def read(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        """One task as a plain mapping, for answers that only read it (no ORM bookkeeping)."""
        rows = _as_dicts(await self.session.execute(READ_TASK, {"task_id": task_id}))
        return rows[0] if rows else None

    async def insert(self, row: dict[str, Any]) -> None:
        """Insert a complete row (``new_task_row``) as one Core statement: no ORM object to track
        for a task that is only answered with."""
        await self.session.execute(INSERT_TASK, row)

    async def delete(self, task: Task) -> None:
        await self.session.delete(task)
        await self.session.flush()

    async def runs_in_status(self, task_id: uuid.UUID, statuses: Collection[str]) -> Sequence[Run]:
        rows = await self.session.scalars(
            select(Run).where(Run.task_id == task_id, Run.status.in_(list(statuses))).order_by(Run.number)
        )
        return rows.all()

    async def record_new_run(self, task_id: uuid.UUID, run_id: uuid.UUID, status: str, now: Any) -> None:
        """The task's side of a run's creation: counted, and its latest run."""
        await self.session.execute(
            RECORD_NEW_RUN, {"task_id": task_id, "run_id": run_id, "run_status": status, "now": now}
        )

    async def mirror_run_statuses(self, changes: Sequence[tuple[uuid.UUID, uuid.UUID, str]]) -> None:
        """``(task id, run id, new status)`` per run, one statement for all: what
        ``run_journal.mirror_run_on_task`` does on an ORM task, for the runner's writes."""
        await self.session.execute(MIRROR_RUN_STATUS, mirror_parameters(changes))


def run_counts(status: str) -> tuple[int, int]:
    """What a run's new status adds to its task's (successful, failed) counters: terminal
    statuses count once; cancelled, rejected and expired count as neither."""
    return int(status == "completed"), int(status == "failed")


def mirror_parameters(changes: Sequence[tuple[uuid.UUID, uuid.UUID, str]]) -> list[dict[str, Any]]:
    parameters = []
    for task_id, run_id, status in changes:
        completed, failed = run_counts(status)
        parameters.append(
            {"mirrored_task": task_id, "mirrored_run": run_id, "run_status": status, "completed": completed, "failed": failed}
        )
    return parameters


def _mirror_run_status() -> Any:
    tasks = Task.__table__.c
    latest = tasks.last_run_id == bindparam("mirrored_run", type_=tasks.last_run_id.type)
    status = bindparam("run_status", type_=tasks.status.type)
    return (
        update(Task.__table__)
        .where(tasks.id == bindparam("mirrored_task", type_=tasks.id.type))
        .values(
            status=case((latest, status), else_=tasks.status),
            last_run_status=case((latest, status), else_=tasks.last_run_status),
            successful_runs=tasks.successful_runs + bindparam("completed", type_=Integer),
            failed_runs=tasks.failed_runs + bindparam("failed", type_=Integer),
        )
    )


MIRROR_RUN_STATUS = _mirror_run_status()
RECORD_NEW_RUN = (
    update(Task.__table__)
    .where(Task.__table__.c.id == bindparam("task_id", type_=Task.__table__.c.id.type))
    .values(
        total_runs=Task.__table__.c.total_runs + 1,
        last_run_id=bindparam("run_id", type_=Task.__table__.c.last_run_id.type),
        last_run_at=bindparam("now", type_=Task.__table__.c.last_run_at.type),
        last_run_status=bindparam("run_status", type_=Task.__table__.c.status.type),
        status=bindparam("run_status", type_=Task.__table__.c.status.type),
    )
)
