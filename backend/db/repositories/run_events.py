"""SQL for the append-only run event log, with a per-run gap-free ``seq``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
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
