"""FastAPI dependencies and their ``Annotated`` aliases (``SettingsDep``, the query and header
parameters the routers share). There is no session dependency: services open a unit of work per
operation from ``app.state.database`` (``backend.db.engine.Database``), so a read never builds an
ORM session and a request holds a connection only while it uses one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from backend.config import Settings

MAX_PAGE_SIZE = 200
# Optional parameters are typed by their value, with None as the default standing for "absent":
# a header or query parameter is never null, and `anyOf [..., null]` in the schema made clients
# (and fuzzers) send the text "null".
# Offsets are bound as 32-bit integers on PostgreSQL; no list gets near this many rows.
MAX_OFFSET = 2**31 - 1
# Event numbers are 64-bit; a cursor past this cannot name an event.
MAX_EVENT_SEQ = 2**63 - 1


# Dependencies that do no I/O are still ``async def``: FastAPI runs a plain ``def`` dependency in
# its thread pool, a hand-off that cost more than the rest of a simple request under load.
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size (at most 200).")]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Number of items to skip.")]
IdempotencyKeyHeader = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Makes the POST safe to retry: the same key and body return the stored response.",
    ),
]
IfMatchHeader = Annotated[
    str,
    Header(
        alias="If-Match",
        max_length=1000,
        description='ETag of the version you read (`"3"`); a mismatch, or a weak tag, answers 412.',
    ),
]
