"""FakeLLMServer: a real OpenAI Chat Completions server on a loopback port, for tests and benches.

It speaks the wire protocol (JSON and SSE streaming, usage, error bodies, Retry-After), so the
code under test runs its real HTTP client. Replies come from a script (``enqueue``), a
responder function, or - when nothing is scripted - the offline demo model, so a whole team
run works against it unscripted. Every chat request is logged with the X-MGX-Role / Action /
Run headers the client sends.

Run it standalone: ``python -m mgx_agent.testing.fake_llm --port 8099 --latency-ms 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mgx_agent.llm.base import CallContext, TokenUsage

# Providers bill a few tokens of framing per message; the fake does too, so its prompt counts
# differ from the client's own len/4 fallback estimate and tests can tell them apart.
_TOKENS_PER_MESSAGE = 4
_STREAM_PIECE = re.compile(r"\s*\S+|\s+")
_START_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class FakeReply:
    """One scripted answer. ``body`` replaces the whole response body (for malformed replies);
    ``hang`` never answers (for timeouts and cancellation); ``usage`` overrides token counts;
    ``omit_usage`` leaves usage out like some local servers do.

    Shaped like real providers: ``finish_reason`` ("length" for a reply cut off at the token
    limit); ``reasoning`` sent in a ``reasoning_content`` field (DeepSeek, vLLM's reasoning
    parser); ``stream_ends_early`` stops a stream after the content with neither a
    finish_reason nor ``[DONE]`` (a dropped proxy connection); ``keepalive_only`` streams SSE
    keep-alive comments and never any data."""

    content: str = ""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    body: str | bytes | None = None
    hang: bool = False
    usage: TokenUsage | None = None
    omit_usage: bool = False
    model: str | None = None
    finish_reason: str = "stop"
    reasoning: str | None = None
    stream_ends_early: bool = False
    keepalive_only: bool = False


@dataclass(frozen=True)
class FakeRequest:
    """One chat completion request as the server received it."""

    role: str | None
    action: str | None
    run_label: str | None
    model: str | None
    messages: list[dict[str, Any]]
    stream: bool
    received_at: float
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def prompt_text(self) -> str:
        """All message contents joined, for assertions about what a prompt contained."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


Responder = Callable[[FakeRequest], "str | FakeReply | None"]


@dataclass
class _Scripted:
    reply: FakeReply
    role: str | None
    action: str | None

    def matches(self, request: FakeRequest) -> bool:
        return (self.role is None or self.role == request.role) and (
            self.action is None or self.action == request.action
        )


