"""``Idempotency-Key`` for creations: the same key and body replay the stored response, the same
key with another body is refused (422). Keys live in the database, so they survive restarts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import IdempotencyKey
from backend.db.repositories.idempotency import IdempotencyRepository
from backend.db.types import utcnow
from backend.errors import ConflictError, InvalidRequestError


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]
    location: str | None


def request_fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedResource:
    """What a creation answers: the body, its Location, and whether it replays a stored answer."""

    body: dict[str, Any]
    location: str
    replayed: bool


class IdempotencyGuard:
    """Claims a key for one creation inside the caller's transaction."""

    def __init__(self, session: AsyncSession, *, ttl_seconds: int) -> None:
        self.repository = IdempotencyRepository(session)
        self.session = session
        self.ttl = timedelta(seconds=ttl_seconds)

    async def replay_or_claim(self, scope: str, key: str, payload: Any) -> StoredResponse | IdempotencyKey:
        fingerprint = request_fingerprint(payload)
        existing = await self.repository.find(scope, key)
        if existing is not None and existing.created_at < utcnow() - self.ttl:
            await self.session.delete(existing)
            await self.session.flush()
            existing = None
        if existing is None:
            claimed = await self.repository.claim(scope, key, fingerprint)
            if claimed is not None:
                return claimed
            existing = await self.repository.find(scope, key)
            if existing is None:  # claimed and released by a concurrent request that failed
                raise ConflictError("a request with this Idempotency-Key is in progress; retry shortly")
        return self._replay(existing, fingerprint)

    @staticmethod
    def _replay(record: IdempotencyKey, fingerprint: str) -> StoredResponse:
        if record.request_hash != fingerprint:
            raise InvalidRequestError(
                "this Idempotency-Key was already used with a different request body",
                extra={"idempotency_key": record.key},
            )
        if record.status_code is None or record.response_body is None:
            raise ConflictError("a request with this Idempotency-Key is in progress; retry shortly")
        return StoredResponse(record.status_code, record.response_body, record.location)

    @staticmethod
    def complete(record: IdempotencyKey, status_code: int, body: dict[str, Any], location: str | None) -> None:
        record.status_code = status_code
        record.response_body = body
        record.location = location


async def claim_creation(
    session: AsyncSession, *, ttl_seconds: int, scope: str, key: str | None, payload: Any
) -> CreatedResource | IdempotencyKey | None:
    """Start a creation that may carry an ``Idempotency-Key``: None without a key; the stored
    answer to replay (the transaction is rolled back); or the claimed key, to ``complete`` with
    the new resource's answer in the same transaction."""
    if key is None:
        return None
    outcome = await IdempotencyGuard(session, ttl_seconds=ttl_seconds).replay_or_claim(scope, key, payload)
    if isinstance(outcome, StoredResponse):
        await session.rollback()
        return CreatedResource(outcome.body, outcome.location or "", replayed=True)
    return outcome
