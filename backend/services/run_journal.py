"""Recording what happens to a run: its events, and the task fields that mirror its status.

Every status change is written together with its event in the caller's transaction, so the
log and the row never disagree; events are published to live subscribers once it commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Run, Task
from backend.db.repositories.run_events import RunEventRepository
from backend.services import run_states
from backend.services.events import StreamEvent, stage_committed_event

# The event that ends a run's stream, per terminal status.
TERMINAL_EVENTS = {status: f"run.{status}" for status in run_states.TERMINAL_STATUSES}


async def record_event(session: AsyncSession, run: Run, event_type: str, data: dict[str, Any] | None = None) -> int:
    """Append an event to ``run``, which the caller's transaction holds row-locked (or created):
    the locked row's counter gives ``seq``, and the insert goes out with the commit's flush."""
    event = RunEventRepository(session).add_next(run, event_type, data or {})
    # Subscribers hear of it only after the caller's transaction commits (services/events.py).
    stage_committed_event(session, StreamEvent.from_row(event, run.task_id))
    return event.seq


async def change_status(
    session: AsyncSession, run: Run, new_status: str, *, data: dict[str, Any] | None = None
) -> None:
    """Move the run through the status machine, log it, and keep its task's summary in step."""
    previous = run.status
    run_states.transition(run, new_status)
    payload = {"status": new_status, "previous": previous, **(data or {})}
    await record_event(session, run, "run.status", payload)
    if new_status in TERMINAL_EVENTS:
        await record_event(session, run, TERMINAL_EVENTS[new_status], payload)
    task = await session.get(Task, run.task_id)
    if task is not None:
        mirror_run_on_task(task, run)


def mirror_run_on_task(task: Task, run: Run) -> None:
    """The task shows its latest run's status; terminal statuses count once (they are final)."""
    if task.last_run_id == run.id:
        task.status = run.status
        task.last_run_status = run.status
    if run.status == run_states.COMPLETED:
        task.successful_runs += 1
    elif run.status == run_states.FAILED:
        task.failed_runs += 1
