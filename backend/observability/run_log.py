"""One INFO line per run status change, so a person reading the server's log sees each run
start, wait for approval, finish or fail.

``RunTransitionLog`` observes the events this process commits (the broadcaster's commit
observers, like the run metrics): a status change that rolled back is never logged, and each
committed one is logged once, by the process that made it. Every line carries the run's id as
``run_id`` (text: ``run_id=...`` at the end; JSON: a field), whoever made the change (a runner
worker or an API request).

    run queued -> planning task=1f0c... run_id=8d0c...
    run running -> failed: revision_limit (...) cost=$0.0042 task=1f0c... run_id=8d0c...
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from backend.services import run_states
from backend.services.events import StreamEvent

logger = logging.getLogger("backend.runs")

# Runs whose cost is remembered between their usage events and their end, at most.
_MAX_TRACKED_RUNS = 10_000


class RunTransitionLog:
    def __init__(self) -> None:
        self._cost_by_run: dict[uuid.UUID, float] = {}

    def observe(self, events: Sequence[StreamEvent]) -> None:
        """Log each committed ``run.status`` event. Runs inside the commit: cheap, never raises."""
        for event in events:
            try:
                if event.type == "run.usage":
                    self._remember_cost(event)
                elif event.type == "run.status":
                    self._log_transition(event)
                elif event.type == "run.created":
                    logger.info("run created: queued task=%s", event.task_id, extra={"run_id": str(event.run_id)})
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                logger.warning("run log: ignoring a malformed %s event: %s", event.type, exc)

    def _remember_cost(self, event: StreamEvent) -> None:
        total = (event.data.get("total") or {}) if isinstance(event.data, dict) else {}
        if "cost_usd" in total:
            if len(self._cost_by_run) >= _MAX_TRACKED_RUNS and event.run_id not in self._cost_by_run:
                self._cost_by_run.pop(next(iter(self._cost_by_run)))
            self._cost_by_run[event.run_id] = float(total["cost_usd"])

    def _log_transition(self, event: StreamEvent) -> None:
        data: dict[str, Any] = event.data
        status = str(data["status"])
        line = f"run {data.get('previous', '?')} -> {status}{_reason(data)}"
        if status in run_states.TERMINAL_STATUSES:
            cost = self._cost_by_run.pop(event.run_id, None)
            if cost is not None:
                line += f" cost=${cost:.4f}"
        logger.info("%s task=%s", line, event.task_id, extra={"run_id": str(event.run_id)})


def _reason(data: dict[str, Any]) -> str:
    """Why the status changed, when the event says: an error, an outcome, a stated reason."""
    error = data.get("error")
    if isinstance(error, dict) and error.get("code"):
        message = str(error.get("message") or "").splitlines()[0][:200] if error.get("message") else ""
        return f": {error['code']}" + (f" ({message})" if message else "")
    if data.get("reason"):
        return f" ({data['reason']})"
    if data.get("outcome"):
        return f" (outcome {data['outcome']})"
    if isinstance(data.get("attempt"), int) and data["attempt"] > 0:  # counted from 0: a retry
        return f" (attempt {data['attempt'] + 1})"
    return ""