def demo_responder(request: FakeRequest) -> str:
    """Answers like the offline demo model would for the same call."""
    # Imported on use: the demo model lives in another module that this one must not require.
    from mgx_agent.llm.demo import demo_reply

    context = CallContext(
        role=request.role or "", action=request.action or "", run_label=request.run_label or ""
    )
    messages = [
        {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
        for m in request.messages
    ]
    return demo_reply(context, messages)


class FakeLLMServer:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency_seconds: float = 0.0):
        self.host = host
        self.latency_seconds = latency_seconds
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._script: list[_Scripted] = []
        self._responder: Responder | None = None
        self._requests: list[FakeRequest] = []
        self._closing = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake LLM server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> FakeLLMServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._closing.clear()
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-llm", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fake LLM server did not start on {self.host}:{self._port}")
            time.sleep(0.005)
        with socket.create_connection((self.host, self._port), timeout=_START_TIMEOUT_SECONDS):
            pass
        return self

    def stop(self) -> None:
        if self._thread is None or self._server is None:
            return
        # Hanging handlers watch _closing, so shutdown does not wait for them.
        self._closing.set()
        self._server.should_exit = True
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._thread = None
        self._server = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeLLMServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def enqueue(
        self, reply: str | FakeReply, *, role: str | None = None, action: str | None = None
    ) -> None:
        """Script the next reply to a request matching role/action (None matches any)."""
        with self._lock:
            self._script.append(_Scripted(_as_reply(reply), role, action))

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """The next n requests fail with ``status``, ahead of anything already scripted."""
        reply = FakeReply(content=f"fake failure {status}", status=status)
        with self._lock:
            self._script[:0] = [_Scripted(reply, None, None) for _ in range(n)]

    def rate_limit_next(self, n: int = 1, retry_after: float = 1) -> None:
        """The next n requests answer 429 with a Retry-After header."""
        reply = FakeReply(
            content="fake rate limit", status=429, headers={"Retry-After": f"{retry_after:g}"}
        )
        with self._lock:
            self._script[:0] = [_Scripted(reply, None, None) for _ in range(n)]

    def set_responder(self, responder: Responder | None) -> None:
        """Answer unscripted requests with ``responder``; returning None falls back to the demo."""
        with self._lock:
            self._responder = responder

    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(
        self, *, role: str | None = None, action: str | None = None
    ) -> list[FakeRequest]:
        return [
            r
            for r in self.requests
            if (role is None or r.role == role) and (action is None or r.action == action)
        ]

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        """Forget the script, the responder, the request log and the latency."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._responder = None
        self.latency_seconds = 0.0

    async def _models(self, request: Request) -> Response:
        created = int(time.time())
        models = ["mgx-fake", "mgx-demo", "gpt-4o-mini"]
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": created, "owned_by": "mgx"}
                    for m in models
                ],
            }
        )

    async def _chat_completions(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list", "invalid_request_error")
        logged = FakeRequest(
            role=request.headers.get("x-mgx-role"),
            action=request.headers.get("x-mgx-action"),
            run_label=request.headers.get("x-mgx-run"),
            model=body.get("model"),
            messages=body["messages"],
            stream=bool(body.get("stream")),
            received_at=time.time(),
            body=body,
            headers=dict(request.headers),
        )
        with self._lock:
            self._requests.append(logged)
        try:
            reply = self._reply_for(logged)
        except Exception as exc:  # a broken responder is reported to the client, not hidden
            problem = f"fake responder failed: {type(exc).__name__}: {exc}"
            return _error(500, problem, "server_error")

        delay = self.latency_seconds + reply.delay_seconds
        if delay > 0:
            await asyncio.sleep(delay)
        if reply.hang:
            while not self._closing.is_set() and not await request.is_disconnected():
                await asyncio.sleep(_POLL_SECONDS)
            return Response(status_code=503)

        headers = dict(reply.headers)
        if reply.body is not None:
            media = "text/event-stream" if logged.stream else "application/json"
            return Response(reply.body, status_code=reply.status, headers=headers, media_type=media)
        if reply.status != 200:
            kind = "rate_limit_exceeded" if reply.status == 429 else "server_error"
            message = reply.content or f"fake error {reply.status}"
            return _error(reply.status, message, kind, headers)

        model = reply.model or logged.model or "mgx-fake"
        usage = reply.usage or TokenUsage(
            prompt_tokens=_prompt_tokens(logged.messages), completion_tokens=_tokens(reply.content)
        )
        if logged.stream and reply.keepalive_only:
            keepalives = self._keepalives(request)
            return StreamingResponse(keepalives, media_type="text/event-stream", headers=headers)
        if logged.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            final_usage = usage if include_usage and not reply.omit_usage else None
            chunks = _stream_chunks(reply, model, final_usage)
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        payload = _completion(reply, model, None if reply.omit_usage else usage)
        return JSONResponse(payload, headers=headers)

    async def _keepalives(self, request: Request) -> AsyncIterator[bytes]:
        while not self._closing.is_set() and not await request.is_disconnected():
            yield b": keep-alive\n\n"
            await asyncio.sleep(0.05)

    def _reply_for(self, request: FakeRequest) -> FakeReply:
        with self._lock:
            for index, scripted in enumerate(self._script):
                if scripted.matches(request):
                    del self._script[index]
                    return scripted.reply
            responder = self._responder
        if responder is not None:
            answer = responder(request)
            if answer is not None:
                return _as_reply(answer)
        return _as_reply(demo_responder(request))


def _as_reply(reply: str | FakeReply) -> FakeReply:
    return reply if isinstance(reply, FakeReply) else FakeReply(content=reply)


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(_tokens(str(m.get("content", ""))) + _TOKENS_PER_MESSAGE for m in messages)


def _usage_json(usage: TokenUsage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _completion(reply: FakeReply, model: str, usage: TokenUsage | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    payload: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
    }
    if usage is not None:
        payload["usage"] = _usage_json(usage)
    return payload


async def _stream_chunks(
    reply: FakeReply, model: str, usage: TokenUsage | None
) -> AsyncIterator[bytes]:
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        data["choices"] = choices
        data.update(extra)
        return f"data: {json.dumps(data)}\n\n".encode()

    opening = {"role": "assistant", "content": ""}
    yield chunk([{"index": 0, "delta": opening, "finish_reason": None}])
    for piece in _STREAM_PIECE.findall(reply.reasoning or ""):
        delta = {"reasoning_content": piece, "content": None}
        yield chunk([{"index": 0, "delta": delta, "finish_reason": None}])
    for piece in _STREAM_PIECE.findall(reply.content):
        yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    if reply.stream_ends_early:
        return
    yield chunk([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
    if usage is not None:
        yield chunk([], usage=_usage_json(usage))
    yield b"data: [DONE]\n\n"


def _error(
    status: int, message: str, kind: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": None}},
        status_code=status,
        headers=dict(headers or {}),
    )


class FakeLLMProcess:
    """The fake server in a process of its own (``main`` below), for benches that must not share
    an interpreter (and its GIL) with it: ``with FakeLLMProcess(latency_ms=100) as fake: fake.base_url``."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency_ms = latency_ms
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> FakeLLMProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mgx_agent.testing.fake_llm", "--latency-ms", str(self.latency_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the fake LLM server did not start: {line!r}")
        self.base_url = line.rsplit(" ", 1)[1].strip()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> FakeLLMProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mgx_agent.testing.fake_llm",
        description="Serve a fake OpenAI-compatible LLM (demo-model replies) on a loopback port.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each reply")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = FakeLLMServer(host=args.host, port=args.port, latency_seconds=args.latency_ms / 1000)
    server.start()
    # Parsed by scripts that start this as a subprocess: keep the format stable.
    print(f"fake LLM listening on {server.base_url}", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
