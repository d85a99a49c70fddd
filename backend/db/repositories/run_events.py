"""SQL for the append-only run event log, with a per-run gap-free ``seq``."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Run, RunEvent
from backend.db.types import utcnow


class RunEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, run_id: uuid.UUID, event_type: str, data: dict[str, Any]) -> RunEvent:
        """Append an event; the counter row update serialises writers of the same run, so
        ``seq`` has no gap and no duplicate even across processes."""
        seq = await self.session.scalar(
            update(Run)
            .where(Run.id == run_id)
            .values(next_event_seq=Run.next_event_seq + 1)
            .returning(Run.next_event_seq - 1)
            .execution_options(synchronize_session=False)
        )
        if seq is None:
            raise LookupError(f"run {run_id} does not exist")
        event = RunEvent(run_id=run_id, seq=seq, type=event_type, data=data, created_at=utcnow())
        self.session.add(event)
        await self.session.flush()
        return event

    async def list_after(self, run_id: uuid.UUID, after: int, limit: int) -> Sequence[RunEvent]:
        rows = await self.session.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.seq > after).order_by(RunEvent.seq).limit(limit)
        )
        return rows.all()

    async def heads(
        self, run_ids: Collection[uuid.UUID], task_ids: Collection[uuid.UUID]
    ) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
        """``(run_id, task_id, last seq)`` of the given runs and of every run of the given tasks."""
        conditions = []
        if run_ids:
            conditions.append(Run.id.in_(run_ids))
        if task_ids:
            conditions.append(Run.task_id.in_(task_ids))
        if not conditions:
            return []
        rows = await self.session.execute(select(Run.id, Run.task_id, Run.next_event_seq - 1).where(or_(*conditions)))
        return [(run_id, task_id, int(head)) for run_id, task_id, head in rows.all()]
