"""One model call through a client of its own, closed afterwards: the shape of the client
tests that need their own settings (streaming, retries) rather than the ``client`` fixture's."""

from __future__ import annotations

from typing import Any

from mgx_agent.llm import CallContext, LLMConfig, LLMSession, OpenAICompatibleClient
from mgx_agent.llm.base import LLMResponse
from mgx_agent.testing.fake_llm import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Write fizzbuzz."}]
CONTEXT = CallContext(role="alex", action="WriteCode")


async def complete_once(fake_llm: FakeLLMServer, **config: Any) -> LLMResponse:
    """``OpenAICompatibleClient.complete`` once, as Alex writing code."""
    client = OpenAICompatibleClient(LLMConfig(base_url=fake_llm.base_url, **config))
    try:
        return await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()


async def chat_once(fake_llm: FakeLLMServer, *, model: str = "gpt-4o-mini", **config: Any) -> LLMResponse:
    """One turn through an ``LLMSession`` (reasoning split off), as Mike analysing the task."""
    client = OpenAICompatibleClient(LLMConfig(base_url=fake_llm.base_url, **config))
    try:
        session = LLMSession(client, default_model=model)
        return await session.chat("mike", "AnalyzeTask", [{"role": "user", "content": "x"}])
    finally:
        await client.aclose()
