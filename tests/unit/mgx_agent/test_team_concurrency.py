"""Teams under concurrency: prompt cancellation and many runs sharing one loop and client."""

from __future__ import annotations

import asyncio
import time

import pytest

from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.llm import LLMSession, OpenAICompatibleClient
from mgx_agent.team import MGXStyleTeam, TeamResult
from mgx_agent.testing.fake_llm import FakeLLMServer

TASKS = (
    "fizzbuzz up to n",
    "check whether a number is prime",
    "slugify a blog post title",
    "Build an inventory tracker for a small bakery with suppliers",
)


def make_team(client: OpenAICompatibleClient, run_label: str) -> MGXStyleTeam:
    config = TeamConfig(auto_approve_plan=True, sandbox=SandboxConfig(mode="off"))
    session = LLMSession(client, default_model="gpt-4o-mini", run_label=run_label)
    return MGXStyleTeam(config, session)


async def run_task(client: OpenAICompatibleClient, task: str, run_label: str) -> TeamResult:
    team = make_team(client, run_label)
    await team.analyze_and_plan(task)
    return await team.execute()


async def test_cancel_stops_an_inflight_run_within_a_second(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.latency_seconds = 30
    run = asyncio.create_task(run_task(client, TASKS[0], "cancel-me"))
    while not fake_llm.requests:
        await asyncio.sleep(0.01)

    started = time.perf_counter()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert len(fake_llm.requests) == 1  # nothing was sent after the cancel


async def test_twenty_parallel_teams_keep_separate_usage(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    solo = {task: (await run_task(client, task, f"solo-{n}")).usage for n, task in enumerate(TASKS)}
    fake_llm.reset()
    fake_llm.latency_seconds = 0.02
    labels = [f"par-{n}" for n in range(20)]

    results = await asyncio.gather(
        *(run_task(client, TASKS[n % len(TASKS)], label) for n, label in enumerate(labels))
    )

    for n, result in enumerate(results):
        task = TASKS[n % len(TASKS)]
        assert result.outcome == "approved"
        assert result.usage == solo[task], f"run {n} ({task}) has usage of another run"
        assert len([r for r in fake_llm.requests if r.run_label == labels[n]]) == 5
    assert len(fake_llm.requests) == 100
    # The runs really overlapped: the first run's last call came after another run's first.
    first_run = [r.received_at for r in fake_llm.requests if r.run_label == labels[0]]
    others_first = min(r.received_at for r in fake_llm.requests if r.run_label != labels[0])
    assert others_first < max(first_run)
