"""Fixtures for team tests: one fake LLM server per test module, reset for each test, and an
OpenAI-compatible client talking to it over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from mgx_agent.llm import LLMConfig, OpenAICompatibleClient
from mgx_agent.testing.fake_llm import FakeLLMServer


@pytest.fixture(scope="module")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMServer) -> FakeLLMServer:
    fake_llm_server.reset()
    return fake_llm_server


@pytest.fixture
async def client(fake_llm: FakeLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    config = LLMConfig(base_url=fake_llm.base_url, max_retries=0, timeout_seconds=30)
    client = OpenAICompatibleClient(config)
    yield client
    await client.aclose()
