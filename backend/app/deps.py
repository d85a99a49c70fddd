"""FastAPI dependencies and their ``Annotated`` aliases (``SessionDep``, ``SettingsDep``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from backend.access import Principal
from backend.app.auth import authenticate
from backend.app.limits import enforce_rate_limit
from backend.config import Settings
from backend.errors import UnsupportedMediaTypeError

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


async def require_json_body(request: HTTPConnection) -> None:
    """Refuse request bodies that are not JSON (415), before the body is parsed. (An app-wide
    dependency, so it also sees WebSocket connections, which have no body.)"""
    if request.scope.get("method") not in {"POST", "PUT", "PATCH"}:
        return
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    if not has_body:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"request bodies must be application/json, got {media_type or 'no Content-Type'}"
        )


async def admit_request(conn: HTTPConnection) -> None:
    """The app-wide gate, in this order: JSON bodies only (415), a valid API key (401), the
    caller's rate limit (429). One dependency rather than three, as FastAPI pays per dependency
    on every request."""
    await require_json_body(conn)
    await authenticate(conn)
    await enforce_rate_limit(conn)
