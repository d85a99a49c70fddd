"""FastAPI dependencies and their ``Annotated`` aliases (``SessionDep``, ``SettingsDep``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from backend.access import Principal
from backend.config import Settings

MAX_PAGE_SIZE = 200


# Dependencies that do no I/O are still ``async def``: FastAPI runs a plain ``def`` dependency in
# its thread pool, a hand-off that cost more than the rest of a simple request under load.
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.session_factory() as session:
        yield session


async def open_session(request: Request) -> AsyncIterator[tuple[AsyncSession, Settings, Principal | None]]:
    """A session with the settings and the caller, as one dependency: services are built from
    these on every request, and FastAPI's cost is per dependency, so the route-level service
    dependencies ask for this one instead of three."""
    async with request.app.state.session_factory() as session:
        yield session, request.app.state.settings, request.state.principal


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
OpenSessionDep = Annotated[tuple[AsyncSession, Settings, Principal | None], Depends(open_session)]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size (at most 200).")]
OffsetQuery = Annotated[int, Query(ge=0, description="Number of items to skip.")]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Makes the POST safe to retry: the same key and body return the stored response.",
    ),
]
IfMatchHeader = Annotated[
    str | None,
    Header(alias="If-Match", description="ETag of the version you read; a mismatch answers 412."),
]
