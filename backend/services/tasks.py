"""Task rules: creation (idempotent), optimistic updates, deletion guarded by active runs, and
ownership (a non-admin API key sees only the tasks it created; others' answer 404)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from backend.access import Principal, can_see, idempotency_scope, owner_filter, owner_of_new
from backend.db.models import Task
from backend.db.repositories.tasks import TaskRepository
from backend.db.types import utcnow
from backend.errors import ConflictError, FieldValidationError, NotFoundError
from backend.schemas.problem import field_path
from backend.schemas.tasks import TaskConfig, TaskCreate, TaskRead, TaskUpdate
from backend.services import run_states
from backend.services.etags import ensure_if_match
from backend.services.idempotency import CreatedResource, IdempotencyGuard, claim_creation

CREATE_SCOPE = "POST /tasks/"


def task_location(task_id: uuid.UUID) -> str:
    return f"/tasks/{task_id}"


class TaskService:
    def __init__(
        self, session: AsyncSession, *, idempotency_ttl_seconds: int = 86_400, principal: Principal | None = None
    ) -> None:
        self.session = session
        self.tasks = TaskRepository(session)
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        self.principal = principal

    async def list_tasks(
        self, *, status: str | None, query: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Row[Any]], int]:
        return await self.tasks.list(
            status=status, query=query, owner=owner_filter(self.principal), limit=limit, offset=offset
        )

    async def read_task(self, task_id: uuid.UUID) -> Row[Any]:
        """The task as a read-only row (to answer with); ``get_task`` for changing it."""
        task = await self.tasks.read(task_id)
        if task is None or not can_see(self.principal, task.owner):
            raise NotFoundError(f"task {task_id} does not exist")
        return task

    async def get_task(self, task_id: uuid.UUID) -> Task:
        task = await self.tasks.get(task_id)
        if task is None or not can_see(self.principal, task.owner):
            raise NotFoundError(f"task {task_id} does not exist")
        return task

    async def create_task(self, data: TaskCreate, *, idempotency_key: str | None) -> CreatedResource:
        claim = await claim_creation(
            self.session,
            ttl_seconds=self.idempotency_ttl_seconds,
            scope=idempotency_scope(CREATE_SCOPE, self.principal),
            key=idempotency_key,
            payload=data.model_dump(mode="json"),
        )
        if isinstance(claim, CreatedResource):
            return claim
        now = utcnow()
        task = await self.tasks.add(
            Task(
                title=data.title,
                description=data.description,
                config=data.config.stored(),
                owner=owner_of_new(self.principal),
                created_at=now,
                updated_at=now,
            )
        )
        body = TaskRead.model_validate(task).model_dump(mode="json")
        location = task_location(task.id)
        if claim is not None:
            IdempotencyGuard.complete(claim, 201, body, location)
        await self.session.commit()
        return CreatedResource(body, location, replayed=False)

    async def update_task(self, task_id: uuid.UUID, data: TaskUpdate, *, if_match: str | None) -> Task:
        task = await self.get_task(task_id)
        ensure_if_match(if_match, task.version)
        changes = data.model_dump(exclude_unset=True)
        if "title" in changes:
            task.title = changes["title"]
        if "description" in changes:
            task.description = changes["description"]
        if "config" in changes:
            task.config = merge_config(task.config, changes["config"])
        if changes:
            task.version += 1
            task.updated_at = utcnow()
        await self.session.commit()
        return task

    async def delete_task(self, task_id: uuid.UUID, *, if_match: str | None, cascade: bool) -> None:
        task = await self.get_task(task_id)
        ensure_if_match(if_match, task.version)
        active = await self.tasks.runs_in_status(task.id, run_states.ACTIVE_STATUSES)
        if active and not cascade:
            raise ConflictError(
                f"task {task_id} has {len(active)} active run(s); cancel them or delete with ?cascade=true",
                extra={"active_runs": [str(run.id) for run in active]},
            )
        for run in active:
            run.cancel_requested = True
            run_states.transition(run, run_states.CANCELLED)
        await self.session.flush()
        await self.tasks.delete(task)
        await self.session.commit()


def merge_config(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7396) of a task config, validated as a whole."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    try:
        return TaskConfig.model_validate(merged).stored()
    except ValidationError as exc:
        errors = [
            {
                "field": field_path(("config", *error["loc"])),
                "location": "body",
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors()
        ]
        raise FieldValidationError(
            "; ".join(f"{error['field']}: {error['message']}" for error in errors),
            extra={"errors": errors},
        ) from None
