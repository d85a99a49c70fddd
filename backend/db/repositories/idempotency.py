"""SQL for stored idempotent responses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import IdempotencyKey


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, scope: str, key: str) -> IdempotencyKey | None:
        return await self.session.scalar(
            select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        )

    async def claim(self, scope: str, key: str, request_hash: str) -> IdempotencyKey | None:
        """Insert the key inside the current transaction; ``None`` if another request holds it."""
        record = IdempotencyKey(scope=scope, key=key, request_hash=request_hash)
        try:
            async with self.session.begin_nested():
                self.session.add(record)
        except IntegrityError:
            return None
        return record

    async def delete_older_than(self, cutoff: datetime) -> int:
        result = await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
        return result.rowcount or 0
