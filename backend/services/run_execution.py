"""Executing one claimed run on a worker: plan, wait for approval, or execute the team, with
every team event persisted and every finished phase checkpointed on the run row.

Everything an execution writes goes through one write-behind journal (``_EventRecorder``): the
team's events and the execution's own status changes are queued in order, and whatever queued
while the previous write was in flight goes out as one transaction: one conditional UPDATE of
the run (which checks the lease and reserves the events' ``seq`` numbers), the artifacts'
upserts, one INSERT of the events and, when the status changed, one UPDATE of the task. So a
model reply, the status change that follows it and the next phase's start cost one round of
statements, with no ORM objects and no read-back.

Every write checks, under the run's row lock, that this execution's claim still holds the lease
(``runs.lease_owner`` equals the claim's holder and the run is in the status this execution
left it in), so an execution that lost its lease (cancelled, or re-queued after a stall and
claimed again, even by the same process) can never write to the run again.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
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

from backend.db.repositories.artifacts import ArtifactSummary
from backend.db.repositories.journal import JournalBatch, write_journal
from backend.db.types import utcnow
from backend.observability.logs import bind_run_id
from backend.services import run_states
from backend.services.events import EventBroadcaster, StreamEvent, publish_committed
from backend.services.run_journal import TERMINAL_EVENTS
from backend.services.runs import EXECUTE, PLAN, REPLAN
from backend.services.team_provider import MGXTeamProvider

logger = logging.getLogger("backend.runner")

# A run's worker may write to it only while the run is in one of these statuses.
LEASED_STATUSES = (run_states.PLANNING, run_states.RUNNING)


class LeaseLostError(Exception):
    """This claim no longer holds the run's lease (cancelled, or re-claimed after a stall)."""


class RunInterrupted(Exception):
    """The runner is stopping: the run stops after the phase that just finished."""


@dataclass(frozen=True)
class RunLease:
    """One claim of one run: ``holder`` is what the claim wrote into ``runs.lease_owner``."""

    run_id: uuid.UUID
    holder: str


@dataclass(frozen=True)
class ClaimedRun:
    """One claim of one run and what its execution needs, read by the claim itself (so an
    execution starts without a read): ``holder`` is what the claim wrote into ``runs.lease_owner``,
    ``status`` what it moved the run to."""

    run_id: uuid.UUID
    holder: str
    task_id: uuid.UUID
    status: str
    action: str
    text: str = ""
    task_config: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None
    feedback: str | None = None
    plan: dict[str, Any] | None = None

    @property
    def lease(self) -> RunLease:
        return RunLease(self.run_id, self.holder)


@dataclass(frozen=True)
class StatusChange:
    """An execution's status change, queued in the journal behind the events before it.

    ``values`` are the run's other columns set with it, ``data`` extra fields of its
    ``run.status`` event, ``before`` / ``after`` events logged just before / after that event."""

    status: str
    values: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    before: tuple[tuple[str, dict[str, Any]], ...] = ()
    after: tuple[tuple[str, dict[str, Any]], ...] = ()


JournalItem = TeamEvent | StatusChange


