"""Reasoning models: thinking is taken out of the answer before parsing, kept for the log,
and never sent back in a later prompt."""

from __future__ import annotations

import json

import pytest

from mgx_agent.events import AgentMessage, TeamEvent
from mgx_agent.llm import LLMSession, OpenAICompatibleClient
from mgx_agent.llm.reasoning import split_reasoning
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply
from tests.model_replies import (
    FIZZBUZZ_CODE,
    QWEN_REVIEW_ORPHAN_CLOSE,
    R1_ANALYZE,
    R1_CODE_WITH_DRAFT,
    TASK,
)
from tests.unit.mgx_agent.llm_support import chat_once
from tests.unit.mgx_agent.team_support import make_team


@pytest.mark.parametrize(
    ("content", "answer", "reasoning"),
    [
        ("<think>\nhmm\n</think>\n\nVERDICT: APPROVED", "VERDICT: APPROVED", "hmm"),
        ("<thinking>a</thinking><reasoning>b</reasoning>\nX", "X", "a\n\nb"),
        ("musing\n</think>\nX", "X", "musing"),
        ("<think>\n\n</think>\n\nX", "X", ""),  # Qwen3 with thinking switched off
        ("<think>still thinking when the tokens ran out", "", "still thinking when the tokens ran out"),
        ("```python\nTAG = '</think>'\n```", "```python\nTAG = '</think>'\n```", ""),
        ("plain answer", "plain answer", ""),
    ],
)
def test_reasoning_is_split_from_the_answer(content: str, answer: str, reasoning: str) -> None:
    split = split_reasoning(content)
    assert (split.answer, split.reasoning) == (answer, reasoning)


async def test_draft_code_in_think_block_does_not_count_as_the_answer(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(R1_ANALYZE, role="mike", action="AnalyzeTask")
    fake_llm.enqueue(R1_CODE_WITH_DRAFT, role="alex", action="WriteCode")
    fake_llm.enqueue(QWEN_REVIEW_ORPHAN_CLOSE, role="charlie", action="ReviewCode")
    events: list[TeamEvent] = []
    team = make_team(client, events)

    plan = await team.analyze_and_plan(TASK)
    team.approve_plan()
    result = await team.execute()

    assert plan.complexity == "XS"  # "Complexity: XS? no, maybe S" in the thinking is ignored
    assert len(fake_llm.requests_for(action="AnalyzeTask")) == 1
    assert len(fake_llm.requests_for(action="WriteCode")) == 1  # no re-ask
    assert [(f.path, f.content) for f in result.files] == [("fizzbuzz.py", FIZZBUZZ_CODE)]
    assert result.outcome == "approved"
    assert result.review is not None
    assert result.review.notes == ("The implementation matches the task and every test passes.",)
    messages = {(e.role, e.action): e for e in events if isinstance(e, AgentMessage)}
    assert "print(i)" in (messages["alex", "WriteCode"].reasoning or "")
    assert "<think>" not in messages["alex", "WriteCode"].content
    assert "Maybe the tests are wrong" in (messages["charlie", "ReviewCode"].reasoning or "")


async def test_reasoning_content_field_stays_out_of_the_answer_and_the_next_prompt(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    # DeepSeek's API: the thinking in reasoning_content; this answer breaks the format, so
    # the re-ask quotes the answer back, and must not quote the thinking.
    fake_llm.enqueue(
        FakeReply(content="Sure, fizzbuzz is easy.", reasoning="SECRET-MUSING about modulo"),
        role="alex",
        action="WriteCode",
    )
    events: list[TeamEvent] = []
    team = make_team(client, events)
    await team.analyze_and_plan(TASK)
    team.approve_plan()

    result = await team.execute()

    assert result.outcome == "approved"
    code_requests = fake_llm.requests_for(action="WriteCode")
    assert len(code_requests) == 2
    assert "Sure, fizzbuzz is easy." in code_requests[1].prompt_text
    assert all("SECRET-MUSING" not in request.prompt_text for request in fake_llm.requests)
    first = next(e for e in events if isinstance(e, AgentMessage) and e.action == "WriteCode")
    assert first.reasoning == "SECRET-MUSING about modulo"


async def test_streamed_reasoning_content_is_kept_apart(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(content="COMPLEXITY: S", reasoning="thinking hard"))
    response = await chat_once(fake_llm, model="deepseek-reasoner", stream=True, max_retries=0)
    assert (response.content, response.reasoning) == ("COMPLEXITY: S", "thinking hard")


# Content as a list of typed parts, as some OpenAI-compatible servers and gateways send it:
# Mistral's reasoning models (a thinking part holding text parts), a gateway in front of
# Anthropic models (thinking and text parts).
MISTRAL_CONTENT = [
    {"type": "thinking", "thinking": [{"type": "text", "text": "the user wants "}, {"type": "text", "text": "a size"}]},
    {"type": "text", "text": "COMPLEXITY: "},
    {"type": "text", "text": "S"},
]
GATEWAY_CONTENT = [{"type": "reasoning", "text": "small task"}, {"type": "output_text", "text": "COMPLEXITY: S"}]


@pytest.mark.parametrize(
    ("parts", "reasoning"), [(MISTRAL_CONTENT, "the user wants a size"), (GATEWAY_CONTENT, "small task")]
)
async def test_content_sent_as_a_list_of_parts_is_read_as_text_and_thinking(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient, parts: list, reasoning: str
) -> None:
    choice = {"index": 0, "message": {"role": "assistant", "content": parts}, "finish_reason": "stop"}
    fake_llm.enqueue(FakeReply(body=json.dumps({"model": "magistral", "choices": [choice]})))

    session = LLMSession(client, default_model="magistral")
    response = await session.chat("mike", "AnalyzeTask", [{"role": "user", "content": "x"}])

    assert (response.content, response.reasoning) == ("COMPLEXITY: S", reasoning)


async def test_streamed_content_parts_are_read_as_text_and_thinking(fake_llm: FakeLLMServer) -> None:
    deltas = [
        {"role": "assistant", "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]},
        {"content": [{"type": "text", "text": "COMPLEXITY: "}]},
        {"content": "S"},
    ]
    events = [{"choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    fake_llm.enqueue(FakeReply(body=body))
    response = await chat_once(fake_llm, model="magistral", stream=True, max_retries=0)
    assert (response.content, response.reasoning) == ("COMPLEXITY: S", "hmm")


async def test_a_gateway_stream_with_null_errors_and_odd_choices_is_read(fake_llm: FakeLLMServer) -> None:
    """Chunks as some gateways send them: ``"error": null`` in each, a first chunk with no
    choices (Azure's prompt filter results), a choice that is not an object, a null delta."""
    events = [
        {"choices": [], "prompt_filter_results": [{"prompt_index": 0}], "error": None},
        {"choices": [None, {"index": 0, "delta": None, "finish_reason": None}], "error": None},
        {"choices": [{"index": 0, "delta": {"content": "COMPLEXITY: S"}, "finish_reason": None}], "error": None},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "error": None},
    ]
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    fake_llm.enqueue(FakeReply(body=body))
    response = await chat_once(fake_llm, stream=True, max_retries=0)
    assert response.content == "COMPLEXITY: S"
