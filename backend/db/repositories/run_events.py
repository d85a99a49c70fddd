"""SQL for the append-only run event log, with a per-run gap-free ``seq``."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Run, RunEvent
from backend.db.types import utcnow


# On the table, not the entity: the rows are only written, so no ORM bulk-insert machinery.
INSERT_EVENT = insert(RunEvent.__table__)


class RunEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add_next(self, run: Run, event_type: str, data: dict[str, Any]) -> RunEvent:
        """Append an event to a run the session holds row-locked (``SELECT ... FOR UPDATE``, or
        SQLite's ``BEGIN IMMEDIATE``), numbering it from the loaded counter: the lock is what
        keeps ``seq`` free of gaps and duplicates across processes. Written at the next flush."""
        seq = run.next_event_seq
        run.next_event_seq = seq + 1
        event = RunEvent(run_id=run.id, seq=seq, type=event_type, data=data, created_at=utcnow())
        self.session.add(event)
        return event

    async def insert_numbered(self, events: Sequence[RunEvent]) -> None:
        """Insert events (of any runs) whose ``seq`` the caller took from the runs' locked
        counters, in one statement; the objects stay plain values (no ORM tracking)."""
        if events:
            await self.session.execute(
                INSERT_EVENT,
                [
                    {"run_id": e.run_id, "seq": e.seq, "type": e.type, "data": e.data, "created_at": e.created_at}
                    for e in events
                ],
            )

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
