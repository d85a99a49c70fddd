"""Run rules for the API: creation, human approval, cancellation, artifacts and logs.

Execution itself happens in ``run_execution`` on the background runner; this module only moves
runs between states and records why. A non-admin API key sees and acts only on the runs it created
(and starts runs only on its own tasks); other runs answer 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.access import Principal, can_see, idempotency_scope, owner_filter, owner_of_new
from backend.db.engine import Database
from backend.db.models import Artifact, Run, RunEvent
from backend.db.repositories.artifacts import ArtifactRepository
from backend.db.repositories.run_events import RunEventRepository
from backend.db.repositories.run_creation import create_run_postgresql
from backend.db.repositories.runs import RunRepository, new_run_row
from backend.db.repositories.tasks import TaskRepository
from backend.db.types import utcnow
from backend.errors import ConflictError, NotFoundError
from backend.schemas.runs import ArtifactRead, RunApprove, RunCreate, RunRead, RunReject, RunUpdate
from backend.services import run_states
from backend.services.etags import ensure_if_match
from backend.services.idempotency import CreatedResource, claim_creation
from backend.services.run_archive import RunArchive, zip_artifacts
from backend.services.events import StreamEvent, publish_committed
from backend.services.run_journal import change_status, record_event
from backend.services.run_signals import CHANNEL as SIGNAL_CHANNEL
from backend.services.run_signals import RunSignals

CREATE_SCOPE = "POST /runs/"

# What a worker does with a queued run.
PLAN, REPLAN, EXECUTE = "plan", "replan", "execute"


def run_location(run_id: uuid.UUID) -> str:
    return f"/runs/{run_id}"


def run_read(run: Run, artifacts: Sequence[Artifact] = ()) -> RunRead:
    read = RunRead.model_validate(run)
    read.artifacts = [ArtifactRead.model_validate(item) for item in artifacts]
    return read


async def _read_with_artifacts(session: AsyncSession, run: Run) -> RunRead:
    """The answer for one run: the run and its artifacts, read in the operation's session."""
    return run_read(run, await ArtifactRepository(session).list(run.id))


def _one_active_run(task_id: uuid.UUID) -> ConflictError:
    return ConflictError(
        f"task {task_id} already has an active run; wait for it, cancel it, or set config.allow_concurrent_runs",
        extra={"task_id": str(task_id)},
    )


def _created_event(row: dict[str, Any]) -> RunEvent:
    """A new run's first event, as both creation paths write it."""
    return RunEvent(
        run_id=row["id"],
        seq=1,
        type="run.created",
        data={"task_id": str(row["task_id"]), "number": row["number"]},
        created_at=row["created_at"],
    )


def _created_body(row: dict[str, Any]) -> tuple[dict[str, Any], str]:
    return RunRead.model_validate({**row, "error": None}).model_dump(mode="json"), run_location(row["id"])


