"""The write-behind run journal: what a team emits between two awaits of real work is stored in
one transaction, in order, and a worker that lost its lease stops writing and is told so."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from mgx_agent.events import AgentMessage, ArtifactProduced, PhaseFinished, PhaseStarted, UsageUpdated
from sqlalchemy import select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.engine import create_engine, create_session_factory
from backend.db.models import Artifact, Run, RunEvent, Task
from backend.db.repositories.journal import JournalBatch, write_journal
from backend.db.types import utcnow
from backend.observability.database import count_database_work
from backend.services.run_execution import ClaimedRun, LeaseLostError, RunExecutor, _EventRecorder
from backend.services.team_provider import MGXTeamProvider
from tests.conftest import make_settings

OWNER = "worker-a"


def counted(name: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_total", {"source": "other"}) or 0.0


@pytest.fixture
async def session_factory(database_url: URL) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def leased_run(session_factory: async_sessionmaker[AsyncSession]) -> tuple[uuid.UUID, uuid.UUID]:
    async with session_factory() as session:
        task = Task(title="slugify", description="titles to slugs", config={})
        session.add(task)
        await session.flush()
        run = Run(task_id=task.id, number=1, status="running", lease_owner=OWNER, lease_expires_at=utcnow())
        session.add(run)
        await session.commit()
        return run.id, task.id


def recorder_for(
    session_factory: async_sessionmaker[AsyncSession], database_url: URL, run_id: uuid.UUID, task_id: uuid.UUID
) -> _EventRecorder:
    provider = MGXTeamProvider(make_settings(database_url))
    executor = RunExecutor(session_factory, provider, approval_ttl_seconds=60)
    claim = ClaimedRun(run_id, OWNER, task_id, status="running", action="execute")
    return _EventRecorder(executor, claim, should_stop=lambda: False)


def phase_burst(phase: str) -> list:
    checkpoint = {"phase": phase, "usage": {"total": {"llm_calls": 1}}, "timings": {phase: 0.1}}
    return [
        AgentMessage(role="alex", action="WriteCode", content="def slugify(text): ..."),
        UsageUpdated(usage={"total": {"llm_calls": 1}}),
        ArtifactProduced(name="slugify.py", media_type="text/x-python", content="def slugify(text): ...\n"),
        PhaseFinished(phase=phase, seconds=0.1, checkpoint=checkpoint),
        PhaseStarted(phase="testing"),
    ]


async def test_a_burst_of_events_is_stored_in_one_transaction_in_order(session_factory, database_url) -> None:
    run_id, task_id = await leased_run(session_factory)
    recorder = recorder_for(session_factory, database_url, run_id, task_id)
    # The service's own counters: a journal write on PostgreSQL goes through asyncpg directly.
    count_database_work(session_factory.kw["bind"])
    transactions = counted("mgx_db_transactions")

    for team_event in phase_burst("coding"):
        await recorder(team_event)
    await recorder.drain()

    assert counted("mgx_db_transactions") - transactions == 1
    async with session_factory() as session:
        events = (await session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq))).all()
        run = await session.get(Run, run_id)
        artifact = await session.scalar(select(Artifact).where(Artifact.run_id == run_id))
    assert [(e.seq, e.type) for e in events] == [
        (1, "agent.message"),
        (2, "run.usage"),
        (3, "artifact.created"),
        (4, "run.phase"),
        (5, "run.phase"),
    ]
    assert events[3].data["state"] == "finished" and events[4].data == {"phase": "testing", "state": "started", "round": 0}
    assert run.next_event_seq == 6
    assert run.checkpoint["phase"] == "coding" and run.timings == {"coding": 0.1}
    assert run.phase == "testing"
    assert artifact.name == "slugify.py" and events[2].data["sha256"] == artifact.sha256


async def test_nul_characters_from_the_team_are_stored_whatever_the_database(session_factory, database_url) -> None:
    """PostgreSQL refuses U+0000 in jsonb and text: the journal stores U+FFFD there instead of
    failing the run's write; a backslash followed by the letters "u0000" is text and stays."""
    run_id, task_id = await leased_run(session_factory)
    recorder = recorder_for(session_factory, database_url, run_id, task_id)
    literal = "a \\u0000 escape is text"
    await recorder(AgentMessage(role="alex", action="WriteCode", content=f"NUL:\x00 {literal} \\\x00"))
    await recorder(PhaseFinished(phase="coding", seconds=0.1, checkpoint={"files": {"x.py": "\x00"}}))
    await recorder.drain()

    async with session_factory() as session:
        event = await session.scalar(select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.type == "agent.message"))
        run = await session.get(Run, run_id)
    nul = "\x00" if database_url.get_backend_name() == "sqlite" else "\ufffd"
    assert event.data["content"] == f"NUL:{nul} {literal} \\{nul}"
    assert run.checkpoint == {"files": {"x.py": nul}}


