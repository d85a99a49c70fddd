"""SQL for run artifacts (plan, code, tests, review, sandbox report)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from backend.db.models import Artifact
from backend.db.types import utcnow


class ArtifactRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def save(self, run_id: uuid.UUID, name: str, media_type: str, content: bytes) -> Artifact:
        """Create or replace the artifact ``name`` of a run (a revision rewrites its files)."""
        artifact = await self.session.scalar(
            select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name)
        )
        if artifact is None:
            artifact = Artifact(run_id=run_id, name=name)
            self.session.add(artifact)
        artifact.media_type = media_type
        artifact.content = content
        artifact.size = len(content)
        artifact.sha256 = hashlib.sha256(content).hexdigest()
        artifact.created_at = utcnow()
        await self.session.flush()
        return artifact

    async def list(self, run_id: uuid.UUID) -> Sequence[Artifact]:
        rows = await self.session.scalars(
            select(Artifact).where(Artifact.run_id == run_id).options(defer(Artifact.content)).order_by(Artifact.name)
        )
        return rows.all()

    async def get(self, run_id: uuid.UUID, name: str) -> Artifact | None:
        return await self.session.scalar(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name))
