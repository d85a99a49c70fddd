"""BackgroundTaskRunner: executes up to ``RUNNER_WORKERS`` runs at a time in the API process,
claiming queued runs from the database, plus ad-hoc background jobs (``submit`` / ``get_status``).

Durability comes from the database, not from memory: a claim is an atomic conditional update
that sets a lease; a heartbeat extends the leases this process holds; a reaper (in every
process) re-queues runs whose lease expired, failing them after ``RUNNER_MAX_ATTEMPTS``, and
expires plans nobody approved in time. Shutdown stops claiming, gives in-flight phases a grace
period, then returns the rest to the queue.
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

from backend.db.repositories.idempotency import IdempotencyRepository
from backend.db.repositories.runs import RunRepository
from backend.db.types import utcnow
from backend.observability.logs import bind_run_id
from backend.services import run_states
from backend.services.run_execution import LeaseLostError, RunExecutor, RunInterrupted
from backend.services.run_journal import change_status
from backend.services.run_signals import RunSignals
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
    ) -> None:
        self.session_factory = session_factory
        self.executor = executor
        self.signals = signals
        self.config = config
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started = False
        self.stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self._active: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(config.workers)
        self._slot_tasks: set[asyncio.Task[None]] = set()
        self._halt = asyncio.Event()
        self._cancelled_by_request: set[uuid.UUID] = set()
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
            claimed: list[uuid.UUID] = []
            if not self.stopping:
                try:
                    claimed = await self._claim(free)
                except Exception:
                    logger.exception("claiming runs failed; retrying")
            for run_id in claimed:
                task = asyncio.create_task(self._run_in_slot(run_id), name=f"runner-slot-{run_id}")
                self._slot_tasks.add(task)
                task.add_done_callback(self._slot_tasks.discard)
            for _ in range(free - len(claimed)):
                self._slots.release()
            if len(claimed) < free and not self.stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.signals.queued_event.wait(), self.config.poll_seconds)

    async def _run_in_slot(self, run_id: uuid.UUID) -> None:
        # This task (and the run's own task, started from it) logs with the run's id.
        bind_run_id(run_id)
        try:
            if self.stopping:  # claimed while the runner was stopping: hand it straight back
                await self._release(run_id)
                return
            await self._execute(run_id)
        finally:
            self._slots.release()
            # A slot came free: look at the queue again (runs may have queued meanwhile).
            self.signals.queued_event.set()

    async def _claim(self, limit: int) -> list[uuid.UUID]:
        """Lease up to ``limit`` queued runs to this process, in one transaction."""
        async with self.session_factory() as session:
            runs = await RunRepository(session).lock_next_queued(limit)
            if not runs:
                await session.rollback()
                return []
            now = utcnow()
            for run in runs:
                new_status = run_states.PLANNING if run.pending_action in (PLAN, REPLAN, None) else run_states.RUNNING
                await change_status(session, run, new_status, data={"attempt": run.attempt, "worker": self.owner})
                run.lease_owner = self.owner
                run.lease_expires_at = now + timedelta(seconds=self.config.lease_seconds)
                run.started_at = run.started_at or now
            await session.commit()
            return [run.id for run in runs]

    async def _execute(self, run_id: uuid.UUID) -> None:
        task = asyncio.create_task(
            self.executor.execute(run_id, self.owner, lambda: self.stopping), name=f"run-{run_id}"
        )
        self._active[run_id] = task
        started = time.monotonic()
        try:
            await task
        except asyncio.CancelledError:
            if run_id in self._cancelled_by_request:
                logger.info("run %s cancelled after %.2fs", run_id, time.monotonic() - started)
            elif not self.stopping:
                raise
        except LeaseLostError:
            logger.info("run %s: lease lost; another owner or a cancel took it", run_id)
        except RunInterrupted:
            pass
        except Exception:
            logger.exception("run %s crashed", run_id)
            await self._fail_crashed(run_id)
        finally:
            self._active.pop(run_id, None)
            self._cancelled_by_request.discard(run_id)
            if self.stopping:
                await self._release(run_id)

    def _cancel_local(self, run_id: uuid.UUID) -> None:
        task = self._active.get(run_id)
        if task is not None and not task.done():
            self._cancelled_by_request.add(run_id)
            task.cancel()

    async def _release(self, run_id: uuid.UUID) -> None:
        """Give a run this process did not finish back to the queue (shutdown)."""
        with contextlib.suppress(Exception):
            async with self.session_factory() as session:
                run = await RunRepository(session).get(run_id, for_update=True)
                if run is None or run.lease_owner != self.owner or run.status in run_states.TERMINAL_STATUSES:
                    return
                await change_status(session, run, run_states.QUEUED, data={"reason": "released at shutdown"})
                run.lease_owner = run.lease_expires_at = None
                run.phase = None
                await self.signals.announce_queued(session)
                await session.commit()
                logger.info("run %s released back to the queue", run_id)

    async def _fail_crashed(self, run_id: uuid.UUID) -> None:
        with contextlib.suppress(Exception):
            async with self.session_factory() as session:
                run = await RunRepository(session).get(run_id, for_update=True)
                if run is None or run.lease_owner != self.owner or run.status in run_states.TERMINAL_STATUSES:
                    return
                run.error_code, run.error_message = "internal_error", "the run hit an unexpected error; see the service log"
                await change_status(session, run, run_states.FAILED)
                await session.commit()

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
                held = list(self._active)
                async with self.session_factory() as session:
                    until = utcnow() + timedelta(seconds=self.config.lease_seconds)
                    kept = await RunRepository(session).extend_leases(self.owner, held, until)
                    await session.commit()
                for run_id in set(held) - kept:
                    # Cancelled (possibly by another process) or reaped: stop working on it.
                    self._cancel_local(run_id)
            except Exception:
                logger.exception("heartbeat failed; leases will be retried on the next beat")

    async def _reaper(self) -> None:
        interval = max(self.config.heartbeat_seconds, min(self.config.lease_seconds / 3, 5))
        while not self._halt.is_set():
            try:
                await self.reap_once()
            except Exception:
                logger.exception("reaper pass failed")
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
                run.lease_owner = run.lease_expires_at = None
                run.phase = None
                if run.attempt >= self.config.max_attempts:
                    run.error_code = "too_many_attempts"
                    run.error_message = f"the run's worker stopped answering {run.attempt} times"
                    await change_status(session, run, run_states.FAILED)
                else:
                    await change_status(
                        session, run, run_states.QUEUED, data={"reason": "lease expired", "previous_owner": previous_owner}
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