def task_text(title: str, description: str) -> str:
    return f"{title}\n\n{description}".strip()


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

    async def execute(self, claim: ClaimedRun, should_stop: Callable[[], bool]) -> None:
        bind_run_id(claim.run_id)
        recorder = _EventRecorder(self, claim, should_stop)
        try:
            try:
                config = self.provider.team_config(claim.task_config, claim.overrides)
            except ValidationError as exc:
                await recorder.fail("invalid_config", f"the team configuration is invalid: {exc}")
                return
            team = self.provider.build_team(
                config, run_label=str(claim.run_id), on_event=recorder, checkpoint=claim.checkpoint
            )
            try:
                await self._run_team(claim, team, recorder)
            finally:
                # Stops an out-of-process engine's worker too (a cancelled run kills it here).
                await team.aclose()
        finally:
            recorder.close()

    async def _run_team(self, claim: ClaimedRun, team: TeamEngine, recorder: _EventRecorder) -> None:
        action = claim.action
        try:
            if action == PLAN and team.plan is not None:
                # Planned before a restart, but not yet handed to a human: don't plan again.
                action = await self._after_plan(recorder, team)
            elif action == PLAN:
                await team.analyze_and_plan(claim.text)
                action = await self._after_plan(recorder, team)
            elif action == REPLAN:
                await team.reject_plan(claim.feedback or "")
                action = await self._after_plan(recorder, team)
            if action == EXECUTE:
                team.approve_plan()
                result = await team.execute()
                await self._finish(recorder, team, result)
        except (LeaseLostError, RunInterrupted):
            raise
        except MGXError as exc:
            await recorder.fail(exc.code, exc.message, team)
        except ValidationError as exc:
            await recorder.fail("invalid_state", f"the run's saved state is unusable: {exc}", team)

    async def _after_plan(self, recorder: _EventRecorder, team: TeamEngine) -> str | None:
        """Wait for a human, or go straight on when the plan is approved automatically."""
        values = {"checkpoint": team.state, "usage": team.usage(), "timings": team.timings(), "pending_action": EXECUTE}
        if team.config.auto_approve_plan:
            # Not drained here: it goes out with the plan's last events and the next phase's start.
            recorder.change_status(
                StatusChange(run_states.RUNNING, values, before=(("run.approved", {"automatic": True}),))
            )
            return EXECUTE
        expires_at = utcnow() + self.approval_ttl
        recorder.change_status(
            StatusChange(
                run_states.AWAITING_APPROVAL,
                {**values, "approval_expires_at": expires_at, "lease_owner": None, "lease_expires_at": None},
                after=(
                    (
                        "run.approval_required",
                        {"plan": recorder.plan, "expires_at": expires_at.isoformat()},
                    ),
                ),
            )
        )
        await recorder.drain()
        return None

    async def _finish(self, recorder: _EventRecorder, team: TeamEngine, result: TeamResult) -> None:
        values: dict[str, Any] = {
            "checkpoint": team.state,
            "result": {**result_summary(result), "engine": team.name},
            "usage": result.usage,
            "timings": result.timings,
            "phase": None,
        }
        if result.approved:
            change = StatusChange(run_states.COMPLETED, values, data={"outcome": result.outcome})
        else:
            values["error_code"] = result.outcome
            values["error_message"] = result.stop_reason or f"the team stopped: {result.outcome}"
            change = StatusChange(run_states.FAILED, values, data={"outcome": result.outcome})
        recorder.change_status(change)
        await recorder.drain()

    async def record(
        self,
        run_id: uuid.UUID,
        holder: str,
        items: Sequence[JournalItem],
        emitted_at: Sequence[datetime] | None = None,
        *,
        status: str | None = None,
    ) -> str | None:
        """Persist journal items (team events and status changes), and what they change on the
        run, in one transaction; returns the run's status after them.

        ``status`` is the status this execution left the run in (required for a status change;
        without it any leased status will do). One conditional UPDATE both checks the lease and
        reserves the events' ``seq`` numbers, so a batch costs a handful of statements however
        many events it holds. Each event's ``created_at`` is when it was queued (``emitted_at``:
        for a team event, when the team emitted it), else the time of this write.
        """
        now = utcnow()
        emitted_at = list(emitted_at) if emitted_at is not None else [now] * len(items)
        values: dict[str, Any] = {}
        artifacts: list[ArtifactProduced] = []
        entries: list[tuple[JournalItem | str, dict[str, Any] | None, datetime]] = []
        current = status
        for item, at in zip(items, emitted_at, strict=True):
            if isinstance(item, StatusChange):
                if current is None:
                    raise ValueError("a status change needs the run's current status")
                values.update(item.values)
                values.update(run_states.transition_values(current, item.status, at))
                payload = {"status": item.status, "previous": current, **item.data}
                entries.extend((kind, data, at) for kind, data in item.before)
                entries.append(("run.status", payload, at))
                if item.status in TERMINAL_EVENTS:
                    entries.append((TERMINAL_EVENTS[item.status], payload, at))
                entries.extend((kind, data, at) for kind, data in item.after)
                current = item.status
                continue
            if isinstance(item, PhaseStarted) and item.phase != "planning":
                values["phase"] = item.phase
            elif isinstance(item, PhaseFinished):
                values["checkpoint"] = item.checkpoint
                for key in ("usage", "timings"):
                    if key in item.checkpoint:
                        values[key] = item.checkpoint[key]
            elif isinstance(item, PlanReady):
                values["plan"] = item.plan
                values["complexity"] = item.plan.get("complexity")
            elif isinstance(item, UsageUpdated):
                values["usage"] = item.usage
            elif isinstance(item, ArtifactProduced):
                artifacts.append(item)
            entries.append((item, None, at))
        summaries = {
            id(artifact): ArtifactSummary.of(artifact.name, artifact.media_type, artifact.content.encode())
            for artifact in artifacts
        }
        batch = JournalBatch(
            run_id=run_id,
            holder=holder,
            statuses=(status,) if status is not None else LEASED_STATUSES,
            values=values,
            now=now,
            artifacts=[(summaries[id(artifact)], artifact.content.encode()) for artifact in artifacts],
            events=[
                (item, data, at) if isinstance(item, str) else (*_journal_entry(item, summaries), at)
                for item, data, at in entries
            ],
            mirror_status=current if current != status else None,
        )
        written = await write_journal(self.session_factory.kw["bind"], batch)
        if written is None:
            raise LeaseLostError(f"run {run_id} is no longer leased to {holder}")
        committed = [
            StreamEvent(run_id, written.task_id, written.first_seq + index, kind, data, at)
            for index, (kind, data, at) in enumerate(written.events)
        ]
        publish_committed(self.session_factory, committed)
        return current


