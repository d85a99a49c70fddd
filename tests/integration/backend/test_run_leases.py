"""Fencing of run claims: a lease belongs to one claim, not to the process. A run re-queued while
its process stalled and claimed again by that same process must not be executed twice: the
stalled execution's writes are refused and it is stopped."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.engine import create_engine, create_session_factory
from backend.db.models import Run, RunEvent, Task
from backend.db.repositories.runs import RunRepository
from backend.db.types import utcnow
from backend.services.background import BackgroundTaskRunner, RunnerConfig
from backend.services.run_execution import LeaseLostError, RunExecutor
from backend.services.run_signals import RunSignals
from backend.services.team_provider import MGXTeamProvider
from mgx_agent.events import PhaseStarted
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply, FakeRequest, demo_responder
from tests.conftest import make_settings
from tests.integration.backend.conftest import fake_llm_config


@pytest.fixture
async def session_factory(database_url: URL) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


_PROVIDERS: list[MGXTeamProvider] = []


@pytest.fixture(autouse=True)
async def close_providers() -> AsyncIterator[None]:
    """Each test's team providers close their model client (its HTTP session) when it ends."""
    yield
    while _PROVIDERS:
        await _PROVIDERS.pop().aclose()


def build_runner(
    session_factory: async_sessionmaker[AsyncSession], database_url: URL, fake_llm: FakeLLMServer, **config: float
) -> tuple[BackgroundTaskRunner, RunExecutor]:
    settings = make_settings(database_url, mgx_sandbox="off", mgx_enable_caching=False)
    provider = MGXTeamProvider(settings, fake_llm_config(fake_llm))
    _PROVIDERS.append(provider)
    executor = RunExecutor(session_factory, provider, approval_ttl_seconds=600)
    # No heartbeat and no reaper pass during the test unless it asks: the test plays the stall.
    values = {"workers": 2, "lease_seconds": 30, "heartbeat_seconds": 60, "poll_seconds": 0.1, **config}
    return BackgroundTaskRunner(session_factory, executor, RunSignals(), RunnerConfig(**values)), executor


async def queued_run(session_factory: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    async with session_factory() as session:
        task = Task(title="slugify", description="titles to slugs", config={})
        session.add(task)
        await session.flush()
        run = Run(task_id=task.id, number=1, status="queued", pending_action="plan", queued_at=utcnow())
        session.add(run)
        await session.commit()
        return run.id


async def expire_lease(session_factory: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> None:
    """What a stall longer than the lease leaves behind: a lease nobody extended."""
    async with session_factory() as session:
        await session.execute(update(Run).where(Run.id == run_id).values(lease_expires_at=utcnow()))
        await session.commit()


async def test_a_run_claimed_again_by_the_same_process_refuses_the_first_claims_writes(
    session_factory, database_url, fake_llm
) -> None:
    runner, executor = build_runner(session_factory, database_url, fake_llm)
    run_id = await queued_run(session_factory)

    [first] = await runner._claim(1)
    await expire_lease(session_factory, run_id)
    assert await runner.reap_once() == 1
    [second] = await runner._claim(1)

    assert first.run_id == second.run_id == run_id
    assert first.holder != second.holder
    assert first.holder.startswith(runner.owner) and second.holder.startswith(runner.owner)
    with pytest.raises(LeaseLostError):
        await executor.record(run_id, first.holder, [PhaseStarted(phase="coding")])
    async with session_factory() as session:
        until = utcnow()
        assert await RunRepository(session).extend_leases({run_id: first.holder}, until) == set()
        assert await RunRepository(session).extend_leases({run_id: second.holder}, until) == {second.holder}
        await session.commit()
    await executor.record(run_id, second.holder, [PhaseStarted(phase="coding")])
    async with session_factory() as session:
        run = await session.get(Run, run_id)
    assert (run.lease_owner, run.phase, run.attempt) == (second.holder, "coding", 1)


async def test_a_stall_longer_than_the_lease_does_not_execute_the_run_twice_in_one_process(
    session_factory, database_url, fake_llm
) -> None:
    """The planner call of the first claim outlives its lease (nobody extends it, as in a frozen
    process); the reaper re-queues the run and the same runner claims it again. The first
    execution's late answer must not be recorded beside the second's."""
    calls: list[str] = []

    def slow_planner(request: FakeRequest) -> FakeReply | None:
        if request.role != "mike":
            return None
        calls.append(request.action or "")
        # The first answer arrives while the second claim's call is still in flight.
        return FakeReply(content=demo_responder(request), delay_seconds=1.2 if len(calls) == 1 else 1.0)

    fake_llm.set_responder(slow_planner)
    runner, _ = build_runner(session_factory, database_url, fake_llm, lease_seconds=0.5)
    run_id = await queued_run(session_factory)
    await runner.start()
    try:
        deadline = time.monotonic() + 5
        while not calls:
            assert time.monotonic() < deadline, "the planner was never called"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)  # the lease lapses
        assert await runner.reap_once() == 1
        while len(calls) < 2:
            assert time.monotonic() < deadline, "the run was not claimed again"
            await asyncio.sleep(0.02)
        while True:
            async with session_factory() as session:
                run = await session.get(Run, run_id, populate_existing=True)
            if run.status == "awaiting_approval":
                break
            assert time.monotonic() < deadline + 5, f"run stayed {run.status}"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # past the first call's late answer
    finally:
        await runner.stop()

    async with session_factory() as session:
        events = (await session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq))).all()
    types = [event.type for event in events]
    claims = [event for event in events if event.type == "run.status" and "worker" in event.data]
    assert len(claims) == 2 and claims[0].data["worker"] != claims[1].data["worker"]
    assert types.count("run.plan_ready") == 1, types
    assert types.count("run.approval_required") == 1, types
    said = [(event.data["role"], event.data["action"]) for event in events if event.type == "agent.message"]
    assert said and len(said) == len(set(said)), said
    assert {event.data["attempt"] for event in events if event.type == "agent.message"} == {1}, "said by the redo"
    # Everything the planner recorded came after the second claim.
    assert all(event.seq > claims[1].seq for event in events if event.type in {"agent.message", "run.plan_ready"})
    assert runner.running_here == 0


