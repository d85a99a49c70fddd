"""Checkpoints: a team rebuilt from a saved state continues without redoing finished phases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.errors import MalformedOutputError
from mgx_agent.events import PhaseFinished, TeamEvent
from mgx_agent.llm import LLMSession, OpenAICompatibleClient
from mgx_agent.team import MGXStyleTeam
from mgx_agent.testing.fake_llm import FakeLLMServer

TASK = "Write is_prime(n)"
CONFIG = TeamConfig(sandbox=SandboxConfig(mode="off"))


def checkpoints(events: list[TeamEvent]) -> dict[str, dict[str, Any]]:
    """The last checkpoint of each phase, round-tripped through JSON like a database would."""
    return {
        e.phase: json.loads(json.dumps(e.checkpoint))
        for e in events
        if isinstance(e, PhaseFinished)
    }


def new_team(client: OpenAICompatibleClient, events: list[TeamEvent] | None = None) -> MGXStyleTeam:
    async def collect(event: TeamEvent) -> None:
        if events is not None:
            events.append(event)

    return MGXStyleTeam(CONFIG, LLMSession(client, default_model="gpt-4o-mini"), on_event=collect)


async def test_resume_after_crash_skips_finished_phases(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    events: list[TeamEvent] = []
    team = new_team(client, events)
    await team.analyze_and_plan(TASK)
    team.approve_plan()
    fake_llm.enqueue("no tests today", role="bob")
    fake_llm.enqueue("still no tests", role="bob")
    with pytest.raises(MalformedOutputError):
        await team.execute()  # the run "crashes" in the testing phase
    saved = checkpoints(events)
    assert set(saved) == {"planning", "coding"}
    assert saved["coding"]["next_phase"] == "testing"
    fake_llm.reset()

    session = LLMSession(client, default_model="gpt-4o-mini")
    resumed = MGXStyleTeam.from_state(saved["coding"], CONFIG, session)
    result = await resumed.execute()

    assert result.outcome == "approved"
    calls = [(r.role, r.action) for r in fake_llm.requests]
    assert calls == [("bob", "WriteTest"), ("charlie", "ReviewCode")]
    assert [f.path for f in result.files] == ["primes.py"]
    # Usage keeps counting from the checkpoint: 3 calls before, 2 after.
    assert result.usage["total"]["llm_calls"] == 5
    assert "coding" in result.timings and "reviewing" in result.timings


async def test_resume_from_planning_checkpoint_needs_no_mike_calls(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    events: list[TeamEvent] = []
    planned = new_team(client, events)
    plan = await planned.analyze_and_plan(TASK)
    state = checkpoints(events)["planning"]
    assert state["plan_approved"] is False
    fake_llm.reset()

    team = MGXStyleTeam.from_state(state, CONFIG, LLMSession(client, default_model="gpt-4o-mini"))
    assert team.plan == plan
    team.approve_plan()
    result = await team.execute()

    assert result.outcome == "approved"
    assert "mike" not in {r.role for r in fake_llm.requests}


async def test_finished_state_returns_the_result_without_calls(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    team = new_team(client)
    await team.analyze_and_plan(TASK)
    team.approve_plan()
    first = await team.execute()
    fake_llm.reset()

    session = LLMSession(client, default_model="gpt-4o-mini")
    again = await MGXStyleTeam.from_state(team.state, CONFIG, session).execute()

    assert fake_llm.requests == []
    assert again.outcome == first.outcome and again.files == first.files
