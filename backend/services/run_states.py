"""The run status machine: every status change of a run goes through ``transition``.

```
queued -> planning -> awaiting_approval -approve-> queued -> running -> completed|failed|cancelled
                                         -reject(feedback)-> queued (replan)
                                         -reject(no replan)-> rejected
                                         -approval timeout-> expired
any non-terminal -> cancelled
```
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backend.db.models import Run
from backend.db.types import utcnow
from backend.errors import ConflictError

QUEUED = "queued"
PLANNING = "planning"
AWAITING_APPROVAL = "awaiting_approval"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
REJECTED = "rejected"
EXPIRED = "expired"

TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED, REJECTED, EXPIRED})
ACTIVE_STATUSES = frozenset({QUEUED, PLANNING, AWAITING_APPROVAL, RUNNING})
ALL_STATUSES = TERMINAL_STATUSES | ACTIVE_STATUSES

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    # queued -> queued is a lease returned by a crashed or stopping worker.
    QUEUED: frozenset({PLANNING, RUNNING, QUEUED, CANCELLED, FAILED}),
    # planning -> running when the plan is approved automatically (auto_approve_plan).
    PLANNING: frozenset({AWAITING_APPROVAL, RUNNING, QUEUED, CANCELLED, FAILED}),
    AWAITING_APPROVAL: frozenset({QUEUED, REJECTED, EXPIRED, CANCELLED}),
    RUNNING: frozenset({COMPLETED, FAILED, CANCELLED, QUEUED}),
}


def can_transition(current: str, new: str) -> bool:
    return new in ALLOWED_TRANSITIONS.get(current, frozenset())


def transition_values(current: str, new_status: str, now: datetime) -> dict[str, Any]:
    """The columns a change from ``current`` to ``new_status`` sets (``version`` aside), or
    ``ConflictError`` naming the current status. One place for what a status change means, for
    the ORM path (``transition``) and the runner's single-statement writes alike."""
    if not can_transition(current, new_status):
        raise ConflictError(
            f"the run is {current}; it cannot become {new_status}", extra={"current_status": current}
        )
    values: dict[str, Any] = {"status": new_status, "updated_at": now}
    if current == AWAITING_APPROVAL:
        values["approval_expires_at"] = None
    if new_status == QUEUED:
        values["queued_at"] = now
    if new_status in TERMINAL_STATUSES:
        values.update(finished_at=now, lease_owner=None, lease_expires_at=None, approval_expires_at=None)
    return values


def transition(run: Run, new_status: str) -> None:
    """Move ``run`` to ``new_status`` or raise ``ConflictError`` naming the current status."""
    if not can_transition(run.status, new_status):
        raise ConflictError(
            f"run {run.id} is {run.status}; it cannot become {new_status}",
            extra={"current_status": run.status},
        )
    for column, value in transition_values(run.status, new_status, utcnow()).items():
        setattr(run, column, value)
    run.version += 1