async def test_what_a_lost_execution_spent_after_its_checkpoint_stays_on_the_record(
    session_factory, database_url, fake_llm
) -> None:
    """The execution made a second planner call (recorded in usage) after its last checkpoint,
    then its worker died. The run resumes from the checkpoint, so that call would vanish from
    usage: the reaper keeps it as abandoned_usage and says so in the log."""
    runner, _ = build_runner(session_factory, database_url, fake_llm)
    saved = {"roles": {"mike": {"prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.001, "llm_calls": 1}}}
    recorded = {"roles": {"mike": {"prompt_tokens": 30, "completion_tokens": 15, "cost_usd": 0.003, "llm_calls": 2}}}
    async with session_factory() as session:
        task = Task(title="slugify", description="", config={})
        session.add(task)
        await session.flush()
        run = Run(
            task_id=task.id, number=1, status="planning", lease_owner="gone:1:dead/claim", lease_expires_at=utcnow(),
            usage=recorded, checkpoint={"usage": saved},
        )
        session.add(run)
        await session.commit()
        run_id = run.id

    assert await runner.reap_once() == 1

    async with session_factory() as session:
        run = await session.get(Run, run_id)
        requeued = await session.scalar(
            select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.type == "run.status").order_by(RunEvent.seq.desc())
        )
    lost = run.abandoned_usage["total"]
    assert (lost["llm_calls"], lost["prompt_tokens"], lost["completion_tokens"]) == (1, 20, 10)
    assert lost["cost_usd"] == pytest.approx(0.002)
    assert run.abandoned_usage["roles"]["mike"]["llm_calls"] == 1
    assert requeued.data["reason"] == "lease expired" and requeued.data["abandoned_usage"]["llm_calls"] == 1


async def test_an_execution_whose_lease_cannot_be_extended_stops_when_it_lapses(
    session_factory, database_url, fake_llm
) -> None:
    """The heartbeat's statement waits on a lock (as on a database that stopped answering) for
    longer than the lease: by then any reaper may give the run to another worker, so this
    process stops the execution itself, mid-call, instead of running on beside the next one."""

    def slow_planner(request: FakeRequest) -> FakeReply | None:
        return FakeReply(content=demo_responder(request), delay_seconds=5) if request.role == "mike" else None

    fake_llm.set_responder(slow_planner)
    runner, _ = build_runner(session_factory, database_url, fake_llm, lease_seconds=0.6, heartbeat_seconds=0.1)
    run_id = await queued_run(session_factory)
    await runner.start()
    try:
        deadline = time.monotonic() + 5
        while not fake_llm.requests_for(role="mike"):
            assert time.monotonic() < deadline, "the planner was never called"
            await asyncio.sleep(0.02)
        async with session_factory() as blocker:
            # Holds the run's row (and on SQLite the write lock): the heartbeat cannot extend.
            await blocker.execute(select(Run).where(Run.id == run_id).with_for_update())
            stopped_by = time.monotonic() + 2
            while runner.running_here:
                assert time.monotonic() < stopped_by, "the execution went on after its lease lapsed"
                await asyncio.sleep(0.05)
            await blocker.rollback()
    finally:
        await runner.stop()
    assert len(fake_llm.requests_for(role="mike")) == 1
