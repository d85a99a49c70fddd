"""SQL for runs: listing, numbering, and the claim/lease/reap queries of the background runner."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Row, Select, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Run, Task
from backend.db.types import column_default


class RunRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(
        self,
        *,
        task_id: uuid.UUID | None,
        status: str | None,
        owner: str | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Run], int]:
        conditions = []
        if task_id is not None:
            conditions.append(Run.task_id == task_id)
        if status:
            conditions.append(Run.status == status)
        if owner is not None:
            conditions.append(Run.owner == owner)
        total = await self.session.scalar(select(func.count()).select_from(Run).where(*conditions))
        rows = await self.session.scalars(
            select(Run).where(*conditions).order_by(Run.created_at.desc(), Run.id).limit(limit).offset(offset)
        )
        return rows.all(), int(total or 0)

    async def get(self, run_id: uuid.UUID, *, for_update: bool = False) -> Run | None:
        statement = select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def next_number(self, task_id: uuid.UUID) -> int:
        highest = await self.session.scalar(select(func.max(Run.number)).where(Run.task_id == task_id))
        return int(highest or 0) + 1

    async def lock_task_for_new_run(self, task_id: uuid.UUID) -> Row[Any] | None:
        """The task's owner and config, row-locked until the transaction ends so creations on one
        task are serialised (on SQLite ``BEGIN IMMEDIATE`` is the lock)."""
        return (await self.session.execute(LOCK_TASK_FOR_RUN, {"task_id": task_id})).first()

    async def task_run_counts(self, task_id: uuid.UUID, active: Collection[str]) -> tuple[int, int]:
        """(runs of the task in an ``active`` status, highest run number), in one statement; read
        after ``lock_task_for_new_run`` so it sees every run committed before the lock."""
        params = {"task_id": task_id, **{f"active_{index}": status for index, status in enumerate(active)}}
        active_count, highest = (await self.session.execute(_task_run_counts(len(active)), params)).one()
        return int(active_count or 0), int(highest or 0)

    async def insert(self, row: dict[str, Any]) -> None:
        """Insert a complete row (``new_run_row``) as one Core statement."""
        await self.session.execute(INSERT_RUN, row)

    async def add(self, run: Run) -> Run:
        self.session.add(run)
        await self.session.flush()
        return run

    async def delete(self, run: Run) -> None:
        await self.session.delete(run)
        await self.session.flush()

    async def count_active_for_task(self, task_id: uuid.UUID, statuses: Collection[str]) -> int:
        return int(
            await self.session.scalar(
                select(func.count()).select_from(Run).where(Run.task_id == task_id, Run.status.in_(list(statuses)))
            )
            or 0
        )

    async def lock_next_queued(self, limit: int = 1) -> Sequence[Row[Any]]:
        """The oldest claimable queued runs, row-locked (PostgreSQL skips rows others hold), with
        what their execution reads of the run and its task (``claim_statement``).

        On SQLite the surrounding ``BEGIN IMMEDIATE`` transaction is the lock.
        """
        return (await self.session.execute(self.claim_statement(limit))).all()

    @staticmethod
    def claim_statement(limit: int) -> Select[Any]:
        # ix_runs_status_queued_at yields the queued rows already in claim order, so the claim
        # reads ``limit`` index entries however many finished or queued runs the table holds.
        # The task's columns come along so the execution starts without reading anything.
        return (
            select(
                Run.id, Run.task_id, Run.status, Run.pending_action, Run.attempt, Run.checkpoint,
                Run.feedback, Run.overrides, Run.plan, Run.next_event_seq, Task.title, Task.description, Task.config,
            )
            .join(Task, Task.id == Run.task_id)
            .where(Run.status == "queued", Run.cancel_requested.is_(False))
            .order_by(Run.queued_at, Run.id)
            .limit(limit)
            .with_for_update(of=Run, skip_locked=True)
        )

    async def lease_claimed(self, claims: Sequence[dict[str, Any]], *, until: datetime, now: datetime) -> None:
        """Write the claims of rows ``lock_next_queued`` returned, one statement for all of them:
        each item is ``{"claimed": run id, "holder": lease holder, "new_status": status}``, and
        each run's status event takes the next number of its counter."""
        runs = Run.__table__.c
        await self.session.execute(
            update(Run.__table__)
            .where(runs.id == bindparam("claimed"))
            .values(
                status=bindparam("new_status"),
                lease_owner=bindparam("holder"),
                lease_expires_at=until,
                started_at=func.coalesce(runs.started_at, now),
                next_event_seq=runs.next_event_seq + 1,
                updated_at=now,
                version=runs.version + 1,
            ),
            list(claims),
        )

    async def update_leased(
        self,
        run_id: uuid.UUID,
        holder: str,
        statuses: Collection[str],
        values: dict[str, Any],
        *,
        reserve_events: int,
        now: datetime,
    ) -> tuple[int, uuid.UUID, int] | None:
        """Apply ``values`` to a run whose lease ``holder`` (one claim) still holds while it is in
        one of ``statuses``, and reserve ``reserve_events`` event numbers, in one statement (the
        row lock serialises event writers of the run).

        Returns ``(first reserved seq, task id, attempt)``, or None when the lease is gone: the run was
        cancelled, reaped, finished, or claimed again (by anyone, this process included).
        """
        statement = _leased_update(frozenset(values), len(statuses))
        params = {f"set_{column}": value for column, value in values.items()}
        params.update({f"status_{index}": status for index, status in enumerate(statuses)})
        params.update(run=run_id, holder=holder, reserve=reserve_events, now=now)
        row = (await self.session.execute(statement, params)).first()
        return None if row is None else (int(row[0]), row[1], int(row[2]))

    async def extend_leases(self, holders: dict[uuid.UUID, str], until: datetime) -> set[str]:
        """Extend the leases of ``{run id: lease holder}`` that are still held by that holder;
        returns the holders whose lease was extended (a re-claimed run has a new holder)."""
        if not holders:
            return set()
        result = await self.session.execute(
            update(Run)
            .where(
                Run.id.in_(list(holders)),
                Run.lease_owner.in_(list(holders.values())),
                Run.cancel_requested.is_(False),
            )
            .values(lease_expires_at=until)
            .returning(Run.lease_owner)
            .execution_options(synchronize_session=False)
        )
        return set(result.scalars().all())

    async def lock_expired_leases(self, now: datetime, statuses: Collection[str], limit: int = 50) -> Sequence[Run]:
        rows = await self.session.scalars(
            select(Run)
            .where(Run.status.in_(list(statuses)), Run.lease_expires_at < now)
            .order_by(Run.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return rows.all()

    async def lock_expired_approvals(self, now: datetime, limit: int = 50) -> Sequence[Run]:
        rows = await self.session.scalars(
            select(Run)
            .where(Run.status == "awaiting_approval", Run.approval_expires_at < now)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return rows.all()

    async def queue_stats(self) -> tuple[int, int, datetime | None]:
        """(queued runs, running-or-planning runs, when the oldest queued run was queued)."""
        queued, oldest = (
            await self.session.execute(
                select(func.count(), func.min(Run.queued_at)).where(Run.status == "queued")
            )
        ).one()
        running = await self.session.scalar(
            select(func.count()).select_from(Run).where(Run.status.in_(["planning", "running"]))
        )
        return int(queued or 0), int(running or 0), oldest


@functools.cache
def _leased_update(columns: frozenset[str], statuses: int) -> Any:
    """The journal's conditional UPDATE for one set of columns, built once (a Core statement on
    the table with bound parameters: no ORM bulk-update machinery, no statement built per write)."""
    runs = Run.__table__.c
    reserve = bindparam("reserve", type_=Integer)
    values: dict[str, Any] = {column: bindparam(f"set_{column}", type_=runs[column].type) for column in columns}
    values.setdefault("updated_at", bindparam("now", type_=runs.updated_at.type))
    values.update(next_event_seq=runs.next_event_seq + reserve, version=runs.version + 1)
    return (
        update(Run.__table__)
        .where(
            runs.id == bindparam("run", type_=runs.id.type),
            runs.lease_owner == bindparam("holder", type_=runs.lease_owner.type),
            runs.cancel_requested.is_(False),
            runs.status.in_([bindparam(f"status_{index}", type_=runs.status.type) for index in range(statuses)]),
        )
        .values(values)
        .returning(runs.next_event_seq - reserve, runs.task_id, runs.attempt)
    )


LOCK_TASK_FOR_RUN = (
    select(Task.id, Task.owner, Task.config).where(Task.id == bindparam("task_id")).with_for_update()
)
INSERT_RUN = Run.__table__.insert()


@functools.cache
def _task_run_counts(active: int) -> Any:
    runs = Run.__table__.c
    statuses = [bindparam(f"active_{index}", type_=runs.status.type) for index in range(active)]
    return select(func.count(case((runs.status.in_(statuses), 1))), func.max(runs.number)).where(
        runs.task_id == bindparam("task_id", type_=runs.task_id.type)
    )


_RUN_DEFAULTS = {column.key: column_default(column) for column in Run.__table__.columns}


def new_run_row(**values: Any) -> dict[str, Any]:
    """Every column of a new run: ``values``, and the table's Python-side defaults for the rest."""
    return {key: values[key] if key in values else default() for key, default in _RUN_DEFAULTS.items()}
