"""Tasks API: what the team should build."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from backend.app.deps import (
    IdempotencyKeyHeader,
    IfMatchHeader,
    LimitQuery,
    OffsetQuery,
)
from backend.routers.answers import created_answer
from backend.routers.links import TASK_LINKS, linked
from backend.schemas.common import Page
from backend.schemas.problem import error_responses
from backend.schemas.tasks import TaskCreate, TaskRead, TaskUpdate
from backend.schemas.text import NAME
from backend.services.etags import etag
from backend.services.run_states import ALL_STATUSES
from backend.services.tasks import TaskService

router = APIRouter(prefix="/tasks", tags=["tasks"])

TASK_STATUSES = sorted(ALL_STATUSES | {"pending"})
TaskStatus = Literal[tuple(TASK_STATUSES)]  # type: ignore[valid-type]


async def get_task_service(request: Request) -> TaskService:
    # Not built on a session dependency: the service opens its own unit of work per operation, so
    # a read never builds (and closes) an ORM session.
    state = request.app.state
    return TaskService(
        state.database,
        idempotency_ttl_seconds=state.settings.idempotency_ttl_seconds,
        principal=request.state.principal,
    )


TaskServiceDep = Annotated[TaskService, Depends(get_task_service)]


@router.get("/", response_model=Page[TaskRead], summary="List tasks", responses=error_responses(422))
async def list_tasks(
    service: TaskServiceDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
    status_filter: Annotated[TaskStatus, Query(alias="status", description="Only tasks in this status.")] = None,
    q: Annotated[
        str, Query(max_length=200, pattern=NAME, description="Text to find in title or description.")
    ] = None,
) -> Any:
    items, total = await service.list_tasks(status=status_filter, query=q, limit=limit, offset=offset)
    # Plain dicts: FastAPI validates them against Page[TaskRead] once, in pydantic's core, which
    # costs a fraction of building 50 models here first.
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.post(
    "/",
    response_model=TaskRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create a task",
    responses={**linked(201, "The task was created (or replayed for the same Idempotency-Key).", TASK_LINKS), **error_responses(409, 415, 422)},
)
async def create_task(
    body: TaskCreate, service: TaskServiceDep, response: Response, idempotency_key: IdempotencyKeyHeader = None
) -> Any:
    created = await service.create_task(body, idempotency_key=idempotency_key)
    return created_answer(created, response)


@router.get(
    "/{task_id}",
    response_model=TaskRead,
    summary="Get a task",
    responses={**linked(200, "The task.", TASK_LINKS), **error_responses(404, 422)},
)
async def get_task(task_id: uuid.UUID, service: TaskServiceDep, response: Response) -> Any:
    task = await service.read_task(task_id)
    response.headers["ETag"] = etag(task["version"])
    return task


@router.patch(
    "/{task_id}",
    response_model=TaskRead,
    summary="Update a task partially",
    responses=error_responses(404, 412, 415, 422),
)
async def update_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    service: TaskServiceDep,
    response: Response,
    if_match: IfMatchHeader = None,
) -> TaskRead:
    task = await service.update_task(task_id, body, if_match=if_match)
    response.headers["ETag"] = etag(task.version)
    return task


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a task",
    responses=error_responses(404, 409, 412, 422),
)
async def delete_task(
    task_id: uuid.UUID,
    service: TaskServiceDep,
    cascade: Annotated[bool, Query(description="Cancel the task's active runs, then delete.")] = False,
    if_match: IfMatchHeader = None,
) -> Response:
    await service.delete_task(task_id, if_match=if_match, cascade=cascade)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
