"""Executing one claimed run on a worker: plan, wait for approval, or execute the team, with
every team event persisted and every finished phase checkpointed on the run row.

Every write checks, under the run's row lock, that this execution's claim still holds the lease
(``runs.lease_owner`` equals the claim's holder; status changes re-read the row, event batches
use one conditional UPDATE), so an execution that lost its lease (cancelled, or re-queued after
a stall and claimed again, even by the same process) can never write to the run again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from mgx_agent.errors import MGXError
from mgx_agent.events import (
    AgentDelta,
    ArtifactProduced,
    PhaseFinished,
    PhaseStarted,
    PlanReady,
    TeamEvent,
    UsageUpdated,
)
from mgx_agent.engines.base import TeamEngine
from mgx_agent.team import TeamResult
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.models import Run, Task
from backend.db.repositories.artifacts import ArtifactRepository
from backend.db.repositories.runs import RunRepository
from backend.db.types import utcnow
from backend.observability.logs import bind_run_id
from backend.services import run_states
from backend.db.repositories.run_events import RunEventRepository
from backend.services.events import EventBroadcaster, StreamEvent, stage_committed_event
from backend.services.run_journal import change_status, record_event
from backend.services.runs import EXECUTE, PLAN, REPLAN
from backend.services.team_provider import MGXTeamProvider

logger = logging.getLogger("backend.runner")

# A run's worker may write to it only while the run is in one of these statuses.
LEASED_STATUSES = (run_states.PLANNING, run_states.RUNNING)


class LeaseLostError(Exception):
    """This claim no longer holds the run's lease (cancelled, or re-claimed after a stall)."""


class RunInterrupted(Exception):
    """The runner is stopping: the run stops after the phase that just finished."""


def task_text(task: Task) -> str:
    return f"{task.title}\n\n{task.description}".strip()


def result_summary(result: TeamResult) -> dict[str, Any]:
    report = result.sandbox_report or {}
    return {
        "outcome": result.outcome,
        "approved": result.approved,
        "rounds": result.rounds,
        "complexity": result.complexity,
        "demo": result.demo,
        "stop_reason": result.stop_reason,
        "verification": result.verification,
        "files": [source.path for source in result.files],
        "tests": [source.path for source in result.tests],
        "sandbox": {key: report.get(key) for key in ("passed", "failed", "errors", "timed_out") if key in report},
        "review": result.review.to_dict() if result.review else None,
    }


