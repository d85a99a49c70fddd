"""SQL for tasks."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Row, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Run, Task


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Every column of a task, selected without the ORM: reads that only answer with a task skip the
# identity map and change tracking, which cost more than the query on a page of 50.
TASK_COLUMNS = tuple(Task.__table__.columns)
# Built once: constructing a statement costs more than its compiled-SQL cache lookup saves.
READ_TASK = select(*TASK_COLUMNS).where(Task.id == bindparam("task_id"))


class TaskRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(
        self, *, status: str | None, query: str | None, owner: str | None = None, limit: int, offset: int
    ) -> tuple[Sequence[Row[Any]], int]:
        """A page of tasks (plain rows: lists only read them), newest first, and the total;
        ``owner`` limits both to that owner's."""
        conditions = []
        if owner is not None:
            conditions.append(Task.owner == owner)
        if status:
            conditions.append(Task.status == status)
        if query:
            pattern = _like_pattern(query)
            conditions.append(
                or_(Task.title.ilike(pattern, escape="\\"), Task.description.ilike(pattern, escape="\\"))
            )
        total = await self.session.scalar(select(func.count()).select_from(Task).where(*conditions))
        rows = await self.session.execute(
            select(*TASK_COLUMNS).where(*conditions).order_by(Task.created_at.desc(), Task.id).limit(limit).offset(offset)
        )
        return rows.all(), int(total or 0)

    async def get(self, task_id: uuid.UUID) -> Task | None:
        return await self.session.get(Task, task_id)

    async def read(self, task_id: uuid.UUID) -> Row[Any] | None:
        """One task as a plain row, for answers that only read it (no ORM bookkeeping)."""
        return (await self.session.execute(READ_TASK, {"task_id": task_id})).first()

    async def add(self, task: Task) -> Task:
        self.session.add(task)
        await self.session.flush()
        return task

    async def delete(self, task: Task) -> None:
        await self.session.delete(task)
        await self.session.flush()

    async def runs_in_status(self, task_id: uuid.UUID, statuses: Collection[str]) -> Sequence[Run]:
        rows = await self.session.scalars(
            select(Run).where(Run.task_id == task_id, Run.status.in_(list(statuses))).order_by(Run.number)
        )
        return rows.all()
