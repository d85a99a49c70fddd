"""A repeated identical task is served from the response cache: memory and Redis."""

from __future__ import annotations


import pytest

from mgx_agent.cache import MemoryResponseCache, RedisResponseCache, ResponseCache
from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.llm import LLMSession, OpenAICompatibleClient
from mgx_agent.team import MGXStyleTeam, TeamResult
from mgx_agent.testing.fake_llm import FakeLLMServer

TASK = "Write a function that reverses a string"


async def run_once(
    client: OpenAICompatibleClient, cache: ResponseCache, label: str, sandbox: str
) -> TeamResult:
    sandbox_config = SandboxConfig(mode=sandbox, timeout_seconds=10)
    config = TeamConfig(auto_approve_plan=True, sandbox=sandbox_config)
    session = LLMSession(client, default_model="gpt-4o-mini", cache=cache, run_label=label)
    team = MGXStyleTeam(config, session)
    await team.analyze_and_plan(TASK)
    return await team.execute()


async def test_repeated_task_is_served_from_memory_cache(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    cache = MemoryResponseCache(max_entries=100, ttl_seconds=600)
    # With the sandbox on, the review prompt carries test output: it must not vary between runs.
    first = await run_once(client, cache, "first", sandbox="unsafe-subprocess")
    calls_after_first = len(fake_llm.requests)

    second = await run_once(client, cache, "second", sandbox="unsafe-subprocess")

    assert calls_after_first == 5
    assert len(fake_llm.requests) == calls_after_first  # zero HTTP requests for the repeat
    assert second.outcome == first.outcome == "approved"
    assert second.files == first.files and second.tests == first.tests
    assert second.usage["total"]["cache_hits"] == 5
    assert second.usage["total"]["llm_calls"] == 0
    assert first.usage["total"]["cache_misses"] == 5


@pytest.mark.redis
async def test_repeated_task_is_served_from_redis_cache(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient, redis_url: str
) -> None:
    writer = RedisResponseCache(redis_url, 600)
    reader = RedisResponseCache(redis_url, 600)  # a second process would have its own client
    try:
        first = await run_once(client, writer, "first", sandbox="off")
        calls_after_first = len(fake_llm.requests)
        second = await run_once(client, reader, "second", sandbox="off")
    finally:
        await writer.aclose()
        await reader.aclose()

    assert calls_after_first == 5
    assert len(fake_llm.requests) == calls_after_first
    assert second.outcome == "approved"
    assert second.files == first.files
    assert second.usage["total"]["cache_hits"] == 5
