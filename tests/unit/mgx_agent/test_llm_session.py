"""LLMSession: model choice, budget, usage accounting and caching, over the fake LLM server."""

from __future__ import annotations

import asyncio

import pytest

from mgx_agent.cache import MemoryResponseCache, NoCache, RedisResponseCache
from mgx_agent.errors import BudgetExceededError
from mgx_agent.llm import (
    LLMConfig,
    LLMSession,
    ModelPrice,
    OpenAICompatibleClient,
    PriceTable,
    TokenUsage,
)
from mgx_agent.metrics import LLMCall
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply

MESSAGES = [{"role": "user", "content": "Plan a word counter."}]


async def test_chat_records_usage_and_cost_per_role(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(FakeReply(content="plan", usage=TokenUsage(1_000_000, 0)), role="mike")
    fake_llm.enqueue(FakeReply(content="code", usage=TokenUsage(0, 1_000_000)), role="alex")
    session = LLMSession(client, default_model="gpt-4o-mini", run_label="run-1")

    await session.chat("mike", "DraftPlan", MESSAGES)
    await session.chat("alex", "WriteCode", MESSAGES)

    usage = session.usage.to_dict()
    assert usage["roles"]["mike"]["cost_usd"] == pytest.approx(0.15)
    assert usage["roles"]["alex"]["cost_usd"] == pytest.approx(0.60)
    assert usage["total"]["cost_usd"] == pytest.approx(0.75)
    assert usage["total"]["llm_calls"] == 2
    assert usage["total"]["prompt_tokens"] == 1_000_000
    assert usage["total"]["completion_tokens"] == 1_000_000
    assert usage["total"]["cost_known"] is True


async def test_role_models_pick_the_model_sent_to_the_provider(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    session = LLMSession(
        client, default_model="gpt-4o-mini", role_models={"alex": "gpt-4.1"}
    )
    fake_llm.enqueue("a")
    fake_llm.enqueue("b")
    await session.chat("alex", "WriteCode", MESSAGES)
    await session.chat("bob", "WriteTest", MESSAGES)
    assert [r.model for r in fake_llm.requests] == ["gpt-4.1", "gpt-4o-mini"]


async def test_session_sends_its_temperature_and_max_tokens(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue("ok")
    session = LLMSession(client, default_model="m", temperature=0.7, max_tokens=321)
    await session.chat("bob", "WriteTest", MESSAGES)
    body = fake_llm.requests[0].body
    assert (body["temperature"], body["max_tokens"]) == (0.7, 321)


async def test_session_headers_reach_the_server(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue("verdict")
    session = LLMSession(client, default_model="gpt-4o-mini", run_label="run-77")
    await session.chat("charlie", "ReviewCode", MESSAGES)
    (sent,) = fake_llm.requests
    assert (sent.role, sent.action, sent.run_label) == ("charlie", "ReviewCode", "run-77")


async def test_budget_is_checked_before_the_call_once_spent(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    prices = PriceTable({"priced": ModelPrice(prompt=1.0, completion=1.0)})
    session = LLMSession(client, default_model="priced", budget_usd=0.01, prices=prices)
    fake_llm.enqueue(FakeReply(content="expensive", usage=TokenUsage(10_000, 0)))

    await session.chat("alex", "WriteCode", MESSAGES)
    assert session.spent_usd == pytest.approx(0.01)
    with pytest.raises(BudgetExceededError, match="budget_usd"):
        await session.chat("alex", "WriteCode", MESSAGES)
    assert len(fake_llm.requests) == 1, "the refused call never reached the provider"


async def test_call_under_budget_is_made(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    prices = PriceTable({"priced": ModelPrice(prompt=1.0, completion=1.0)})
    session = LLMSession(client, default_model="priced", budget_usd=0.02, prices=prices)
    fake_llm.enqueue(FakeReply(content="a", usage=TokenUsage(10_000, 0)))
    fake_llm.enqueue(FakeReply(content="b", usage=TokenUsage(10_000, 0)))
    await session.chat("alex", "WriteCode", MESSAGES)
    await session.chat("alex", "WriteCode", MESSAGES + [{"role": "user", "content": "again"}])
    assert session.usage.total.llm_calls == 2


async def test_unknown_model_costs_nothing_and_is_marked_unknown(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(FakeReply(content="x", usage=TokenUsage(5000, 5000)))
    session = LLMSession(client, default_model="llama3.1:8b", budget_usd=0.001)
    await session.chat("alex", "WriteCode", MESSAGES)
    total = session.usage.to_dict()["total"]
    assert total["cost_usd"] == 0
    assert total["cost_known"] is False
    assert total["completion_tokens"] == 5000


async def test_dated_model_in_the_answer_is_priced_by_its_family(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(
        FakeReply(content="x", usage=TokenUsage(1_000_000, 0), model="gpt-4o-2024-08-06")
    )
    session = LLMSession(client, default_model="gpt-4o")
    response = await session.chat("alex", "WriteCode", MESSAGES)
    assert response.model == "gpt-4o-2024-08-06"
    assert session.spent_usd == pytest.approx(2.50)


async def test_each_answer_carries_its_call_as_the_session_priced_it(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(
        FakeReply(content="x", usage=TokenUsage(1_000_000, 500_000), model="gpt-4o-2024-08-06")
    )
    fake_llm.enqueue(FakeReply(content="y", usage=TokenUsage(10, 20)))
    session = LLMSession(client, default_model="gpt-4o", role_models={"bob": "local-model"})

    priced = await session.chat("alex", "WriteCode", MESSAGES)
    unpriced = await session.chat("bob", "WriteTest", MESSAGES)

    assert priced.call == LLMCall(
        model="gpt-4o-2024-08-06",
        prompt_tokens=1_000_000,
        completion_tokens=500_000,
        cost_usd=pytest.approx(7.50),
        cost_known=True,
        cache=None,
    )
    assert unpriced.call is not None
    assert (unpriced.call.prompt_tokens, unpriced.call.completion_tokens) == (10, 20)
    assert (unpriced.call.cost_usd, unpriced.call.cost_known) == (0.0, False)


async def test_cache_outcome_is_on_the_call_and_a_hit_costs_nothing(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    cache = MemoryResponseCache(max_entries=10, ttl_seconds=60)
    fake_llm.enqueue(FakeReply(content="answer", usage=TokenUsage(100, 50)))
    session = LLMSession(client, default_model="gpt-4o-mini", cache=cache)

    miss = await session.chat("alex", "WriteCode", MESSAGES)
    await session.accept(miss)
    hit = await session.chat("alex", "WriteCode", MESSAGES)

    assert miss.call is not None and hit.call is not None
    assert (miss.call.cache, miss.call.prompt_tokens, miss.call.cost_usd > 0) == ("miss", 100, True)
    assert hit.call == LLMCall(model=miss.model, cache="hit")


async def test_memory_cache_hit_makes_no_request_and_costs_nothing(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    cache = MemoryResponseCache(max_entries=10, ttl_seconds=60)
    fake_llm.enqueue(FakeReply(content="cached answer", usage=TokenUsage(100, 50)))
    first = LLMSession(client, default_model="gpt-4o-mini", cache=cache)
    second = LLMSession(client, default_model="gpt-4o-mini", cache=cache)

    miss = await first.chat("alex", "WriteCode", MESSAGES)
    await first.accept(miss)
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    hit = await second.chat("alex", "WriteCode", MESSAGES, on_delta=on_delta)

    assert len(fake_llm.requests) == 1
    assert (miss.cached, hit.cached) == (False, True)
    assert hit.content == "cached answer"
    assert deltas == ["cached answer"]
    assert first.usage.total.cache_misses == 1
    second_total = second.usage.to_dict()["total"]
    assert second_total["cache_hits"] == 1
    assert second_total["llm_calls"] == 0
    assert second_total["prompt_tokens"] == 0
    assert second_total["cost_usd"] == 0


async def test_cache_key_separates_models_and_actions(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    cache = MemoryResponseCache()
    session = LLMSession(
        client, default_model="gpt-4o-mini", role_models={"bob": "gpt-4.1"}, cache=cache
    )
    await session.chat("alex", "WriteCode", MESSAGES)
    await session.chat("bob", "WriteCode", MESSAGES)
    await session.chat("alex", "ReviewCode", MESSAGES)
    assert len(fake_llm.requests) == 3
    assert session.usage.total.cache_hits == 0


async def test_no_cache_counts_neither_hits_nor_misses(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    session = LLMSession(client, default_model="m", cache=NoCache())
    await session.chat("alex", "WriteCode", MESSAGES)
    await session.chat("alex", "WriteCode", MESSAGES)
    total = session.usage.total
    assert (total.cache_hits, total.cache_misses, total.llm_calls) == (0, 0, 2)


async def test_redis_cache_serves_a_second_session(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient, redis_url: str
) -> None:
    writer_cache = RedisResponseCache(redis_url, ttl_seconds=60)
    reader_cache = RedisResponseCache(redis_url, ttl_seconds=60)
    fake_llm.enqueue("from the provider")
    try:
        first = LLMSession(client, default_model="gpt-4o-mini", cache=writer_cache)
        second = LLMSession(client, default_model="gpt-4o-mini", cache=reader_cache)
        await first.accept(await first.chat("mike", "AnalyzeTask", MESSAGES))
        hit = await second.chat("mike", "AnalyzeTask", MESSAGES)
    finally:
        await writer_cache.aclose()
        await reader_cache.aclose()
    assert hit.cached is True
    assert hit.content == "from the provider"
    assert len(fake_llm.requests) == 1
    assert reader_cache.stats()["hits"] == 1


async def test_parallel_sessions_on_one_client_keep_separate_usage(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    def reply_by_run(request):  # each run's token counts encode its index
        index = int(request.run_label.split("-")[1])
        usage = TokenUsage(index + 1, 2 * (index + 1))
        return FakeReply(content="x", usage=usage, delay_seconds=0.01)

    fake_llm.set_responder(reply_by_run)
    sessions = [LLMSession(client, default_model="m", run_label=f"run-{i}") for i in range(20)]

    async def run(session: LLMSession) -> None:
        for action in ("AnalyzeTask", "DraftPlan", "WriteCode"):
            await session.chat("mike" if action != "WriteCode" else "alex", action, MESSAGES)

    await asyncio.gather(*(run(s) for s in sessions))

    assert len(fake_llm.requests) == 60
    for index, session in enumerate(sessions):
        total = session.usage.total
        assert total.llm_calls == 3
        assert total.prompt_tokens == 3 * (index + 1)
        assert total.completion_tokens == 6 * (index + 1)
        assert session.usage.roles["alex"].llm_calls == 1
        assert session.usage.roles["mike"].llm_calls == 2


def test_budget_must_be_positive() -> None:
    client = OpenAICompatibleClient(LLMConfig(base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(ValueError):
        LLMSession(client, default_model="m", budget_usd=0)