class RunExecutor:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        provider: MGXTeamProvider,
        *,
        approval_ttl_seconds: int,
        events: EventBroadcaster | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.provider = provider
        # Where live-only token deltas go; persisted events publish themselves on commit.
        self.events = events
        self.approval_ttl = timedelta(seconds=approval_ttl_seconds)

    async def execute(self, run_id: uuid.UUID, holder: str, should_stop: Callable[[], bool]) -> None:
        bind_run_id(run_id)
        async with self.session_factory() as session:
            run = await self._owned_run(session, run_id, holder)
            task = await session.get(Task, run.task_id)
            assert task is not None  # runs are deleted with their task
            action, checkpoint, feedback = run.pending_action or PLAN, run.checkpoint, run.feedback
            try:
                config = self.provider.team_config(task.config, run.overrides)
            except ValidationError as exc:
                await self._fail(session, run, "invalid_config", f"the team configuration is invalid: {exc}")
                return
            text, task_id = task_text(task), task.id
            await session.commit()

        recorder = _EventRecorder(self, run_id, task_id, holder, should_stop)
        team = self.provider.build_team(
            config,
            run_label=str(run_id),
            on_event=recorder,
            checkpoint=checkpoint,
        )
        try:
            if action == PLAN and team.plan is not None:
                # Planned before a restart, but not yet handed to a human: don't plan again.
                action = await self._after_plan(run_id, holder, team)
            elif action == PLAN:
                await team.analyze_and_plan(text)
                await recorder.drain()
                action = await self._after_plan(run_id, holder, team)
            elif action == REPLAN:
                await team.reject_plan(feedback or "")
                await recorder.drain()
                action = await self._after_plan(run_id, holder, team)
            if action == EXECUTE:
                team.approve_plan()
                result = await team.execute()
                await recorder.drain()
                await self._finish(run_id, holder, team, result)
        except (LeaseLostError, RunInterrupted):
            raise
        except MGXError as exc:
            await recorder.drain()
            await self._fail_owned(run_id, holder, exc.code, exc.message, team)
        except ValidationError as exc:
            await recorder.drain()
            await self._fail_owned(run_id, holder, "invalid_state", f"the run's saved state is unusable: {exc}", team)
        finally:
            # Stops an out-of-process engine's worker too (a cancelled run kills it here).
            await team.aclose()
            recorder.close()

    async def _after_plan(self, run_id: uuid.UUID, holder: str, team: TeamEngine) -> str | None:
        """Wait for a human, or go straight on when the plan is approved automatically."""
        async with self.session_factory() as session:
            run = await self._owned_run(session, run_id, holder)
            run.checkpoint = team.state
            run.usage = team.usage()
            run.timings = team.timings()
            if team.config.auto_approve_plan:
                run.pending_action = EXECUTE
                await record_event(session, run, "run.approved", {"automatic": True})
                await change_status(session, run, run_states.RUNNING)
                await session.commit()
                return EXECUTE
            run.pending_action = EXECUTE
            await change_status(session, run, run_states.AWAITING_APPROVAL)
            run.approval_expires_at = utcnow() + self.approval_ttl
            run.lease_owner = run.lease_expires_at = None
            await record_event(
                session,
                run,
                "run.approval_required",
                {"plan": run.plan, "expires_at": run.approval_expires_at.isoformat()},
            )
            await session.commit()
            return None

    async def _finish(self, run_id: uuid.UUID, holder: str, team: TeamEngine, result: TeamResult) -> None:
        async with self.session_factory() as session:
            run = await self._owned_run(session, run_id, holder)
            run.checkpoint = team.state
            run.result = {**result_summary(result), "engine": team.name}
            run.usage = result.usage
            run.timings = result.timings
            run.phase = None
            if result.approved:
                await change_status(session, run, run_states.COMPLETED, data={"outcome": result.outcome})
            else:
                run.error_code = result.outcome
                run.error_message = result.stop_reason or f"the team stopped: {result.outcome}"
                await change_status(session, run, run_states.FAILED, data={"outcome": result.outcome})
            await session.commit()

    async def _fail_owned(
        self, run_id: uuid.UUID, holder: str, code: str, message: str, team: TeamEngine | None
    ) -> None:
        async with self.session_factory() as session:
            run = await self._owned_run(session, run_id, holder)
            if team is not None:
                run.usage = team.usage()
                run.timings = team.timings()
            await self._fail(session, run, code, message)

    async def _fail(self, session: AsyncSession, run: Run, code: str, message: str) -> None:
        logger.warning("run %s failed: %s: %s", run.id, code, message)
        run.error_code, run.error_message = code, message
        await change_status(session, run, run_states.FAILED, data={"error": {"code": code, "message": message}})
        await session.commit()

    async def _owned_run(self, session: AsyncSession, run_id: uuid.UUID, holder: str) -> Run:
        run = await RunRepository(session).get(run_id, for_update=True)
        if (
            run is None
            or run.lease_owner != holder
            or run.cancel_requested
            or run.status not in LEASED_STATUSES
        ):
            await session.rollback()
            raise LeaseLostError(f"run {run_id} is no longer leased to {holder}")
        return run

    async def record(self, run_id: uuid.UUID, holder: str, events: Sequence[TeamEvent]) -> None:
        """Persist team events, and what they change on the run, in one transaction.

        One conditional UPDATE both checks the lease and reserves the events' ``seq`` numbers,
        so a batch costs a handful of statements however many events it holds.
        """
        values: dict[str, Any] = {}
        artifacts: list[ArtifactProduced] = []
        for event in events:
            if isinstance(event, PhaseStarted) and event.phase != "planning":
                values["phase"] = event.phase
            elif isinstance(event, PhaseFinished):
                values["checkpoint"] = event.checkpoint
                for key in ("usage", "timings"):
                    if key in event.checkpoint:
                        values[key] = event.checkpoint[key]
            elif isinstance(event, PlanReady):
                values["plan"] = event.plan
                values["complexity"] = event.plan.get("complexity")
            elif isinstance(event, UsageUpdated):
                values["usage"] = event.usage
            elif isinstance(event, ArtifactProduced):
                artifacts.append(event)
        async with self.session_factory() as session:
            now = utcnow()
            # The run row first (as every writer of a run locks it), then its artifacts.
            reserved = await RunRepository(session).update_leased(
                run_id, holder, LEASED_STATUSES, values, reserve_events=len(events), now=now
            )
            if reserved is None:
                await session.rollback()
                raise LeaseLostError(f"run {run_id} is no longer leased to {holder}")
            first_seq, task_id, attempt = reserved
            artifact_data = {}
            for artifact in artifacts:
                summary = await ArtifactRepository(session).save(
                    run_id, artifact.name, artifact.media_type, artifact.content.encode(), now=now
                )
                artifact_data[id(artifact)] = asdict(summary)
            items = [_journal_entry(event, artifact_data) for event in events]
            # Which execution said it: after a lost lease the redo says it again under a new attempt.
            items = [
                (kind, {**data, "attempt": attempt}) if kind == "agent.message" else (kind, data) for kind, data in items
            ]
            for row in await RunEventRepository(session).insert_reserved(run_id, first_seq, items, now=now):
                stage_committed_event(session, StreamEvent.from_row(row, task_id))
            await session.commit()


