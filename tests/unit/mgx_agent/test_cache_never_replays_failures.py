"""The response cache keeps only answers their action accepted: a retried run of a task that
failed reaches the model again instead of replaying the failure."""

from __future__ import annotations

import pytest

from mgx_agent import prompts
from mgx_agent.actions import ActionContext
from mgx_agent.cache import MemoryResponseCache, RedisResponseCache, ResponseCache
from mgx_agent.errors import LLMTruncatedError, MalformedOutputError
from mgx_agent.events import TeamEvent
from mgx_agent.llm import LLMSession, OpenAICompatibleClient
from mgx_agent.parsing import parse_code_files
from mgx_agent.roles import ALEX
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply
from tests.model_replies import TASK, TRUNCATED_CODE
from tests.unit.mgx_agent.team_support import make_team

PROSE_ONLY = "Sure! You can implement FizzBuzz with a loop and the modulo operator."


async def plan_and_execute(client: OpenAICompatibleClient, cache: ResponseCache, label: str):  # type: ignore[no-untyped-def]
    team = make_team(client, cache=cache, run_label=label, auto_approve_plan=True)
    await team.analyze_and_plan(TASK)
    return await team.execute()


async def test_failed_run_retried_as_a_new_run_reaches_the_model_again(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    cache = MemoryResponseCache()
    fake_llm.enqueue(PROSE_ONLY, role="alex", action="WriteCode")
    fake_llm.enqueue(PROSE_ONLY, role="alex", action="WriteCode")
    with pytest.raises(MalformedOutputError):
        await plan_and_execute(client, cache, "run-1")

    second = await plan_and_execute(client, cache, "run-2")

    assert second.outcome == "approved"
    run_2 = [r.action for r in fake_llm.requests if r.run_label == "run-2"]
    # Planning was accepted in run 1 and is served from the cache; the code is asked for anew.
    assert run_2 == ["WriteCode", "WriteTest", "ReviewCode"]
    assert second.usage["roles"]["mike"]["cache_hits"] == 2


async def test_reply_accepted_only_after_a_re_ask_is_not_cached(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    cache = MemoryResponseCache()
    fake_llm.enqueue(PROSE_ONLY, role="alex", action="WriteCode")  # refused, then re-asked
    await plan_and_execute(client, cache, "run-1")

    await plan_and_execute(client, cache, "run-2")

    # The first ask of run 2 finds nothing: neither the refused reply nor the corrected one.
    assert [r.action for r in fake_llm.requests if r.run_label == "run-2"] == ["WriteCode"]


async def test_truncated_reply_is_not_cached(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    cache = MemoryResponseCache()
    cut = FakeReply(content=TRUNCATED_CODE, finish_reason="length")
    fake_llm.enqueue(cut, role="alex", action="WriteCode")
    fake_llm.enqueue(cut, role="alex", action="WriteCode")
    with pytest.raises(LLMTruncatedError):
        await plan_and_execute(client, cache, "run-1")

    second = await plan_and_execute(client, cache, "run-2")

    assert second.outcome == "approved"
    assert "WriteCode" in [r.action for r in fake_llm.requests if r.run_label == "run-2"]


async def test_cached_reply_that_no_longer_parses_is_evicted_from_memory(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    await check_stale_entry_is_evicted(fake_llm, client, MemoryResponseCache())


@pytest.mark.redis
async def test_cached_reply_that_no_longer_parses_is_evicted_from_redis(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient, redis_url: str
) -> None:
    await check_stale_entry_is_evicted(fake_llm, client, RedisResponseCache(redis_url, 600))


async def check_stale_entry_is_evicted(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient, cache: ResponseCache
) -> None:
    messages = [
        {"role": "system", "content": ALEX.system_prompt},
        {"role": "user", "content": "## Task\nWrite fizzbuzz\n"},
    ]
    events: list[TeamEvent] = []

    async def emit(event: TeamEvent) -> None:
        events.append(event)

    try:
        # An entry written by an older parser that accepted it.
        stale = LLMSession(client, default_model="gpt-4o-mini", cache=cache)
        fake_llm.enqueue(PROSE_ONLY)
        await stale.accept(await stale.chat("alex", "WriteCode", messages))

        session = LLMSession(client, default_model="gpt-4o-mini", cache=cache)
        ctx = ActionContext(session, emit)
        prompt = messages[1]["content"]
        await ctx.ask(ALEX, "WriteCode", prompt, parse_code_files, prompts.CODE_FORMAT)
        requests_before = len(fake_llm.requests)
        later = LLMSession(client, default_model="gpt-4o-mini", cache=cache)
        await later.chat("alex", "WriteCode", messages)
    finally:
        await cache.aclose()

    assert session.usage.total.cache_hits == 1  # the stale entry was served once ...
    assert len(fake_llm.requests) == requests_before + 1  # ... and never again
