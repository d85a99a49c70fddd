"""OpenAICompatibleClient against the fake LLM server over real HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from mgx_agent.errors import (
    LLMAuthError,
    LLMBadResponseError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from mgx_agent.llm import CallContext, LLMConfig, OpenAICompatibleClient, TokenUsage
from mgx_agent.llm.openai_client import parse_retry_after
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply

SECRET = "sk-test-secret-0123456789"
MESSAGES = [
    {"role": "system", "content": "You are Alex, an engineer."},
    {"role": "user", "content": "Write a function that reverses a string."},
]
CONTEXT = CallContext(role="alex", action="WriteCode", run_label="run-42")


@pytest.fixture(scope="module")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMServer) -> FakeLLMServer:
    fake_llm_server.reset()
    return fake_llm_server


def client_for(url: str, **overrides: object) -> OpenAICompatibleClient:
    settings: dict[str, object] = {
        "base_url": url,
        "api_key": SECRET,
        "timeout_seconds": 5,
        "max_retries": 3,
        "retry_base_seconds": 0.01,
    }
    settings.update(overrides)
    return OpenAICompatibleClient(LLMConfig(**settings))


async def test_json_completion_returns_content_and_provider_usage(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(content="def reverse(s): return s[::-1]", usage=TokenUsage(31, 9)))
    client = client_for(fake_llm.base_url)
    try:
        response = await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    assert response.content == "def reverse(s): return s[::-1]"
    assert response.usage == TokenUsage(prompt_tokens=31, completion_tokens=9)
    assert response.provider == "openai"
    assert response.cached is False
    sent = fake_llm.requests[0]
    assert sent.stream is False
    assert sent.model == "gpt-4o-mini"
    assert sent.messages == MESSAGES
    assert sent.headers["authorization"] == f"Bearer {SECRET}"


async def test_call_context_reaches_server_as_headers(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue("ok")
    client = client_for(fake_llm.base_url)
    try:
        await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    (sent,) = fake_llm.requests
    assert (sent.role, sent.action, sent.run_label) == ("alex", "WriteCode", "run-42")


async def test_streaming_passes_deltas_in_order_and_takes_usage_from_final_chunk(
    fake_llm: FakeLLMServer,
) -> None:
    reply = "first second third fourth fifth"
    fake_llm.enqueue(FakeReply(content=reply, usage=TokenUsage(77, 5)))
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    client = client_for(fake_llm.base_url)
    try:
        response = await client.complete(
            MESSAGES, model="gpt-4o-mini", context=CONTEXT, on_delta=on_delta
        )
    finally:
        await client.aclose()
    assert len(deltas) == 5
    assert "".join(deltas) == reply
    assert response.content == reply
    assert response.usage == TokenUsage(prompt_tokens=77, completion_tokens=5)
    sent = fake_llm.requests[0]
    assert sent.stream is True
    assert sent.body["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_falls_back_to_length_estimate(fake_llm: FakeLLMServer) -> None:
    reply = "x" * 40
    fake_llm.enqueue(FakeReply(content=reply, omit_usage=True))
    client = client_for(fake_llm.base_url, stream=True)
    try:
        response = await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    prompt_chars = sum(len(m["content"]) for m in MESSAGES)
    assert response.usage == TokenUsage(
        prompt_tokens=prompt_chars // 4, completion_tokens=10, estimated=True
    )


async def test_rate_limit_then_success_waits_for_retry_after(fake_llm: FakeLLMServer) -> None:
    fake_llm.rate_limit_next(1, retry_after=1)
    fake_llm.enqueue("after the limit")
    client = client_for(fake_llm.base_url, retry_base_seconds=0)
    started = time.perf_counter()
    try:
        response = await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    elapsed = time.perf_counter() - started
    assert response.content == "after the limit"
    assert 0.95 <= elapsed < 1.5
    assert len(fake_llm.requests) == 2


async def test_fractional_retry_after_is_honoured(fake_llm: FakeLLMServer) -> None:
    fake_llm.rate_limit_next(2, retry_after=0.2)
    fake_llm.enqueue("ok")
    client = client_for(fake_llm.base_url, retry_base_seconds=0)
    started = time.perf_counter()
    try:
        await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    assert time.perf_counter() - started >= 0.38
    assert len(fake_llm.requests) == 3


async def test_retry_after_is_capped_by_max_wait(fake_llm: FakeLLMServer) -> None:
    fake_llm.rate_limit_next(1, retry_after=3600)
    fake_llm.enqueue("ok")
    client = client_for(fake_llm.base_url, retry_max_wait_seconds=0.05)
    started = time.perf_counter()
    try:
        response = await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    assert response.content == "ok"
    assert time.perf_counter() - started < 1.0


async def test_persistent_rate_limit_raises_rate_limit_error(fake_llm: FakeLLMServer) -> None:
    fake_llm.rate_limit_next(3, retry_after=0)
    client = client_for(fake_llm.base_url, max_retries=2)
    try:
        with pytest.raises(LLMRateLimitError, match="429"):
            await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    assert len(fake_llm.requests) == 3


async def test_server_errors_are_retried_then_succeed(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(2, status=503)
    fake_llm.enqueue("third time lucky")
    client = client_for(fake_llm.base_url)
    try:
        response = await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    assert response.content == "third time lucky"
    assert len(fake_llm.requests) == 3


async def test_server_errors_beyond_retries_raise_llm_error(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(2, status=500)
    client = client_for(fake_llm.base_url, max_retries=1)
    try:
        with pytest.raises(LLMError, match="HTTP 500 after 2 attempts") as caught:
            await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    assert type(caught.value) is LLMError


async def test_unauthorized_raises_auth_error_without_the_key(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(content=f"Incorrect API key provided: {SECRET}", status=401))
    client = client_for(fake_llm.base_url)
    try:
        with pytest.raises(LLMAuthError) as caught:
            await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    message = str(caught.value)
    assert "MGX_LLM_API_KEY" in message
    assert fake_llm.base_url in message
    assert SECRET not in message
    assert len(fake_llm.requests) == 1, "a rejected key is not retried"


async def test_forbidden_error_quotes_provider_but_redacts_the_key(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(content=f"key {SECRET} may not use gpt-4.1", status=403))
    client = client_for(fake_llm.base_url)
    try:
        with pytest.raises(LLMAuthError) as caught:
            await client.complete(MESSAGES, model="gpt-4.1", context=CONTEXT)
    finally:
        await client.aclose()
    assert "may not use gpt-4.1" in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_not_found_points_at_base_url_and_model(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(content="model not found", status=404))
    client = client_for(fake_llm.base_url)
    try:
        with pytest.raises(LLMError, match="MGX_LLM_BASE_URL"):
            await client.complete(MESSAGES, model="nope", context=CONTEXT)
    finally:
        await client.aclose()
    assert len(fake_llm.requests) == 1


async def test_hanging_provider_raises_timeout_error(
    fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm.enqueue(FakeReply(hang=True))
    fake_llm.enqueue(FakeReply(hang=True))
    client = client_for(fake_llm.base_url, timeout_seconds=0.2, max_retries=1)
    try:
        # The guard only stops a hang; the deadline ends each attempt after 0.2 s.
        call = client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
        with pytest.raises(LLMTimeoutError, match=r"\(2 attempts\).*MGX_LLM_TIMEOUT_SECONDS"):
            await asyncio.wait_for(call, timeout=10)
    finally:
        await client.aclose()
    # Each attempt's deadline covers connecting too, so under load the second one may end
    # before the server logs it: the retry is counted from the client's side.
    assert "retry 1 of 1" in caplog.text
    assert len(fake_llm.requests) >= 1


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        '{"id": "x", "choices": []}',
        '{"choices": [{"index": 0, "message": {"role": "assistant"}}]}',
        '["a", "list"]',
        "[" * 100_000,  # deeper than the decoder goes: a RecursionError, not a ValueError
    ],
    ids=["not-json", "no-choices", "no-content", "not-an-object", "nested-too-deeply"],
)
async def test_malformed_body_raises_bad_response(fake_llm: FakeLLMServer, body: str) -> None:
    fake_llm.enqueue(FakeReply(body=body))
    client = client_for(fake_llm.base_url)
    try:
        with pytest.raises(LLMBadResponseError):
            await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    assert len(fake_llm.requests) == 1


async def test_reply_cut_off_before_any_content_reports_finish_reason_length(
    fake_llm: FakeLLMServer,
) -> None:
    # All tokens went to reasoning: content null, finish_reason length (the session raises).
    message = {"role": "assistant", "content": None, "reasoning_content": "Let me think"}
    choice = {"index": 0, "message": message, "finish_reason": "length"}
    body = json.dumps({"choices": [choice]})
    fake_llm.enqueue(FakeReply(body=body))
    client = client_for(fake_llm.base_url)
    try:
        response = await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    assert (response.content, response.finish_reason) == ("", "length")
    assert response.reasoning == "Let me think"


@pytest.mark.parametrize("chunk", ["{broken", "[" * 100_000], ids=["not-json", "nested-too-deeply"])
async def test_malformed_stream_raises_bad_response(fake_llm: FakeLLMServer, chunk: str) -> None:
    fake_llm.enqueue(FakeReply(body=f"data: {chunk}\n\n"))
    client = client_for(fake_llm.base_url, stream=True)
    try:
        with pytest.raises(LLMBadResponseError, match="stream chunk"):
            await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_raises_connection_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    client = client_for(url, max_retries=1)
    try:
        with pytest.raises(LLMConnectionError, match="could not reach") as caught:
            await client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT)
    finally:
        await client.aclose()
    assert url in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_cancelling_an_in_flight_call_returns_promptly(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(hang=True))
    client = client_for(fake_llm.base_url, timeout_seconds=30)
    try:
        call = asyncio.create_task(client.complete(MESSAGES, model="gpt-4o-mini", context=CONTEXT))
        while not fake_llm.requests:
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert time.perf_counter() - started < 1.0
    finally:
        await client.aclose()
    await asyncio.sleep(0.05)
    assert len(fake_llm.requests) == 1, "no retry after a cancel"


async def test_given_http_client_is_used_and_left_open(fake_llm: FakeLLMServer) -> None:
    import httpx

    fake_llm.enqueue("shared")
    async with httpx.AsyncClient() as http:
        client = OpenAICompatibleClient(LLMConfig(base_url=fake_llm.base_url), http_client=http)
        response = await client.complete(MESSAGES, model="m", context=CONTEXT)
        await client.aclose()
        assert not http.is_closed
    assert response.content == "shared"
    assert "authorization" not in fake_llm.requests[0].headers


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0.0
    now = time.time()
    assert parse_retry_after(formatdate(now + 10, usegmt=True), now=now) == pytest.approx(10, abs=1)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
