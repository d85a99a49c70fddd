"""Task rules: creation (idempotent), optimistic updates, deletion guarded by active runs, and
ownership (a non-admin API key sees only the tasks it created; others' answer 404)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.access import Principal, can_see, idempotency_scope, owner_filter, owner_of_new
from backend.db.engine import Database
from backend.db.models import Task
from backend.db.repositories.tasks import TaskRepository, new_task_row
from backend.db.types import utcnow
from backend.errors import ConflictError, FieldValidationError, NotFoundError
from backend.schemas.problem import field_path
from backend.schemas.tasks import TaskConfig, TaskCreate, TaskRead, TaskUpdate
from backend.services import run_states
from backend.services.etags import ensure_if_match
from backend.services.idempotency import CreatedResource, claim_creation

CREATE_SCOPE = "POST /tasks/"


def task_location(task_id: uuid.UUID) -> str:
    return f"/tasks/{task_id}"


class TaskService:
    """Each operation is one unit of work of its own: reads on a read-only connection, changes in
    a session committed before the operation returns."""

    def __init__(
        self, database: Database, *, idempotency_ttl_seconds: int = 86_400, principal: Principal | None = None
    ) -> None:
        self.database = database
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        self.principal = principal

    async def list_tasks(
        self, *, status: str | None, query: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        async with self.database.reading() as connection:
            return await TaskRepository(connection).list(
                status=status, query=query, owner=owner_filter(self.principal), limit=limit, offset=offset
            )

    async def read_task(self, task_id: uuid.UUID) -> dict[str, Any]:
        """The task's columns (to answer with)."""
        async with self.database.reading() as connection:
            task = await TaskRepository(connection).read(task_id)
        if task is None or not can_see(self.principal, task["owner"]):
            raise NotFoundError(f"task {task_id} does not exist")
        return task

    async def create_task(self, data: TaskCreate, *, idempotency_key: str | None) -> CreatedResource:
        async with self.database.writing() as connection:
            claim = await claim_creation(
                connection,
                ttl_seconds=self.idempotency_ttl_seconds,
                scope=idempotency_scope(CREATE_SCOPE, self.principal),
                key=idempotency_key,
                request=data,
            )
            if isinstance(claim, CreatedResource):
                return claim
            now = utcnow()
            row = new_task_row(
                title=data.title,
                description=data.description,
                config=data.config.stored(),
                owner=owner_of_new(self.principal),
                created_at=now,
                updated_at=now,
            )
            await TaskRepository(connection).insert(row)
            location = task_location(row["id"])
            if claim is not None:
                await claim.complete(201, TaskRead.model_validate(row).model_dump(mode="json"), location)
        return CreatedResource(row, location, replayed=False)

    async def update_task(self, task_id: uuid.UUID, data: TaskUpdate, *, if_match: str | None) -> TaskRead:
        async with self.database.session() as session:
            task = await self._get_task(session, task_id)
            ensure_if_match(if_match, task.version)
            changes = data.model_dump(exclude_unset=True)
            if "title" in changes:
                task.title = changes["title"]
            if "description" in changes:
                task.description = changes["description"]
            if "config" in changes:
                task.config = merge_config(task.config, changes["config"] or {}, reset=changes["config"] is None)
            if changes:
                task.version += 1
                task.updated_at = utcnow()
            await session.commit()
            return TaskRead.model_validate(task)

    async def delete_task(self, task_id: uuid.UUID, *, if_match: str | None, cascade: bool) -> None:
        async with self.database.session() as session:
            tasks = TaskRepository(session)
            task = await self._get_task(session, task_id)
            ensure_if_match(if_match, task.version)
            active = await tasks.runs_in_status(task.id, run_states.ACTIVE_STATUSES)
            if active and not cascade:
                raise ConflictError(
                    f"task {task_id} has {len(active)} active run(s); cancel them or delete with ?cascade=true",
                    extra={"active_runs": [str(run.id) for run in active]},
                )
            for run in active:
                run.cancel_requested = True
                run_states.transition(run, run_states.CANCELLED)
            await session.flush()
            await tasks.delete(task)
            await session.commit()

    async def _get_task(self, session: AsyncSession, task_id: uuid.UUID) -> Task:
        """The task to change, row-locked (its version check and write are one step), with the
        caller's view of it (others' tasks do not exist)."""
        task = await TaskRepository(session).get(task_id, for_update=True)
        if task is None or not can_see(self.principal, task.owner):
            raise NotFoundError(f"task {task_id} does not exist")
        return task


def merge_config(current: dict[str, Any], patch: dict[str, Any], *, reset: bool = False) -> dict[str, Any]:
    """JSON merge patch (RFC 7396) of a task config, validated as a whole; ``reset`` (the patch
    was ``"config": null``) returns every key to its default."""
    merged = {} if reset else dict(current)
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