def _journal_entry(event: TeamEvent, artifacts: dict[int, ArtifactSummary]) -> tuple[str, dict[str, Any]]:
    """The run event (type, data) that records a team event."""
    if isinstance(event, PhaseStarted):
        return "run.phase", {"phase": event.phase, "state": "started", "round": event.round}
    if isinstance(event, PhaseFinished):
        return "run.phase", {"phase": event.phase, "state": "finished", "seconds": event.seconds}
    if isinstance(event, PlanReady):
        return "run.plan_ready", {"plan": event.plan}
    if isinstance(event, ArtifactProduced):
        return "artifact.created", asdict(artifacts[id(event)])
    if isinstance(event, UsageUpdated):
        return "run.usage", event.usage
    return event.type, _payload(event)


def _payload(event: TeamEvent) -> dict[str, Any]:
    """The event's fields as plain JSON values, detached from the event: one encode and decode,
    with nested dataclasses (an ``AgentMessage``'s ``LLMCall``) taken field by field on the way
    (``dataclasses.asdict`` first deep-copied everything that the round trip copies again)."""
    return json.loads(json.dumps(_fields(event), default=_json_default))


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(item.name for item in fields(kind))


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in _field_names(type(value))}


def _json_default(value: Any) -> Any:
    return _fields(value) if is_dataclass(value) and not isinstance(value, type) else str(value)


class _EventRecorder:
    """The team's event callback for one run on one worker: a write-behind journal.

    Events are queued and written by one flusher task, so the team is not held up by the
    database and everything it emits between two awaits of real work (typically one LLM
    reply: message, usage, artifacts, phase end and the next phase's start) lands in one
    transaction, together with a status change the executor queued meanwhile. Order is kept
    (one writer per run). A failed write (lease lost, database error) is raised to the team at
    its next event, and by ``drain``, which the executor awaits before it lets the run go.
    """

    def __init__(self, executor: RunExecutor, claim: ClaimedRun, should_stop: Callable[[], bool]) -> None:
        self.executor = executor
        self.run_id = claim.run_id
        self.task_id = claim.task_id
        self.holder = claim.holder
        # The status this execution left the run in: every write requires it still.
        self.status = claim.status
        # The run's plan as stored: the claim's, until the team drafts another.
        self.plan = claim.plan
        self.should_stop = should_stop
        # Each item with the moment it was queued (for a team event, when the team emitted it):
        # its events' created_at, and where delivery latency starts.
        self._pending: list[tuple[JournalItem, datetime]] = []
        self._last_emitted = utcnow()
        self._flusher: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._status_queued = False

    async def __call__(self, event: TeamEvent) -> None:
        if isinstance(event, AgentDelta):
            # Live token deltas are streamed, not stored.
            if self.executor.events is not None:
                self.executor.events.publish_delta(self.run_id, self.task_id, _payload(event))
            return
        self._enqueue(event)
        if isinstance(event, PlanReady):
            self.plan = event.plan
        if isinstance(event, PhaseStarted) and self._status_queued:
            # A status change is stored before the phase that follows it asks the model
            # anything, in one transaction with that phase's start.
            await self.drain()
        if isinstance(event, PhaseFinished) and self.should_stop():
            # Stopping: the checkpoint just queued must be stored before the run is released.
            await self.drain()
            raise RunInterrupted(f"stopping after phase {event.phase}")

    def change_status(self, change: StatusChange) -> None:
        """Queue a status change behind the events before it; it is stored by the next phase's
        start at the latest (``drain`` to wait for it)."""
        self._enqueue(change)
        self._status_queued = True

    async def fail(self, code: str, message: str, team: TeamEngine | None = None) -> None:
        logger.warning("run %s failed: %s: %s", self.run_id, code, message)
        values: dict[str, Any] = {"error_code": code, "error_message": message}
        if team is not None:
            values.update(usage=team.usage(), timings=team.timings())
        self.change_status(
            StatusChange(run_states.FAILED, values, data={"error": {"code": code, "message": message}})
        )
        await self.drain()

    def _enqueue(self, item: JournalItem) -> None:
        self._raise_failure()
        # Never earlier than the item before it, whatever the wall clock does.
        self._last_emitted = max(utcnow(), self._last_emitted)
        self._pending.append((item, self._last_emitted))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"journal-{self.run_id}")

    async def drain(self) -> None:
        """Wait until every queued item is stored; raise what made a write fail."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        self._status_queued = False
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
                self.status = await self.executor.record(
                    self.run_id,
                    self.holder,
                    [item for item, _ in batch],
                    [emitted for _, emitted in batch],
                    status=self.status,
                )
            except Exception as exc:
                self._failure = exc
                self._pending.clear()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