class RunService:
    """Each operation is one unit of work of its own: a session, committed (or rolled back)
    before the operation returns."""

    def __init__(
        self,
        database: Database,
        signals: RunSignals,
        *,
        approval_ttl_seconds: int,
        idempotency_ttl_seconds: int = 86_400,
        principal: Principal | None = None,
    ) -> None:
        self.database = database
        self.principal = principal
        self.signals = signals
        self.approval_ttl = timedelta(seconds=approval_ttl_seconds)
        self.idempotency_ttl_seconds = idempotency_ttl_seconds

    # Reading

    async def list_runs(
        self, *, task_id: uuid.UUID | None, status: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Run], int]:
        async with self.database.session() as session:
            return await RunRepository(session).list(
                task_id=task_id, status=status, owner=owner_filter(self.principal), limit=limit, offset=offset
            )

    async def get_run_read(self, run_id: uuid.UUID) -> RunRead:
        async with self.database.session() as session:
            run = await self._get_run(session, run_id)
            return await _read_with_artifacts(session, run)

    async def get_run_with_files(self, run_id: uuid.UUID) -> tuple[RunRead, Sequence[Artifact]]:
        """The run and its artifacts with their content, in one unit of work (an A2A task carries
        its files)."""
        async with self.database.session() as session:
            run = await self._get_run(session, run_id)
            artifacts = await ArtifactRepository(session).list_with_content(run_id)
            return run_read(run, artifacts), artifacts

    async def list_artifacts(self, run_id: uuid.UUID) -> Sequence[Artifact]:
        async with self.database.session() as session:
            await self._get_run(session, run_id)
            return await ArtifactRepository(session).list(run_id)

    async def get_artifact(self, run_id: uuid.UUID, name: str) -> Artifact:
        async with self.database.session() as session:
            await self._get_run(session, run_id)
            artifact = await ArtifactRepository(session).get(run_id, name)
        if artifact is None:
            raise NotFoundError(f"run {run_id} has no artifact named {name!r}")
        return artifact

    async def archive(self, run_id: uuid.UUID) -> RunArchive:
        """Every artifact of the run as one zip (the files so far, for a run still going)."""
        async with self.database.session() as session:
            run = await self._get_run(session, run_id)
            artifacts = await ArtifactRepository(session).list_with_content(run_id)
            return zip_artifacts(run.id, run.number, artifacts)

    async def list_events(self, run_id: uuid.UUID, *, after: int, limit: int) -> Sequence[RunEvent]:
        async with self.database.session() as session:
            await self._get_run(session, run_id)
            return await RunEventRepository(session).list_after(run_id, after, limit)

    # Creating and editing

    async def create_run(self, data: RunCreate, *, idempotency_key: str | None) -> CreatedResource:
        """One transaction: the run row, its first event and the task's counters are only
        written, so no ORM object is built for them. On PostgreSQL without an idempotency key it
        is one statement behind the task's lock (``run_creation``); otherwise Core statements."""
        if idempotency_key is None and self.database.engine.dialect.driver == "asyncpg":
            return await self._create_run_postgresql(data)
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
            runs = RunRepository(connection)
            task = await runs.lock_task_for_new_run(data.task_id)
            if task is None or not can_see(self.principal, task.owner):
                raise NotFoundError(f"task {data.task_id} does not exist")
            overrides = data.overrides.stored()
            concurrent = {**(task.config or {}), **overrides}.get("allow_concurrent_runs", False)
            active, highest = await runs.task_run_counts(task.id, sorted(run_states.ACTIVE_STATUSES))
            if active and not concurrent:
                raise _one_active_run(task.id)
            row = self._new_row(data, task.id, number=highest + 1)
            await runs.insert(row)
            event = _created_event(row)
            await RunEventRepository(connection).insert_numbered([event])
            await TaskRepository(connection).record_new_run(task.id, row["id"], run_states.QUEUED, row["created_at"])
            await self.signals.announce_queued(connection)
            body, location = _created_body(row)
            if claim is not None:
                await claim.complete(201, body, location)
        return self._created(event, task.id, body, location)

    async def _create_run_postgresql(self, data: RunCreate) -> CreatedResource:
        row = self._new_row(data, data.task_id, number=0)  # the statement numbers it
        async with self.database.engine.connect() as connection:
            creation = await create_run_postgresql(
                connection,
                row,
                restricted_to=owner_filter(self.principal),
                active_statuses=sorted(run_states.ACTIVE_STATUSES),
                overrides=row["overrides"],
                channel=SIGNAL_CHANNEL,
            )
        if not creation.found:
            raise NotFoundError(f"task {data.task_id} does not exist")
        if creation.number is None:
            raise _one_active_run(data.task_id)
        row["number"] = creation.number
        return self._created(_created_event(row), data.task_id, *_created_body(row))

    def _new_row(self, data: RunCreate, task_id: uuid.UUID, *, number: int) -> dict[str, Any]:
        now = utcnow()
        return new_run_row(
            task_id=task_id,
            number=number,
            owner=owner_of_new(self.principal),
            status=run_states.QUEUED,
            pending_action=PLAN,
            overrides=data.overrides.stored(),
            label=data.label,
            notes=data.notes,
            next_event_seq=2,
            created_at=now,
            queued_at=now,
            updated_at=now,
        )

    def _created(self, event: RunEvent, task_id: uuid.UUID, body: dict[str, Any], location: str) -> CreatedResource:
        """After the commit: the run's first event to its subscribers, a local runner woken."""
        publish_committed(self.database.sessions, [StreamEvent.from_row(event, task_id)])
        self.signals.deliver("queued")
        return CreatedResource(body, location, replayed=False)

    async def update_run(self, run_id: uuid.UUID, data: RunUpdate, *, if_match: str | None) -> RunRead:
        async with self.database.session() as session:
            run = await self._get_run(session, run_id, for_update=True)
            ensure_if_match(if_match, run.version)
            changes = data.model_dump(exclude_unset=True)
            for field, value in changes.items():
                setattr(run, field, value)
            if changes:
                run.version += 1
                run.updated_at = utcnow()
            await session.commit()
            return await _read_with_artifacts(session, run)

    async def delete_run(self, run_id: uuid.UUID, *, if_match: str | None) -> None:
        async with self.database.session() as session:
            run = await self._get_run(session, run_id, for_update=True)
            ensure_if_match(if_match, run.version)
            if run.status not in run_states.TERMINAL_STATUSES:
                raise ConflictError(
                    f"run {run_id} is {run.status}; cancel it before deleting it",
                    extra={"current_status": run.status},
                )
            await RunRepository(session).delete(run)
            await session.commit()

    # Human in the loop

    async def approve(self, run_id: uuid.UUID, data: RunApprove) -> RunRead:
        async with self.database.session() as session:
            run = await self._get_run(session, run_id, for_update=True)
            self._require(run, run_states.AWAITING_APPROVAL, "approve")
            run.pending_action = EXECUTE
            run.approval_comment = data.comment
            await record_event(session, run, "run.approved", {"comment": data.comment})
            await change_status(session, run, run_states.QUEUED)
            return await self._commit_queued(session, run)

    async def reject(self, run_id: uuid.UUID, data: RunReject) -> RunRead:
        async with self.database.session() as session:
            run = await self._get_run(session, run_id, for_update=True)
            self._require(run, run_states.AWAITING_APPROVAL, "reject")
            await record_event(session, run, "run.rejected", {"feedback": data.feedback, "replan": data.replan})
            if not data.replan:
                run.feedback = data.feedback
                run.error_code, run.error_message = "rejected", data.feedback or "the plan was rejected"
                await change_status(session, run, run_states.REJECTED)
                await session.commit()
                return await _read_with_artifacts(session, run)
            run.pending_action = REPLAN
            run.feedback = data.feedback
            await change_status(session, run, run_states.QUEUED)
            return await self._commit_queued(session, run)

    async def cancel(self, run_id: uuid.UUID) -> RunRead:
        async with self.database.session() as session:
            run = await self._get_run(session, run_id, for_update=True)
            if run.status in run_states.TERMINAL_STATUSES:
                raise ConflictError(
                    f"run {run_id} is already {run.status}", extra={"current_status": run.status}
                )
            run.cancel_requested = True
            run.error_code, run.error_message = "cancelled", "cancelled by request"
            await change_status(session, run, run_states.CANCELLED, data={"phase": run.phase})
            await self.signals.announce_cancelled(session, run.id)
            await session.commit()
            self.signals.deliver(f"cancel:{run.id}")
            return await _read_with_artifacts(session, run)

    async def _get_run(self, session: AsyncSession, run_id: uuid.UUID, *, for_update: bool = False) -> Run:
        """The run, as the caller may see it (others' runs do not exist)."""
        run = await RunRepository(session).get(run_id, for_update=for_update)
        if run is None or not can_see(self.principal, run.owner):
            raise NotFoundError(f"run {run_id} does not exist")
        return run

    def _require(self, run: Run, status: str, verb: str) -> None:
        if run.status != status:
            raise ConflictError(
                f"run {run.id} is {run.status}; only a run that is {status} can {verb}",
                extra={"current_status": run.status},
            )

    async def _commit_queued(self, session: AsyncSession, run: Run) -> RunRead:
        await self.signals.announce_queued(session)
        await session.commit()
        self.signals.deliver("queued")
        return await _read_with_artifacts(session, run)