async def test_what_subscribers_are_handed_is_what_was_stored(session_factory, database_url) -> None:
    """The events a write hands to the live streams are the stored ones: on PostgreSQL a NUL
    that went in as U+FFFD is U+FFFD live too, so a replay never differs from the live view."""
    run_id, _ = await leased_run(session_factory)
    batch = JournalBatch(
        run_id=run_id, holder=OWNER, statuses=("running",), values={}, now=utcnow(), artifacts=(),
        events=[("run.plan_ready", {"plan": {"summary": "a\x00b"}}, utcnow()), ("run.log", {"message": "ok"}, utcnow())],
        mirror_status=None,
    )
    written = await write_journal(session_factory.kw["bind"], batch)

    async with session_factory() as session:
        stored = (await session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq))).all()
    assert [data for _, data, _ in written.events] == [event.data for event in stored]
    nul = "\x00" if database_url.get_backend_name() == "sqlite" else "\ufffd"
    assert stored[0].data == {"plan": {"summary": f"a{nul}b"}}


async def test_a_revised_artifact_replaces_the_stored_one(session_factory, database_url) -> None:
    run_id, task_id = await leased_run(session_factory)
    recorder = recorder_for(session_factory, database_url, run_id, task_id)
    await recorder(ArtifactProduced(name="slugify.py", media_type="text/x-python", content="v1\n"))
    await recorder.drain()
    await recorder(ArtifactProduced(name="slugify.py", media_type="text/x-python", content="version 2\n"))
    await recorder.drain()

    async with session_factory() as session:
        artifacts = (await session.scalars(select(Artifact).where(Artifact.run_id == run_id))).all()
    assert [(a.name, a.content, a.size) for a in artifacts] == [("slugify.py", b"version 2\n", 10)]


async def test_a_worker_that_lost_its_lease_stops_writing_and_is_told(session_factory, database_url) -> None:
    run_id, task_id = await leased_run(session_factory)
    recorder = recorder_for(session_factory, database_url, run_id, task_id)
    async with session_factory() as session:
        await session.execute(update(Run).where(Run.id == run_id).values(cancel_requested=True))
        await session.commit()

    await recorder(PhaseStarted(phase="coding"))
    with pytest.raises(LeaseLostError):
        await recorder.drain()
    with pytest.raises(LeaseLostError):
        await recorder(PhaseStarted(phase="testing"))

    async with session_factory() as session:
        stored = (await session.scalars(select(RunEvent).where(RunEvent.run_id == run_id))).all()
        run = await session.get(Run, run_id)
    assert stored == [] and run.phase is None and run.next_event_seq == 1


async def test_events_are_dated_when_the_team_emitted_them_not_when_they_were_written(
    session_factory, database_url
) -> None:
    # Live-event latency is measured from created_at, so it must not include the journal's queue.
    run_id, task_id = await leased_run(session_factory)
    recorder = recorder_for(session_factory, database_url, run_id, task_id)
    handed_over = []
    for team_event in phase_burst("coding"):
        await recorder(team_event)
        handed_over.append(utcnow())  # the event is queued; the journal writes it at drain()
    await recorder.drain()

    async with session_factory() as session:
        rows = (await session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq))).all()
    created = [row.created_at for row in rows]
    assert len(created) == len(handed_over)
    assert all(at <= moment for at, moment in zip(created, handed_over)), (created, handed_over)
    assert created == sorted(created)
