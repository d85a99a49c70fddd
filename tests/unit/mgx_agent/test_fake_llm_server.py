"""FakeLLMServer speaks the Chat Completions wire protocol and follows its script."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply

HEADERS = {"X-MGX-Role": "mike", "X-MGX-Action": "DraftPlan", "X-MGX-Run": "r1"}


def chat_body(text: str = "hello", **extra: object) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture(scope="module")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMServer) -> FakeLLMServer:
    fake_llm_server.reset()
    return fake_llm_server


def test_json_completion_has_openai_shape_and_estimated_usage(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue("12345678")
    url = f"{fake_llm.base_url}/chat/completions"
    response = httpx.post(url, json=chat_body("abcd"), headers=HEADERS)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "12345678"}
    assert body["usage"]["completion_tokens"] == 2
    assert body["usage"]["prompt_tokens"] > 1
    (logged,) = fake_llm.requests
    assert (logged.role, logged.action, logged.run_label, logged.model) == (
        "mike", "DraftPlan", "r1", "gpt-4o-mini",
    )


def test_stream_sends_sse_chunks_usage_and_done(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue("one two")
    body = chat_body(stream=True, stream_options={"include_usage": True})
    with httpx.stream("POST", f"{fake_llm.base_url}/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "one two"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2


def test_stream_without_include_usage_sends_no_usage(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue("one two")
    url = f"{fake_llm.base_url}/chat/completions"
    with httpx.stream("POST", url, json=chat_body(stream=True)) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    assert all("usage" not in json.loads(line[6:]) for line in lines)


def test_script_is_matched_by_role_and_action(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue("for bob", role="bob")
    fake_llm.enqueue("for mike's plan", role="mike", action="DraftPlan")
    fake_llm.enqueue("for anyone")
    url = f"{fake_llm.base_url}/chat/completions"
    as_mike = httpx.post(url, json=chat_body(), headers=HEADERS).json()
    as_bob = httpx.post(url, json=chat_body(), headers={"X-MGX-Role": "bob"}).json()
    as_mike_again = httpx.post(url, json=chat_body(), headers=HEADERS).json()
    assert as_mike["choices"][0]["message"]["content"] == "for mike's plan"
    assert as_bob["choices"][0]["message"]["content"] == "for bob"
    assert as_mike_again["choices"][0]["message"]["content"] == "for anyone"
    assert fake_llm.pending_replies == 0


def test_failures_jump_the_queue_with_status_and_retry_after(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue("eventually")
    fake_llm.rate_limit_next(1, retry_after=2)
    fake_llm.fail_next(1, status=502)
    url = f"{fake_llm.base_url}/chat/completions"
    first, second, third = (httpx.post(url, json=chat_body()) for _ in range(3))
    assert first.status_code == 502
    assert second.status_code == 429 and second.headers["retry-after"] == "2"
    assert "error" in second.json()
    assert third.json()["choices"][0]["message"]["content"] == "eventually"


def test_responder_answers_unscripted_requests(fake_llm: FakeLLMServer) -> None:
    fake_llm.set_responder(lambda request: f"echo: {request.prompt_text}")
    response = httpx.post(f"{fake_llm.base_url}/chat/completions", json=chat_body("ping"))
    assert response.json()["choices"][0]["message"]["content"] == "echo: ping"


def test_default_responder_is_the_demo_model(fake_llm: FakeLLMServer) -> None:
    from mgx_agent.llm.base import CallContext
    from mgx_agent.llm.demo import demo_reply

    messages = [{"role": "user", "content": "Write a fizzbuzz function."}]
    response = httpx.post(
        f"{fake_llm.base_url}/chat/completions",
        json={"model": "m", "messages": messages},
        headers={"X-MGX-Role": "mike", "X-MGX-Action": "AnalyzeTask"},
    )
    expected = demo_reply(CallContext(role="mike", action="AnalyzeTask"), messages)
    assert response.json()["choices"][0]["message"]["content"] == expected


def test_latency_applies_to_every_reply(fake_llm: FakeLLMServer) -> None:
    fake_llm.latency_seconds = 0.15
    fake_llm.enqueue("slow")
    started = time.perf_counter()
    httpx.post(f"{fake_llm.base_url}/chat/completions", json=chat_body())
    assert time.perf_counter() - started >= 0.15


def test_models_and_bad_requests(fake_llm: FakeLLMServer) -> None:
    models = httpx.get(f"{fake_llm.base_url}/models").json()
    assert models["object"] == "list" and models["data"]
    bad = httpx.post(f"{fake_llm.base_url}/chat/completions", content=b"{nope")
    assert bad.status_code == 400
    no_messages = httpx.post(f"{fake_llm.base_url}/chat/completions", json={"model": "m"})
    assert no_messages.status_code == 400


def test_reset_forgets_script_log_and_latency(fake_llm: FakeLLMServer) -> None:
    httpx.post(f"{fake_llm.base_url}/chat/completions", json=chat_body())
    fake_llm.enqueue("unused", role="nobody")
    fake_llm.set_responder(lambda request: "from the responder")
    fake_llm.latency_seconds = 5
    fake_llm.reset()
    assert fake_llm.requests == [] and fake_llm.pending_replies == 0
    assert fake_llm.latency_seconds == 0
    fake_llm.enqueue("fresh")
    reply = httpx.post(f"{fake_llm.base_url}/chat/completions", json=chat_body())
    assert reply.json()["choices"][0]["message"]["content"] == "fresh"


def test_stop_does_not_wait_for_a_hanging_reply() -> None:
    server = FakeLLMServer().start()
    server.enqueue(FakeReply(hang=True))
    url = f"{server.base_url}/chat/completions"

    def call() -> None:
        try:
            httpx.post(url, json=chat_body(), timeout=5)
        except httpx.HTTPError:
            pass

    caller = threading.Thread(target=call)
    caller.start()
    while not server.requests:
        time.sleep(0.01)
    started = time.perf_counter()
    server.stop()
    caller.join(timeout=5)
    assert time.perf_counter() - started < 2.5
    assert not caller.is_alive()


async def test_async_context_manager_serves_inside_an_event_loop() -> None:
    async with FakeLLMServer(latency_seconds=0.01) as server:
        server.enqueue("async ok")
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{server.base_url}/chat/completions", json=chat_body())
        await asyncio.sleep(0)
    assert response.json()["choices"][0]["message"]["content"] == "async ok"


def test_module_entry_point_serves_on_the_given_port() -> None:
    command = [sys.executable, "-m", "mgx_agent.testing.fake_llm", "--port", "0"]
    command += ["--latency-ms", "1"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with subprocess.Popen(command, **pipes) as process:
        try:
            line = process.stdout.readline().strip()
            assert line.startswith("fake LLM listening on http://127.0.0.1:")
            base_url = line.rsplit(" ", 1)[1]
            assert httpx.get(f"{base_url}/models").status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=5)
    assert process.returncode == 0
