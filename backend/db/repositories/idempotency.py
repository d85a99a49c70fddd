"""SQL for stored idempotent responses (Core statements: a creation runs them on its own
connection, or on its session's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backend.db.models import IdempotencyKey

KEYS = IdempotencyKey.__table__


class IdempotencyRepository:
    def __init__(self, connection: AsyncConnection | AsyncSession) -> None:
        self.connection = connection

    async def find(self, scope: str, key: str) -> Row[Any] | None:
        result = await self.connection.execute(select(KEYS).where(KEYS.c.scope == scope, KEYS.c.key == key))
        return result.first()

    async def delete(self, record_id: int) -> None:
        await self.connection.execute(delete(KEYS).where(KEYS.c.id == record_id))

    async def claim(self, scope: str, key: str, request_hash: str, created_at: datetime) -> bool:
        """Insert the key inside the current transaction; False if another request holds it."""
        try:
            async with self.connection.begin_nested():
                await self.connection.execute(
                    insert(KEYS).values(scope=scope, key=key, request_hash=request_hash, created_at=created_at)
                )
        except IntegrityError:
            return False
        return True

    async def complete(
        self, scope: str, key: str, status_code: int, body: dict[str, Any], location: str | None
    ) -> None:
        await self.connection.execute(
            update(KEYS)
            .where(KEYS.c.scope == scope, KEYS.c.key == key)
            .values(status_code=status_code, response_body=body, location=location)
        )

    async def delete_older_than(self, cutoff: datetime) -> int:
        result = await self.connection.execute(delete(KEYS).where(KEYS.c.created_at < cutoff))
        return result.rowcount or 0
