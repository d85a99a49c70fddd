"""What bounds one model call and what is repaired on the way: one deadline for the whole
call, a reply size cap, tolerant UTF-8, estimated usage flagged, reasoning-model options."""

from __future__ import annotations

import asyncio
import json

import pytest

from mgx_agent.errors import LLMReplyTooLargeError, LLMTimeoutError
from mgx_agent.events import AgentMessage, RunLog, TeamEvent
from mgx_agent.llm import CallContext, LLMConfig, LLMSession, OpenAICompatibleClient
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply
from tests.model_replies import FIZZBUZZ_CODE, TASK
from tests.unit.mgx_agent.llm_support import complete_once
from tests.unit.mgx_agent.team_support import make_team

MESSAGES = [{"role": "user", "content": "Write fizzbuzz."}]
CONTEXT = CallContext(role="alex", action="WriteCode")


async def test_stream_of_keep_alives_only_ends_at_the_call_deadline(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(keepalive_only=True))
    # Each read returns within 0.05 s, so only a deadline on the whole call can end this.
    config = LLMConfig(base_url=fake_llm.base_url, stream=True, max_retries=0, timeout_seconds=0.5)
    streaming = OpenAICompatibleClient(config)
    try:
        call = streaming.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
        with pytest.raises(LLMTimeoutError, match="did not finish its reply within 0.5s"):
            await asyncio.wait_for(call, timeout=10)
    finally:
        await streaming.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_reply_over_the_size_cap_is_refused(fake_llm: FakeLLMServer, stream: bool) -> None:
    # A 5 MB reply, in 50 kB words so the fake streams it in a hundred chunks.
    fake_llm.enqueue(FakeReply(content=("x" * 50_000 + "\n") * 100))
    config = LLMConfig(base_url=fake_llm.base_url, stream=stream, max_retries=0)
    capped = OpenAICompatibleClient(config)
    try:
        with pytest.raises(LLMReplyTooLargeError) as caught:
            await capped.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await capped.aclose()
    assert caught.value.code == "llm_reply_too_large"
    assert "1000000 bytes" in caught.value.message and "MGX_LLM_MAX_REPLY_BYTES" in caught.value.message


async def test_invalid_utf8_byte_is_replaced_and_logged(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    code = f"```python\n# file: fizzbuzz.py\n# caf@\n{FIZZBUZZ_CODE}```"
    choice = {"index": 0, "message": {"role": "assistant", "content": code}, "finish_reason": "stop"}
    # A latin-1 byte inside an otherwise UTF-8 JSON body, as some proxies produce.
    raw = json.dumps({"choices": [choice]}).encode().replace(b"caf@", b"caf\xff")
    fake_llm.enqueue(FakeReply(body=raw), role="alex", action="WriteCode")
    events: list[TeamEvent] = []
    team = make_team(client, events)
    await team.analyze_and_plan(TASK)
    team.approve_plan()

    result = await team.execute()

    assert result.outcome == "approved"
    assert len(fake_llm.requests_for(action="WriteCode")) == 1
    assert "# caf\ufffd" in result.files[0].content
    warnings = [e for e in events if isinstance(e, RunLog) and "invalid UTF-8" in e.message]
    assert warnings and warnings[0].role == "alex" and warnings[0].level == "warning"


@pytest.mark.parametrize("stream", [False, True])
async def test_nul_characters_in_a_reply_are_replaced_and_noted(fake_llm: FakeLLMServer, stream: bool) -> None:
    """U+0000 (sent as the JSON escape, as a model can) reaches neither the files nor the log:
    PostgreSQL refuses it in text and jsonb, so such a reply used to fail its run there."""
    fake_llm.enqueue(FakeReply(content="def f():\n    return 'a\x00b'\n", reasoning="think\x00ing"))
    response = await complete_once(fake_llm, stream=stream, max_retries=0)
    assert response.content == "def f():\n    return 'a\ufffdb'\n"
    assert response.reasoning == "think\ufffding"
    assert [warning for warning in response.warnings if "NUL" in warning] == [
        "the reply held NUL characters (U+0000); they were replaced with U+FFFD"
    ]


async def test_estimated_token_counts_are_marked(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(FakeReply(content="no usage from this server", omit_usage=True))
    fake_llm.enqueue(FakeReply(content="usage reported"))
    session = LLMSession(client, default_model="gpt-4o-mini")

    estimated = await session.chat("alex", "WriteCode", MESSAGES)
    exact = await session.chat("bob", "WriteTest", MESSAGES)

    assert estimated.call is not None and estimated.call.estimated is True
    assert exact.call is not None and exact.call.estimated is False
    usage = session.usage.to_dict()
    assert usage["roles"]["alex"]["estimated"] is True
    assert usage["roles"]["bob"]["estimated"] is False
    assert (usage["total"]["estimated"], usage["total"]["estimated_calls"]) == (True, 1)


@pytest.mark.parametrize(
    ("model", "temperature", "limit_key"),
    [
        ("gpt-4o-mini", True, "max_tokens"),
        ("o3-mini", False, "max_completion_tokens"),
        ("openai/o4-mini", False, "max_completion_tokens"),
        ("gpt-5-mini", False, "max_completion_tokens"),
        ("qwen2.5-coder:7b", True, "max_tokens"),
    ],
)
async def test_reasoning_models_get_their_own_request_options(
    fake_llm: FakeLLMServer, model: str, temperature: bool, limit_key: str
) -> None:
    client = OpenAICompatibleClient(LLMConfig(base_url=fake_llm.base_url, max_retries=0))
    try:
        session = LLMSession(client, default_model=model, max_tokens=300)
        await session.chat("alex", "WriteCode", MESSAGES)
    finally:
        await client.aclose()
    body = fake_llm.requests[0].body
    assert ("temperature" in body) is temperature
    assert body[limit_key] == 300
    other_key = ({"max_tokens", "max_completion_tokens"} - {limit_key}).pop()
    assert other_key not in body


async def test_model_options_from_the_environment_override_the_built_in_rule(
    fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"prod-reasoner": {"send_temperature": False, "max_tokens_param": "max_completion_tokens",
                                 "extra_body": {"reasoning_effort": "low"}}}  # fmt: skip
    monkeypatch.setenv("MGX_LLM_MODEL_OPTIONS", json.dumps(options))
    config = LLMConfig(base_url=fake_llm.base_url, max_tokens=500, max_retries=0)
    client = OpenAICompatibleClient(config)
    try:
        await client.complete(MESSAGES, model="prod-reasoner", context=CONTEXT)
    finally:
        await client.aclose()
    body = fake_llm.requests[0].body
    assert "temperature" not in body and "max_tokens" not in body
    assert (body["max_completion_tokens"], body["reasoning_effort"]) == (500, "low")


async def test_agent_message_carries_no_reasoning_when_there_was_none(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    events: list[TeamEvent] = []
    team = make_team(client, events)
    await team.analyze_and_plan(TASK)
    assert all(e.reasoning is None for e in events if isinstance(e, AgentMessage))


async def test_models_without_system_messages_get_it_in_the_first_user_message(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    messages = [{"role": "system", "content": "You are Alex."}, {"role": "user", "content": "Write fizzbuzz."}]
    await client.complete(messages, model="o1-mini", context=CONTEXT)
    assert fake_llm.requests[0].messages == [{"role": "user", "content": "You are Alex.\n\nWrite fizzbuzz."}]
