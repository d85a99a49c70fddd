"""``Idempotency-Key`` for creations: the same key and body replay the stored response, the same
key with another body is refused (422). Keys live in the database, so they survive restarts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

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
    """What a creation answers: the resource's fields (Python values, or the stored JSON of a
    replay; the route's response model serializes either), its Location, and whether it replays
    a stored answer."""

    body: dict[str, Any]
    location: str
    replayed: bool


class IdempotencyClaim:
    """A key claimed for one creation, inside the creation's transaction: ``complete`` stores the
    answer in that same transaction, so the key and the resource are committed together."""

    def __init__(self, repository: IdempotencyRepository, scope: str, key: str) -> None:
        self.repository = repository
        self.scope = scope
        self.key = key

    async def complete(self, status_code: int, body: dict[str, Any], location: str | None) -> None:
        await self.repository.complete(self.scope, self.key, status_code, body, location)


class IdempotencyGuard:
    """Claims a key for one creation inside the caller's transaction."""

    def __init__(self, connection: AsyncConnection, *, ttl_seconds: int) -> None:
        self.repository = IdempotencyRepository(connection)
        self.ttl = timedelta(seconds=ttl_seconds)

    async def replay_or_claim(self, scope: str, key: str, request: BaseModel) -> StoredResponse | IdempotencyClaim:
        fingerprint = request_fingerprint(request.model_dump(mode="json"))
        now = utcnow()
        existing = await self.repository.find(scope, key)
        if existing is not None and existing.created_at < now - self.ttl:
            await self.repository.delete(existing.id)
            existing = None
        if existing is None:
            if await self.repository.claim(scope, key, fingerprint, now):
                return IdempotencyClaim(self.repository, scope, key)
            existing = await self.repository.find(scope, key)
            if existing is None:  # claimed and released by a concurrent request that failed
                raise ConflictError("a request with this Idempotency-Key is in progress; retry shortly")
        return self._replay(existing, fingerprint)

    @staticmethod
    def _replay(record: Row[Any], fingerprint: str) -> StoredResponse:
        if record.request_hash != fingerprint:
            raise InvalidRequestError(
                "this Idempotency-Key was already used with a different request body",
                extra={"idempotency_key": record.key},
            )
        if record.status_code is None or record.response_body is None:
            raise ConflictError("a request with this Idempotency-Key is in progress; retry shortly")
        return StoredResponse(record.status_code, record.response_body, record.location)


async def claim_creation(
    connection: AsyncConnection, *, ttl_seconds: int, scope: str, key: str | None, request: BaseModel
) -> CreatedResource | IdempotencyClaim | None:
    """Start a creation that may carry an ``Idempotency-Key``, on the creation's connection: None
    without a key; the stored answer to replay (the caller writes nothing more); or the claimed
    key, to ``complete`` with the new resource's answer in the same transaction."""
    if key is None:
        return None
    outcome = await IdempotencyGuard(connection, ttl_seconds=ttl_seconds).replay_or_claim(scope, key, request)
    if isinstance(outcome, StoredResponse):
        return CreatedResource(outcome.body, outcome.location or "", replayed=True)
    return outcome
