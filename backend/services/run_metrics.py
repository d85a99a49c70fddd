"""Run metrics: what committed run events say, counted once in the process that committed them,
and the database gauges a scrape reads.

``RunMetricsRecorder`` observes every batch of events the moment its transaction commits (the
broadcaster's commit observers). A rolled-back transaction publishes nothing, so nothing is
counted twice or for work that did not stick:

- ``run.phase`` (finished) -> phase duration;
- ``agent.message`` carrying its ``llm`` call -> LLM calls, tokens and cost by model and role,
  and cache hits and misses;
- a terminal event -> the run's duration, from its creation: remembered from the run's
  ``run.created`` event when this process committed it, else read from the database in the
  background (the terminal event knows when the run ended, not when it began).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend import __version__
from backend.db.engine import READ_ONLY_OPTION
from backend.db.repositories.run_stats import RunStatsRepository
from backend.db.types import utcnow
from backend.observability import metrics
from backend.services import run_states
from backend.services.events import StreamEvent

logger = logging.getLogger("backend.metrics")

# How long a scrape waits for durations still being read, and a scrape for the database gauges.
FLUSH_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 2.0
# Creation times remembered for runs created here (oldest forgotten first): a run that outlives
# this many newer creations is read back instead.
REMEMBERED_CREATIONS = 10_000


class RunMetricsRecorder:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory
        self._pending: set[asyncio.Task[None]] = set()
        self._created: OrderedDict[uuid.UUID, datetime] = OrderedDict()

    def observe(self, events: Sequence[StreamEvent]) -> None:
        """Count one committed batch. Runs inside the commit: cheap, never raises, never waits."""
        finished: list[tuple[uuid.UUID, str, datetime]] = []
        for event in events:
            try:
                if event.type == "run.phase" and event.data.get("state") == "finished":
                    metrics.PHASE_DURATION.labels(str(event.data["phase"])).observe(float(event.data["seconds"]))
                elif event.type == "agent.message" and event.data.get("llm"):
                    observe_llm_call(str(event.data.get("role")), event.data["llm"])
                elif event.type == "run.created":
                    self._created[event.run_id] = event.created_at
                    if len(self._created) > REMEMBERED_CREATIONS:
                        self._created.popitem(last=False)
                elif event.terminal:
                    created = self._created.pop(event.run_id, None)
                    if created is None:
                        finished.append((event.run_id, event.data["status"], event.created_at))
                    else:
                        observe_run_duration(event.data["status"], created, event.created_at)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                logger.warning("run metrics: ignoring a malformed %s event: %s", event.type, exc)
        if finished:
            self._schedule(self._observe_durations(finished))

    def _schedule(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work, name="run-metrics")
        except RuntimeError:  # committed outside an event loop: nothing to time it with
            work.close()
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _observe_durations(self, finished: list[tuple[uuid.UUID, str, datetime]]) -> None:
        try:
            async with self.session_factory() as session:
                await session.connection(execution_options={READ_ONLY_OPTION: True})
                created = await RunStatsRepository(session).created_at([run_id for run_id, _, _ in finished])
        except Exception as exc:
            logger.warning("run metrics: could not read when %d finished run(s) began: %s", len(finished), exc)
            return
        for run_id, status, ended_at in finished:
            if run_id in created:  # deleted in the meantime otherwise
                observe_run_duration(status, created[run_id], ended_at)

    async def flush(self) -> None:
        """Wait for the durations still being read (a scrape right after a run ends shows it)."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=FLUSH_TIMEOUT_SECONDS)

    async def close(self) -> None:
        await self.flush()
        for task in list(self._pending):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def observe_run_duration(status: str, created_at: datetime, ended_at: datetime) -> None:
    metrics.RUN_DURATION.labels(status).observe(max((ended_at - created_at).total_seconds(), 0.0))


def observe_llm_call(role: str, call: dict[str, Any]) -> None:
    """Count one ``agent.message``'s model call (``mgx_agent.metrics.LLMCall`` as a dict)."""
    cache = call.get("cache")
    if cache in ("hit", "miss"):
        metrics.LLM_CACHE_LOOKUPS.labels(role, cache).inc()
    if cache == "hit":
        return  # answered from the cache: no call, no tokens, no cost
    model = str(call.get("model") or "unknown")
    metrics.LLM_CALLS.labels(model, role).inc()
    metrics.LLM_TOKENS.labels(model, role, "prompt").inc(int(call.get("prompt_tokens") or 0))
    metrics.LLM_TOKENS.labels(model, role, "completion").inc(int(call.get("completion_tokens") or 0))
    metrics.LLM_COST.labels(model, role).inc(float(call.get("cost_usd") or 0.0))


@dataclass
class RunGauges:
    """Database-wide run figures, read at scrape time; ``database_up`` False when they could not
    be read (the scrape still answers, with the process's own metrics)."""

    database_up: bool = True
    by_status: dict[str, int] = field(default_factory=dict)
    oldest_queued_at: datetime | None = None

    def families(self) -> list[Metric]:
        up = GaugeMetricFamily("mgx_database_up", "Whether this scrape could read the run gauges from the database.")
        up.add_metric([], 1 if self.database_up else 0)
        build = GaugeMetricFamily("mgx_build_info", "The running version of the service.", labels=["version"])
        build.add_metric([__version__], 1)
        if not self.database_up:
            return [up, build]
        runs = GaugeMetricFamily("mgx_runs", "Runs in the database, by status.", labels=["status"])
        for status in sorted(run_states.ALL_STATUSES):
            runs.add_metric([status], self.by_status.get(status, 0))
        queued = GaugeMetricFamily("mgx_runner_queue_depth", "Runs waiting for a worker (status queued).")
        queued.add_metric([], self.by_status.get(run_states.QUEUED, 0))
        running = GaugeMetricFamily(
            "mgx_runner_running_runs", "Runs a worker is executing (status planning or running)."
        )
        running.add_metric([], self.by_status.get(run_states.PLANNING, 0) + self.by_status.get(run_states.RUNNING, 0))
        oldest = GaugeMetricFamily(
            "mgx_runner_oldest_queued_age_seconds", "How long the oldest queued run has waited (0 when none)."
        )
        age = (utcnow() - self.oldest_queued_at).total_seconds() if self.oldest_queued_at else 0.0
        oldest.add_metric([], max(age, 0.0))
        return [up, build, runs, queued, running, oldest]


async def read_run_gauges(session_factory: async_sessionmaker[AsyncSession]) -> RunGauges:
    async def read() -> RunGauges:
        async with session_factory() as session:
            await session.connection(execution_options={READ_ONLY_OPTION: True})
            repository = RunStatsRepository(session)
            return RunGauges(True, await repository.count_by_status(), await repository.oldest_queued_at())

    try:
        return await asyncio.wait_for(read(), READ_TIMEOUT_SECONDS)
    except Exception as exc:  # a scrape reports a database outage, it does not fail with it
        logger.warning("metrics: the run gauges could not be read: %s", f"{type(exc).__name__}: {exc}".splitlines()[0])
        return RunGauges(database_up=False)
