"""SQL behind the run metrics: runs per status and the queue's oldest entry (read at scrape
time), and when runs were created (for the duration of runs that just finished)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Run


class RunStatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count_by_status(self) -> dict[str, int]:
        rows = await self.session.execute(select(Run.status, func.count()).group_by(Run.status))
        return {status: int(count) for status, count in rows.all()}

    async def oldest_queued_at(self) -> datetime | None:
        return await self.session.scalar(select(func.min(Run.queued_at)).where(Run.status == "queued"))

    async def created_at(self, run_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, datetime]:
        if not run_ids:
            return {}
        rows = await self.session.execute(select(Run.id, Run.created_at).where(Run.id.in_(list(run_ids))))
        return {run_id: created for run_id, created in rows.all()}
