"""Replies cut off at the token limit, and streams that end before the reply is complete."""

from __future__ import annotations

import json

import pytest

from mgx_agent.errors import LLMStreamInterruptedError, LLMTruncatedError
from mgx_agent.events import RunLog, TeamEvent
from mgx_agent.llm import CallContext, LLMConfig, OpenAICompatibleClient
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply, demo_responder
from tests.model_replies import FIZZBUZZ_CODE, TASK, TRUNCATED_CODE
from tests.unit.mgx_agent.llm_support import complete_once
from tests.unit.mgx_agent.team_support import make_team

MESSAGES = [{"role": "user", "content": "Write fizzbuzz."}]
CONTEXT = CallContext(role="alex", action="WriteCode")


async def test_length_cut_code_is_asked_again_shorter_then_used(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(
        FakeReply(content=TRUNCATED_CODE, finish_reason="length"), role="alex", action="WriteCode"
    )
    events: list[TeamEvent] = []
    team = make_team(client, events)
    await team.analyze_and_plan(TASK)
    team.approve_plan()

    result = await team.execute()

    assert result.outcome == "approved"
    first, second = fake_llm.requests_for(action="WriteCode")
    assert "## Length" not in first.prompt_text
    assert "cut off at the output token limit" in second.prompt_text
    # The cut-off reply is not quoted back: the model answers the task afresh.
    assert 'result.append("Fizz' not in second.prompt_text
    logs = [e.message for e in events if isinstance(e, RunLog)]
    assert any("cut off" in line and "MGX_LLM_MAX_TOKENS" in line for line in logs)


async def test_cut_off_twice_fails_with_llm_truncated_naming_max_tokens(
    fake_llm: FakeLLMServer,
) -> None:
    cut = FakeReply(content=TRUNCATED_CODE, finish_reason="length")
    fake_llm.enqueue(cut, role="alex", action="WriteCode")
    fake_llm.enqueue(cut, role="alex", action="WriteCode")
    capped = OpenAICompatibleClient(LLMConfig(base_url=fake_llm.base_url, max_retries=0))
    try:
        team = make_team(capped, max_tokens=256)
        await team.analyze_and_plan(TASK)
        team.approve_plan()
        with pytest.raises(LLMTruncatedError) as caught:
            await team.execute()
    finally:
        await capped.aclose()
    assert caught.value.code == "llm_truncated"
    assert "MGX_LLM_MAX_TOKENS=256" in caught.value.message
    assert "also after asking for a shorter answer" in caught.value.message
    assert len(fake_llm.requests_for(action="WriteCode")) == 2
    assert fake_llm.requests_for(action="WriteCode")[0].body["max_tokens"] == 256


async def test_reasoning_that_uses_up_every_token_is_a_truncation(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    # QwQ still thinking when max_tokens ran out: an unclosed <think> and finish_reason length.
    thinking = FakeReply(content="<think>\nLet me consider n = 0 first...", finish_reason="length")
    fake_llm.enqueue(thinking, role="mike", action="AnalyzeTask")
    fake_llm.enqueue(thinking, role="mike", action="AnalyzeTask")
    team = make_team(client)
    with pytest.raises(LLMTruncatedError, match="while still reasoning, before any answer"):
        await team.analyze_and_plan(TASK)


async def test_stream_ending_without_finish_reason_or_done_is_retried(
    fake_llm: FakeLLMServer,
) -> None:
    code = f"```python\n# file: fizzbuzz.py\n{FIZZBUZZ_CODE}```"
    fake_llm.enqueue(FakeReply(content=code[:40], stream_ends_early=True))
    fake_llm.enqueue(FakeReply(content=code))
    response = await complete_once(fake_llm, stream=True, max_retries=1, retry_base_seconds=0)
    assert response.content == code
    assert len(fake_llm.requests) == 2


async def test_stream_cut_in_the_middle_of_a_chunk_is_retried_not_a_bad_response(
    fake_llm: FakeLLMServer,
) -> None:
    """A proxy that gives up on its upstream may still end its own response cleanly, halfway
    through a ``data:`` line. An event that never got its line's end was never sent (SSE
    dispatches only complete events): the stream was interrupted, and the call is retried."""
    first = {"choices": [{"index": 0, "delta": {"content": "COMPLEXITY"}, "finish_reason": None}]}
    cut = 'data: ' + json.dumps(first) + '\n\ndata: {"choices": [{"index": 0, "delta": {"cont'
    fake_llm.enqueue(FakeReply(body=cut))
    fake_llm.enqueue(FakeReply(content="COMPLEXITY: S"))
    response = await complete_once(fake_llm, stream=True, max_retries=1, retry_base_seconds=0)
    assert response.content == "COMPLEXITY: S"
    assert len(fake_llm.requests) == 2


async def test_a_last_chunk_without_its_line_end_still_counts(fake_llm: FakeLLMServer) -> None:
    """A sloppy server that ends the stream right after its last chunk's JSON, with no newline:
    the chunk is whole, so it is read (and its finish_reason ends the reply)."""
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "COMPLEXITY: S"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = "data: " + json.dumps(chunks[0]) + "\n\ndata: " + json.dumps(chunks[1])
    fake_llm.enqueue(FakeReply(body=body))
    response = await complete_once(fake_llm, stream=True, max_retries=0)
    assert (response.content, response.finish_reason) == ("COMPLEXITY: S", "stop")


async def test_stream_that_always_ends_early_fails_as_interrupted(fake_llm: FakeLLMServer) -> None:
    fake_llm.set_responder(
        lambda request: FakeReply(content=demo_responder(request), stream_ends_early=True)
    )
    streaming = OpenAICompatibleClient(
        LLMConfig(base_url=fake_llm.base_url, stream=True, max_retries=1, retry_base_seconds=0)
    )
    try:
        with pytest.raises(LLMStreamInterruptedError) as caught:
            await streaming.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await streaming.aclose()
    assert caught.value.code == "llm_stream_interrupted"
    assert "no finish_reason and no [DONE]" in caught.value.message
    assert len(fake_llm.requests) == 2


@pytest.mark.parametrize("reason", ["max_tokens", "MAX_TOKENS"])
async def test_gateway_names_for_the_token_limit_count_as_truncation(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient, reason: str
) -> None:
    # Anthropic's and Gemini's names, passed through by some OpenAI-compatible gateways.
    from mgx_agent.llm import LLMSession

    fake_llm.enqueue(FakeReply(content=TRUNCATED_CODE, finish_reason=reason))
    session = LLMSession(client, default_model="claude-sonnet-4")
    with pytest.raises(LLMTruncatedError, match="finish_reason=length"):
        await session.chat("alex", "WriteCode", MESSAGES)