def _journal_entry(event: TeamEvent, artifact_data: dict[int, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The run event (type, data) that records a team event."""
    if isinstance(event, PhaseStarted):
        return "run.phase", {"phase": event.phase, "state": "started", "round": event.round}
    if isinstance(event, PhaseFinished):
        return "run.phase", {"phase": event.phase, "state": "finished", "seconds": event.seconds}
    if isinstance(event, PlanReady):
        return "run.plan_ready", {"plan": event.plan}
    if isinstance(event, ArtifactProduced):
        return "artifact.created", artifact_data[id(event)]
    if isinstance(event, UsageUpdated):
        return "run.usage", event.usage
    return event.type, _payload(event)


def _payload(event: TeamEvent) -> dict[str, Any]:
    data = event.to_dict()
    data.pop("type", None)
    return json.loads(json.dumps(data, default=str))


class _EventRecorder:
    """The team's event callback for one run on one worker: a write-behind journal.

    Events are queued and written by one flusher task, so the team is not held up by the
    database and everything it emits between two awaits of real work (typically one LLM
    reply: message, usage, artifacts, phase end and the next phase's start) lands in one
    transaction. Order is kept (one writer per run). A failed write (lease lost, database
    error) is raised to the team at its next event, and by ``drain``, which the executor
    awaits before every status change so the log never shows a status ahead of its events.
    """

    def __init__(
        self, executor: RunExecutor, run_id: uuid.UUID, task_id: uuid.UUID, holder: str, should_stop: Callable[[], bool]
    ) -> None:
        self.executor = executor
        self.run_id = run_id
        self.task_id = task_id
        self.holder = holder
        self.should_stop = should_stop
        self._pending: list[TeamEvent] = []
        self._flusher: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def __call__(self, event: TeamEvent) -> None:
        if isinstance(event, AgentDelta):
            # Live token deltas are streamed, not stored.
            if self.executor.events is not None:
                self.executor.events.publish_delta(self.run_id, self.task_id, _payload(event))
            return
        self._raise_failure()
        self._pending.append(event)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"journal-{self.run_id}")
        if isinstance(event, PhaseFinished) and self.should_stop():
            # Stopping: the checkpoint just queued must be stored before the run is released.
            await self.drain()
            raise RunInterrupted(f"stopping after phase {event.phase}")

    async def drain(self) -> None:
        """Wait until every queued event is stored; raise what made a write fail."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        self._raise_failure()

    def close(self) -> None:
        """Stop writing (the run's task was cancelled or failed); queued events are dropped."""
        if self._flusher is not None:
            self._flusher.cancel()
        self._pending.clear()

    async def _flush(self) -> None:
        while self._pending and self._failure is None:
            batch, self._pending = self._pending, []
            try:
                await self.executor.record(self.run_id, self.holder, batch)
            except Exception as exc:
                self._failure = exc
                self._pending.clear()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
