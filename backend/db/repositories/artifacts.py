"""SQL for run artifacts (plan, code, tests, review, sandbox report)."""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import defer

from backend.db.models import Artifact
from backend.db.types import utcnow


@dataclass(frozen=True)
class ArtifactSummary:
    name: str
    media_type: str
    size: int
    sha256: str

    @classmethod
    def of(cls, name: str, media_type: str, content: bytes) -> ArtifactSummary:
        return cls(name, media_type, len(content), hashlib.sha256(content).hexdigest())


class ArtifactRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def save(
        self, run_id: uuid.UUID, name: str, media_type: str, content: bytes, *, now: datetime | None = None
    ) -> ArtifactSummary:
        """Create or replace the artifact ``name`` of a run (a revision rewrites its files) in
        one upsert statement."""
        summary = ArtifactSummary.of(name, media_type, content)
        values = {
            "media_type": media_type,
            "content": content,
            "size": summary.size,
            "sha256": summary.sha256,
            "created_at": now or utcnow(),
        }
        dialect = self.session.dialect if isinstance(self.session, AsyncConnection) else self.session.bind.dialect
        await self.session.execute(_upsert(dialect.name), {"run_id": run_id, "name": name, **values})
        return summary

    async def list(self, run_id: uuid.UUID) -> Sequence[Artifact]:
        rows = await self.session.scalars(
            select(Artifact).where(Artifact.run_id == run_id).options(defer(Artifact.content)).order_by(Artifact.name)
        )
        return rows.all()

    async def list_with_content(self, run_id: uuid.UUID) -> Sequence[Artifact]:
        """Every artifact of the run with its content, by name (for the run's archive)."""
        rows = await self.session.scalars(
            select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.name)
        )
        return rows.all()

    async def get(self, run_id: uuid.UUID, name: str) -> Artifact | None:
        return await self.session.scalar(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name))


@functools.cache
def _upsert(dialect: str) -> Any:
    """The artifact upsert for one dialect, built once, on the table (rows only written here)."""
    table = Artifact.__table__
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = dialect_insert(table)
    replaced = ("media_type", "content", "size", "sha256", "created_at")
    return statement.on_conflict_do_update(
        index_elements=[table.c.run_id, table.c.name], set_={column: statement.excluded[column] for column in replaced}
    )
