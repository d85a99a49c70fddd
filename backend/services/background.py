"""BackgroundTaskRunner: executes up to ``RUNNER_WORKERS`` runs at a time in the API process,
claiming queued runs from the database, plus ad-hoc background jobs (``submit`` / ``get_status``).

Durability comes from the database, not from memory: a claim is an atomic conditional update
that sets a lease; a heartbeat extends the leases this process holds; a reaper (in every
process) re-queues runs whose lease expired, failing them after ``RUNNER_MAX_ATTEMPTS``, and
expires plans nobody approved in time. Shutdown stops claiming, gives in-flight phases a grace
period, then returns the rest to the queue.

A lease belongs to one claim, not to the process: every claim writes a fresh holder
(``<process>/<claim token>``) into ``runs.lease_owner`` and every write of the execution checks
it. A run re-queued while this process stalled and claimed again by the same process therefore
has a new holder, and the stalled execution's next write is refused (``LeaseLostError``). A
lease also lapses by this process's own clock: a run whose lease could not be extended for
``RUNNER_LEASE_SECONDS`` (database down, process frozen) is stopped here, since by then the
reaper of any process may hand it to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.failures import is_database_unavailable, unavailable_cause
from backend.db.repositories.idempotency import IdempotencyRepository
from backend.db.models import RunEvent
from backend.db.repositories.run_events import RunEventRepository
from backend.db.repositories.runs import RunRepository
from backend.db.repositories.tasks import TaskRepository
from backend.db.types import utcnow
from backend.observability.dependencies import DependencyWatch
from backend.observability.logs import bind_run_id
from backend.services import run_states
from backend.services.run_execution import ClaimedRun, LeaseLostError, RunExecutor, RunInterrupted, RunLease, task_text
from backend.services.events import StreamEvent, stage_committed_event
from backend.services.run_journal import change_status
from backend.services.run_signals import RunSignals
from backend.services.run_spend import add_abandoned, spent_after_checkpoint
from backend.services.runs import PLAN, REPLAN

logger = logging.getLogger("backend.runner")

JOB_HISTORY = 1000
DISPATCHER_TASK_NAME = "runner-dispatcher"
# At most this many queued runs are leased in one claim transaction.
CLAIM_BATCH = 16
# How long stopping workers get to hand their unfinished runs back to the queue.
RELEASE_TIMEOUT_SECONDS = 10


@dataclass
class RunnerConfig:
    workers: int = 2
    lease_seconds: float = 30
    heartbeat_seconds: float = 1
    poll_seconds: float = 2
    max_attempts: int = 3
    shutdown_grace_seconds: float = 20
    idempotency_ttl_seconds: int = 86_400


@dataclass
class JobStatus:
    id: str
    name: str
    status: str = "pending"  # pending | running | completed | failed | cancelled
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    result: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "result"} | {
            "result": self.result if isinstance(self.result, str | int | float | bool | dict | list | None) else repr(self.result)
        }


class BackgroundTaskRunner:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        executor: RunExecutor,
        signals: RunSignals,
        config: RunnerConfig,
        database_watch: DependencyWatch | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.executor = executor
        self.signals = signals
        self.config = config
        self.database_watch = database_watch or DependencyWatch("database", logger, unavailable_cause)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started = False
        self.stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self._active: dict[RunLease, asyncio.Task[None]] = {}
        # When each lease lapses by this process's clock unless the heartbeat extends it.
        self._lease_deadlines: dict[RunLease, float] = {}
        self._slots = asyncio.Semaphore(config.workers)
        self._slot_tasks: set[asyncio.Task[None]] = set()
        self._halt = asyncio.Event()
        self._cancelled_by_request: set[RunLease] = set()
        self._lost: set[RunLease] = set()
        self._jobs: OrderedDict[str, JobStatus] = OrderedDict()
        self._job_tasks: dict[str, asyncio.Task[Any]] = {}
        signals.on_cancel(self._cancel_local)

    # Lifecycle

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        self.stopping = False
        self._slots = asyncio.Semaphore(self.config.workers)
        self._halt = asyncio.Event()
        if self.config.workers:
            self._loops.append(asyncio.create_task(self._dispatch(), name=DISPATCHER_TASK_NAME))
        self._loops.append(asyncio.create_task(self._heartbeat(), name="runner-heartbeat"))
        self._loops.append(asyncio.create_task(self._lease_watchdog(), name="runner-lease-watchdog"))
        self._loops.append(asyncio.create_task(self._reaper(), name="runner-reaper"))
        logger.info("runner started: %d worker(s), owner %s", self.config.workers, self.owner)

    async def stop(self) -> None:
        """Stop claiming, let in-flight phases finish within the grace period, release the rest."""
        if not self.started:
            return
        self.stopping = True
        self.signals.queued_event.set()
        in_flight = list(self._active.values())
        if in_flight:
            logger.info("runner stopping: waiting up to %ss for %d run(s)", self.config.shutdown_grace_seconds, len(in_flight))
            await asyncio.wait(in_flight, timeout=self.config.shutdown_grace_seconds)
        for task in self._active.values():
            task.cancel()
        # Each run's slot releases its run back to the queue, then ends; the heartbeat keeps the
        # leases alive meanwhile, so it stops last.
        if self._slot_tasks:
            await asyncio.wait(list(self._slot_tasks), timeout=RELEASE_TIMEOUT_SECONDS)
        # The loops finish the statement they are in and leave (cancelling one mid-query would
        # leave its connection to be cleaned up after the event loop is gone).
        self._halt.set()
        if self._loops:
            await asyncio.wait(self._loops, timeout=RELEASE_TIMEOUT_SECONDS)
        for task in [*self._loops, *self._slot_tasks, *self._job_tasks.values()]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._slot_tasks, *self._job_tasks.values(), return_exceptions=True)
        self._loops.clear()
        self.started = False
        logger.info("runner stopped")

    # Ad-hoc jobs

    def submit(self, coro: Coroutine[Any, Any, Any], name: str) -> str:
        """Run ``coro`` in the background; follow it with ``get_status(job_id)``."""
        job = JobStatus(id=uuid.uuid4().hex, name=name)
        self._jobs[job.id] = job
        while len(self._jobs) > JOB_HISTORY:
            oldest = next(iter(self._jobs))
            if self._jobs[oldest].status in {"pending", "running"}:
                break
            self._jobs.popitem(last=False)
        self._job_tasks[job.id] = asyncio.create_task(self._run_job(job, coro), name=f"job-{name}")
        return job.id

    def get_status(self, job_id: str) -> dict[str, Any] | None:
        job = self._jobs.get(job_id)
        return job.as_dict() if job else None

    async def _run_job(self, job: JobStatus, coro: Coroutine[Any, Any, Any]) -> None:
        job.status, job.started_at = "running", utcnow()
        try:
            job.result = await coro
            job.status = "completed"
        except asyncio.CancelledError:
            job.status = "cancelled"
            raise
        except Exception as exc:
            logger.exception("background job %s failed", job.name)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = utcnow()
            self._job_tasks.pop(job.id, None)

    # Observability

    @property
    def running_here(self) -> int:
        return len(self._active)

    def local_stats(self) -> dict[str, Any]:
        """What this process knows of the runner without asking the database."""
        return {
            "started": self.started and not self.stopping,
            "workers": self.config.workers,
            "queue_depth": None,
            "running": None,
            "running_here": self.running_here,
            "oldest_queued_age_seconds": None,
            "owner": self.owner,
        }

    async def queue_stats(self) -> dict[str, Any]:
        async with self.session_factory() as session:
            queued, running, oldest = await RunRepository(session).queue_stats()
        return self.local_stats() | {
            "queue_depth": queued,
            "running": running,
            "oldest_queued_age_seconds": round((utcnow() - oldest).total_seconds(), 3) if oldest else None,
        }

    # Workers

    async def _dispatch(self) -> None:
        """Claim queued runs while a worker slot is free, and run each in its own task.

        One claim loop per process (not one per worker) means a wake-up costs one claim
        query however many slots are idle, and a burst of queued runs is claimed in batches.
        """
        while not self.stopping:
            await self._slots.acquire()
            free = 1
            while free < CLAIM_BATCH and not self._slots.locked():
                await self._slots.acquire()
                free += 1
            # Clear before claiming: a signal that arrives during the claim is not lost.
            self.signals.queued_event.clear()
            claimed: list[ClaimedRun] = []
            if not self.stopping:
                try:
                    claimed = await self._claim(free)
                    self.database_watch.succeeded()
                except Exception as exc:
                    self._loop_failed(exc, "claiming runs")
            for claim in claimed:
                task = asyncio.create_task(self._run_in_slot(claim), name=f"runner-slot-{claim.run_id}")
                self._slot_tasks.add(task)
                task.add_done_callback(self._slot_tasks.discard)
            for _ in range(free - len(claimed)):
                self._slots.release()
            if len(claimed) < free and not self.stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.signals.queued_event.wait(), self.config.poll_seconds)

    async def _run_in_slot(self, claim: ClaimedRun) -> None:
        # This task (and the run's own task, started from it) logs with the run's id.
        bind_run_id(claim.run_id)
        try:
            if self.stopping:  # claimed while the runner was stopping: hand it straight back
                await self._release(claim.lease)
                return
            await self._execute(claim)
        finally:
            self._slots.release()
            # A slot came free: look at the queue again (runs may have queued meanwhile).
            self.signals.queued_event.set()

    async def _claim(self, limit: int) -> list[ClaimedRun]:
        """Lease up to ``limit`` queued runs, one fresh lease holder per run, in one transaction
        of four statements however many runs it takes: lock and read them (with their tasks),
        lease them, log their status events, mirror the statuses on their tasks."""
        async with self.session_factory() as session:
            repository = RunRepository(session)
            rows = await repository.lock_next_queued(limit)
            if not rows:
                await session.rollback()
                return []
            now = utcnow()
            deadline = time.monotonic() + self.config.lease_seconds
            claims, events = [], []
            for row in rows:
                action = row.pending_action or PLAN
                new_status = run_states.PLANNING if action in (PLAN, REPLAN) else run_states.RUNNING
                run_states.transition_values(row.status, new_status, now)  # refuses an impossible claim
                holder = f"{self.owner}/{uuid.uuid4().hex[:12]}"
                claims.append(
                    ClaimedRun(
                        row.id, holder, row.task_id, new_status, action,
                        text=task_text(row.title, row.description), task_config=row.config or {},
                        overrides=row.overrides or {}, checkpoint=row.checkpoint, feedback=row.feedback,
                        plan=row.plan,
                    )
                )
                data = {"status": new_status, "previous": row.status, "attempt": row.attempt, "worker": holder}
                events.append(RunEvent(run_id=row.id, seq=row.next_event_seq, type="run.status", data=data, created_at=now))
            until = now + timedelta(seconds=self.config.lease_seconds)
            await repository.lease_claimed(
                [{"claimed": c.run_id, "holder": c.holder, "new_status": c.status} for c in claims], until=until, now=now
            )
            await RunEventRepository(session).insert_numbered(events)
            await TaskRepository(session).mirror_run_statuses([(c.task_id, c.run_id, c.status) for c in claims])
            for claim, event in zip(claims, events, strict=True):
                stage_committed_event(session, StreamEvent.from_row(event, claim.task_id))
            await session.commit()
            for claim in claims:
                # An execution of the same run from an earlier claim lost its lease (the reaper
                # re-queued it while this process stalled): it must not go on beside this one.
                for stale in [held for held in self._active if held.run_id == claim.run_id]:
                    self._stop_lost(stale)
                self._lease_deadlines[claim.lease] = deadline
            return claims

    async def _execute(self, claim: ClaimedRun) -> None:
        lease, run_id = claim.lease, claim.run_id
        task = asyncio.create_task(self.executor.execute(claim, lambda: self.stopping), name=f"run-{run_id}")
        self._active[lease] = task
        started = time.monotonic()
        try:
            await task
        except asyncio.CancelledError:
            if lease in self._cancelled_by_request:
                logger.info("run %s cancelled after %.2fs", run_id, time.monotonic() - started)
            elif lease in self._lost:
                logger.warning("run %s: stopped, its lease lapsed (claim %s)", run_id, lease.holder)
            elif not self.stopping:
                raise
        except LeaseLostError:
            logger.info("run %s: lease lost; another claim or a cancel took it", run_id)
        except RunInterrupted:
            pass
        except Exception as exc:
            if is_database_unavailable(exc):
                # Not the run's fault: it is not failed. Its lease lapses (no heartbeat holds it
                # any more), the reaper queues it again and it resumes from its checkpoint.
                self.database_watch.failed(exc, f"recording run {run_id}")
                logger.warning("run %s: stopped while the database is unavailable; it resumes once its lease lapses", run_id)
            else:
                logger.exception("run %s crashed", run_id)
                await self._fail_crashed(lease)
        finally:
            self._active.pop(lease, None)
            self._lease_deadlines.pop(lease, None)
            self._cancelled_by_request.discard(lease)
            self._lost.discard(lease)
            if self.stopping:
                await self._release(lease)

    def _cancel_local(self, run_id: uuid.UUID) -> None:
        """A cancel request for ``run_id`` (from this or another process): stop its execution."""
        for lease, task in list(self._active.items()):
            if lease.run_id == run_id and not task.done():
                self._cancelled_by_request.add(lease)
                task.cancel()

    def _stop_lost(self, lease: RunLease) -> None:
        """Stop an execution whose lease is gone or lapsed; its writes would be refused anyway."""
        task = self._active.get(lease)
        if task is not None and not task.done() and lease not in self._cancelled_by_request:
            self._lost.add(lease)
            task.cancel()

    async def _release(self, lease: RunLease) -> None:
        """Give a run this process did not finish back to the queue (shutdown)."""
        run_id = lease.run_id
        with contextlib.suppress(Exception):
            async with self.session_factory() as session:
                run = await RunRepository(session).get(run_id, for_update=True)
                if run is None or run.lease_owner != lease.holder or run.status in run_states.TERMINAL_STATUSES:
                    return
                await change_status(session, run, run_states.QUEUED, data={"reason": "released at shutdown"})
                run.lease_owner = run.lease_expires_at = None
                run.phase = None
                await self.signals.announce_queued(session)
                await session.commit()
                logger.info("run %s released back to the queue", run_id)

    async def _fail_crashed(self, lease: RunLease) -> None:
        with contextlib.suppress(Exception):
            async with self.session_factory() as session:
                run = await RunRepository(session).get(lease.run_id, for_update=True)
                if run is None or run.lease_owner != lease.holder or run.status in run_states.TERMINAL_STATUSES:
                    return
                run.error_code, run.error_message = "internal_error", "the run hit an unexpected error; see the service log"
                await change_status(session, run, run_states.FAILED)
                await session.commit()

    def _loop_failed(self, exc: Exception, doing: str) -> None:
        """A loop's pass failed: an outage is logged once by the watch, a bug with its traceback."""
        if is_database_unavailable(exc):
            self.database_watch.failed(exc, doing)
        else:
            logger.error("%s failed; retrying", doing, exc_info=exc)

    # Leases

    async def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False once the runner's loops are told to end."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._halt.wait(), seconds)
        return not self._halt.is_set()

    async def _heartbeat(self) -> None:
        while await self._pause(self.config.heartbeat_seconds):
            if not self._active:
                continue
            try:
                await self.extend_held_leases()
                self.database_watch.succeeded()
            except Exception as exc:
                self._loop_failed(exc, "extending leases")

    async def extend_held_leases(self) -> None:
        """Extend the lease of every run executing here; stop those whose lease is gone."""
        held = list(self._active)
        deadline = time.monotonic() + self.config.lease_seconds
        async with self.session_factory() as session:
            until = utcnow() + timedelta(seconds=self.config.lease_seconds)
            kept = await RunRepository(session).extend_leases({lease.run_id: lease.holder for lease in held}, until)
            await session.commit()
        for lease in held:
            if lease.holder in kept:
                if lease in self._active:  # not finished while the statement ran
                    self._lease_deadlines[lease] = deadline
            else:
                # Cancelled (possibly by another process) or reaped: stop working on it.
                self._stop_lost(lease)

    async def _lease_watchdog(self) -> None:
        """Checks the leases' deadlines on its own, without the database: a heartbeat stuck in a
        statement that never answers must not keep a lapsed execution going."""
        while await self._pause(self.config.heartbeat_seconds):
            self._stop_lapsed()

    def _stop_lapsed(self) -> None:
        """Stop executions whose lease this process could not extend in time (its own clock)."""
        now = time.monotonic()
        for lease, deadline in list(self._lease_deadlines.items()):
            if deadline <= now:
                self._stop_lost(lease)

    async def _reaper(self) -> None:
        interval = max(self.config.heartbeat_seconds, min(self.config.lease_seconds / 3, 5))
        while not self._halt.is_set():
            try:
                await self.reap_once()
                self.database_watch.succeeded()
            except Exception as exc:
                self._loop_failed(exc, "recovering expired leases")
            await self._pause(interval)

    async def reap_once(self) -> int:
        """Recover expired leases and expire overdue approvals; returns how many runs changed."""
        changed = 0
        async with self.session_factory() as session:
            repository = RunRepository(session)
            now = utcnow()
            for run in await repository.lock_expired_leases(now, (run_states.PLANNING, run_states.RUNNING)):
                run.attempt += 1
                previous_owner = run.lease_owner
                for lease in [held for held in self._active if held.holder == previous_owner]:
                    self._stop_lost(lease)
                run.lease_owner = run.lease_expires_at = None
                run.phase = None
                # The next execution resumes from the checkpoint, usage counts included: keep
                # what this one spent after it (billed, but about to be overwritten).
                lost = spent_after_checkpoint(run.usage, run.checkpoint)
                abandoned = lost.total.to_dict() if lost.roles else None
                if lost.roles:
                    run.abandoned_usage = add_abandoned(run.abandoned_usage, lost)
                if run.attempt >= self.config.max_attempts:
                    run.error_code = "too_many_attempts"
                    run.error_message = f"the run's worker stopped answering {run.attempt} times"
                    await change_status(session, run, run_states.FAILED, data={"abandoned_usage": abandoned})
                else:
                    await change_status(
                        session,
                        run,
                        run_states.QUEUED,
                        data={"reason": "lease expired", "previous_owner": previous_owner, "abandoned_usage": abandoned},
                    )
                changed += 1
            for run in await repository.lock_expired_approvals(now):
                run.error_code, run.error_message = "approval_expired", "nobody approved the plan in time"
                await change_status(session, run, run_states.EXPIRED)
                changed += 1
            cutoff = now - timedelta(seconds=self.config.idempotency_ttl_seconds)
            await IdempotencyRepository(session).delete_older_than(cutoff)
            if changed:
                await self.signals.announce_queued(session)
            await session.commit()
        if changed:
            self.signals.deliver("queued")
            logger.info("reaper changed %d run(s)", changed)
        return changed
