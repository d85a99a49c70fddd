"""OpenAICompatibleClient: Chat Completions for any OpenAI-compatible endpoint.

Covers OpenAI, Ollama, vLLM, llama.cpp server, LM Studio, OpenRouter and similar servers.
One HTTP session per client instance (``transport.py``: aiohttp, or a given httpx client) is
shared by every run. Transient failures
(429, 5xx, connection errors, timeouts) are retried with exponential backoff and full jitter,
honouring Retry-After; everything else becomes an ``mgx_agent.errors`` type whose message says
what the user can change. The API key never appears in an error message or log line.

A streamed call that breaks midway, or ends with neither a finish_reason nor ``[DONE]``, is
retried like any other, so ``on_delta`` may see the start of the reply twice; deltas are a live
preview, the returned content is authoritative. Each attempt has one deadline for the whole
exchange, bodies are read in pieces up to ``max_reply_bytes`` and decoded as UTF-8 with invalid
bytes replaced (noted in ``warnings``), as are NUL characters; a ``reasoning_content``/``reasoning`` field is returned
apart from the content. The request is shaped per model (``model_options``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from mgx_agent import __version__
from mgx_agent.errors import (
    LLMAuthError,
    LLMBadResponseError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMRefusedError,
    LLMReplyTooLargeError,
    LLMStreamInterruptedError,
    LLMTimeoutError,
)
from mgx_agent.llm.base import CallContext, ChatMessage, DeltaCallback, LLMResponse, TokenUsage
from mgx_agent.llm.config import LLMConfig
from mgx_agent.llm.model_options import request_options_for, shape_messages
from mgx_agent.llm.transport import (
    AiohttpTransport,
    HttpxTransport,
    Reply,
    Transport,
    TransportError,
)

logger = logging.getLogger("mgx_agent.llm")

# How much of a provider's error body is quoted back to the user, and read at all.
_ERROR_EXCERPT_CHARS = 300
_ERROR_BODY_BYTES = 16 * 1024


class _RetryableFailure(Exception):
    """An attempt failed in a way another attempt may fix; ``error`` is raised if none does."""

    def __init__(self, error: LLMError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters per token) for providers that report no usage."""
    return len(text) // 4


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class OpenAICompatibleClient:
    provider = "openai"
    # LLMSession passes temperature / max_tokens per call only to clients that declare this.
    accepts_sampling_params = True

    def __init__(self, config: LLMConfig, http_client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._base_url = config.effective_base_url
        self._endpoint = f"{self._base_url}/chat/completions"
        self._transport: Transport = (
            HttpxTransport(http_client)
            if http_client is not None
            else AiohttpTransport(
                read_timeout_seconds=config.timeout_seconds,
                connect_timeout_seconds=min(config.timeout_seconds, 10.0),
            )
        )
        self._secret = config.api_key.get_secret_value() if config.api_key else ""
        # A JSON body escapes some characters, so the body may be larger than its content.
        self._max_body_bytes = 2 * config.max_reply_bytes + 64 * 1024

    @property
    def base_url(self) -> str:
        return self._base_url

    def request_body(
        self,
        messages: list[ChatMessage],
        model: str,
        *,
        stream: bool,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """The Chat Completions request for ``model``, shaped by its request options."""
        options = request_options_for(model, self._config.model_options)
        payload: dict[str, Any] = {"model": model, "messages": shape_messages(messages, options)}
        if options.send_temperature:
            payload["temperature"] = self._config.temperature if temperature is None else temperature
        max_tokens = self._config.max_tokens if max_tokens is None else max_tokens
        if max_tokens is not None:
            payload[options.max_tokens_param] = max_tokens
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        payload.update(options.extra_body)
        return payload

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        model: str,
        context: CallContext,
        on_delta: DeltaCallback | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LLMResponse:
        stream = self._config.stream or on_delta is not None
        payload = self.request_body(
            messages, model, stream=stream, temperature=temperature, max_tokens=max_tokens
        )
        headers = self._headers(context)

        attempts = self._config.max_retries + 1
        for attempt in range(attempts):
            try:
                return await self._attempt(payload, headers, messages, on_delta if stream else None)
            except _RetryableFailure as failure:
                if attempt + 1 >= attempts:
                    # Keep the transport error (if any) as the cause for debugging.
                    raise failure.error from failure.__cause__
                delay = self._retry_delay(attempt, failure.retry_after)
                logger.warning(
                    "LLM call %s/%s for %s failed (%s); retry %d of %d in %.2fs",
                    context.role,
                    context.action,
                    model,
                    failure.error.message,
                    attempt + 1,
                    attempts - 1,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _attempt(
        self,
        payload: dict[str, Any],
        headers: dict[str, str],
        messages: list[ChatMessage],
        on_delta: DeltaCallback | None,
    ) -> LLMResponse:
        # One deadline for the whole attempt: the transport's timeout bounds each read, so a server
        # that keeps sending keep-alive comments would otherwise be waited on forever.
        try:
            async with asyncio.timeout(self._config.timeout_seconds):
                if payload.get("stream"):
                    return await self._stream_once(payload, headers, messages, on_delta)
                return await self._request_once(payload, headers, messages)
        except TimeoutError:
            raise self._timed_out() from None

    async def _request_once(
        self, payload: dict[str, Any], headers: dict[str, str], messages: list[ChatMessage]
    ) -> LLMResponse:
        warnings: list[str] = []
        try:
            async with self._transport.post(self._endpoint, _json_body(payload), headers) as response:
                if response.status != 200:
                    text = await _error_text(response)
                    raise self._status_failure(response.status, response.headers, text, payload)
                raw = await self._read_capped(response)
        except TransportError as exc:
            raise self._transport_failure(exc) from exc
        text = _decode(raw, warnings)
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
            raise self._bad_response(f"a body that is not JSON: {_excerpt(text)}") from None
        return self._parse_completion(body, payload, messages, warnings)

    async def _read_capped(self, response: Reply) -> bytes:
        """The completion's body; one over the cap is refused without reading the rest."""
        data = bytearray()
        async for piece in response.pieces():
            data += piece
            if len(data) > self._max_body_bytes:
                raise self._too_large()
        return bytes(data)

    async def _stream_once(
        self,
        payload: dict[str, Any],
        headers: dict[str, str],
        messages: list[ChatMessage],
        on_delta: DeltaCallback | None,
    ) -> LLMResponse:
        parts: list[str] = []
        reasoning: list[str] = []
        size = 0
        warnings: list[str] = []
        usage: TokenUsage | None = None
        model = payload["model"]
        saw_choice = saw_done = False
        finish_reason: str | None = None
        try:
            async with self._transport.post(self._endpoint, _json_body(payload), headers) as response:
                if response.status != 200:
                    text = await _error_text(response)
                    raise self._status_failure(response.status, response.headers, text, payload)
                async for line, ended in self._sse_lines(response, warnings):
                    if not line.startswith("data:"):
                        continue  # SSE comments (keep-alives), event names, blank separators
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        saw_done = True
                        break
                    if not ended and not _whole_json(data):
                        break  # cut off mid-line (a proxy gave up): interrupted, so retried
                    chunk = self._parse_chunk(data)
                    model = chunk.get("model") or model
                    if chunk.get("usage"):
                        usage = _usage_from(chunk["usage"]) or usage
                    for choice in chunk.get("choices") or []:
                        if not isinstance(choice, dict):
                            continue
                        saw_choice = True
                        finish_reason = _finish_reason(choice.get("finish_reason")) or finish_reason
                        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                        text, part_thought = _content_parts(delta.get("content"))
                        thought = _reasoning_field(delta) or part_thought
                        if thought:
                            reasoning.append(thought)
                            size += len(thought.encode())
                        if isinstance(text, str) and text:
                            text = _without_nul(text, warnings)
                            parts.append(text)
                            size += len(text.encode())
                            if on_delta is not None:
                                await on_delta(text)
                        if size > self._config.max_reply_bytes:
                            raise self._too_large()
        except TransportError as exc:
            raise self._transport_failure(exc) from exc
        if not saw_done and finish_reason is None:
            raise self._interrupted()
        if not saw_choice:
            raise self._bad_response("a stream without any choices")
        if finish_reason == "content_filter":
            raise self._refused("the content filter stopped the reply")
        content = "".join(parts)
        reasoning = [_without_nul(thought, warnings) for thought in reasoning]
        if usage is None:
            usage = TokenUsage(
                _prompt_estimate(messages), estimate_tokens(content + "".join(reasoning)), estimated=True
            )
        return LLMResponse(
            content=content,
            model=model,
            provider=self.provider,
            usage=usage,
            reasoning="".join(reasoning),
            finish_reason=finish_reason,
            warnings=tuple(warnings),
        )

    async def _sse_lines(self, response: Reply, warnings: list[str]) -> AsyncIterator[tuple[str, bool]]:
        """The stream's lines, decoded as UTF-8 with invalid bytes replaced (and noted once),
        each with whether its line end arrived (only the last one can lack it).

        Lines are split on raw bytes: a newline never occurs inside a UTF-8 sequence, so a
        character split across network reads decodes whole.
        """
        buffer = bytearray()
        async for piece in response.pieces():
            buffer += piece
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[: end + 1]
                yield _decode(line, warnings), True
            if len(buffer) > self._max_body_bytes:
                raise self._too_large()
        if buffer:
            yield _decode(bytes(buffer), warnings), False

    def _parse_completion(
        self,
        body: Any,
        payload: dict[str, Any],
        messages: list[ChatMessage],
        warnings: list[str],
    ) -> LLMResponse:
        if not isinstance(body, dict):
            raise self._bad_response(f"JSON that is not an object: {_excerpt(json.dumps(body))}")
        if "error" in body and not body.get("choices"):
            raise self._bad_response(f"an error object: {_excerpt(json.dumps(body['error']))}")
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._bad_response("a completion without choices")
        finish_reason = _finish_reason(choices[0].get("finish_reason"))
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise self._bad_response("a completion without a message")
        if message.get("refusal"):
            raise self._refused(_excerpt(str(message["refusal"])))
        if finish_reason == "content_filter":
            raise self._refused("the content filter stopped the reply")
        content, thought = _content_parts(message.get("content"))
        reasoning = _reasoning_field(message) or thought
        if content is None and (reasoning or finish_reason == "length"):
            content = ""  # all tokens went to thinking; the session reports the cut-off
        if not isinstance(content, str):
            raise self._bad_response("a completion without message content")
        content, reasoning = _without_nul(content, warnings), _without_nul(reasoning, warnings)
        if len(content.encode()) + len(reasoning.encode()) > self._config.max_reply_bytes:
            raise self._too_large()
        usage = _usage_from(body.get("usage")) or TokenUsage(
            _prompt_estimate(messages), estimate_tokens(content + reasoning), estimated=True
        )
        model = body.get("model") if isinstance(body.get("model"), str) else payload["model"]
        return LLMResponse(
            content=content,
            model=model,
            provider=self.provider,
            usage=usage,
            reasoning=reasoning,
            finish_reason=finish_reason,
            warnings=tuple(warnings),
        )

    def _parse_chunk(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise self._bad_response(f"a stream chunk that is not JSON: {_excerpt(data)}") from None
        if not isinstance(chunk, dict):
            raise self._bad_response(f"a stream chunk that is not an object: {_excerpt(data)}")
        if chunk.get("error"):  # some gateways send "error": null in every chunk
            error = _excerpt(json.dumps(chunk["error"]))
            raise self._bad_response(f"an error in the stream: {error}")
        return chunk

    def _status_failure(
        self, status: int, headers: Mapping[str, str], text: str, payload: dict[str, Any]
    ) -> Exception:
        where = f"LLM provider at {self._base_url}"
        detail = self._scrub(_excerpt(_provider_message(text)))
        if status == 401:
            if self._secret:
                return LLMAuthError(f"{where} rejected the API key (401): set MGX_LLM_API_KEY")
            return LLMAuthError(f"{where} requires an API key (401): set MGX_LLM_API_KEY")
        if status == 403:
            return LLMAuthError(
                f"{where} refused access (403) to model {payload['model']!r}: check that "
                f"MGX_LLM_API_KEY may use it ({detail})"
            )
        if status == 429:
            return _RetryableFailure(
                LLMRateLimitError(
                    f"{where} kept rate limiting (429) after {self._config.max_retries + 1} "
                    f"attempts: lower the number of concurrent runs or raise MGX_LLM_MAX_RETRIES "
                    f"({detail})"
                ),
                retry_after=parse_retry_after(headers.get("retry-after")),
            )
        if status == 404:
            return LLMError(
                f"{where} answered 404 for {self._endpoint} (model {payload['model']!r}): check "
                f"MGX_LLM_BASE_URL (usually ends in /v1) and MGX_LLM_MODEL ({detail})"
            )
        if status == 408 or status >= 500:
            return _RetryableFailure(
                LLMError(
                    f"{where} failed with HTTP {status} after {self._config.max_retries + 1} "
                    f"attempts ({detail})"
                ),
                retry_after=parse_retry_after(headers.get("retry-after")),
            )
        return LLMError(
            f"{where} rejected the request with HTTP {status} "
            f"(model {payload['model']!r}): {detail}"
        )

    def _transport_failure(self, exc: TransportError) -> Exception:
        attempts = self._config.max_retries + 1
        if exc.timed_out:
            return self._timed_out()
        reason = self._scrub(exc.reason)
        if exc.retryable:
            return _RetryableFailure(
                LLMConnectionError(
                    f"could not reach LLM provider at {self._base_url} ({attempts} attempts): "
                    f"{reason}; check MGX_LLM_BASE_URL and that the server is running"
                )
            )
        return LLMError(f"request to LLM provider at {self._base_url} failed: {reason}")

    def _bad_response(self, what: str) -> LLMBadResponseError:
        return LLMBadResponseError(
            f"LLM provider at {self._base_url} answered with {self._scrub(what)}; check that "
            f"MGX_LLM_BASE_URL points at an OpenAI-compatible /v1 endpoint"
        )

    def _timed_out(self) -> _RetryableFailure:
        attempts = self._config.max_retries + 1
        return _RetryableFailure(
            LLMTimeoutError(
                f"LLM provider at {self._base_url} did not finish its reply within "
                f"{self._config.timeout_seconds:g}s ({attempts} attempts): raise "
                f"MGX_LLM_TIMEOUT_SECONDS or check the provider's load"
            )
        )

    def _interrupted(self) -> _RetryableFailure:
        attempts = self._config.max_retries + 1
        return _RetryableFailure(
            LLMStreamInterruptedError(
                f"the stream from LLM provider at {self._base_url} ended before the reply was "
                f"complete (no finish_reason and no [DONE]) in {attempts} attempts: check "
                f"proxies between the service and the provider, or set MGX_LLM_STREAM=false"
            )
        )

    def _too_large(self) -> LLMReplyTooLargeError:
        return LLMReplyTooLargeError(
            f"LLM provider at {self._base_url} sent a reply larger than "
            f"{self._config.max_reply_bytes} bytes; it was not read to the end: set "
            f"MGX_LLM_MAX_TOKENS to bound the reply, or raise MGX_LLM_MAX_REPLY_BYTES"
        )

    def _refused(self, what: str) -> LLMRefusedError:
        return LLMRefusedError(
            f"the model at {self._base_url} refused to answer ({self._scrub(what)}): rephrase "
            f"the task or use another model"
        )

    def _scrub(self, text: str) -> str:
        if self._secret and self._secret in text:
            text = text.replace(self._secret, "***")
        return text

    def _headers(self, context: CallContext) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"mgx-agent/{__version__}",
            "X-MGX-Role": _header_value(context.role),
            "X-MGX-Action": _header_value(context.action),
        }
        if context.run_label:
            headers["X-MGX-Run"] = _header_value(context.run_label)
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        return headers

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        cap = self._config.retry_max_wait_seconds
        if retry_after is not None:
            return min(retry_after, cap)
        return random.uniform(0, min(cap, self._config.retry_base_seconds * 2**attempt))


def _usage_from(raw: Any) -> TokenUsage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion)


# Gateways in front of other vendors pass their names through (Anthropic's "max_tokens",
# Gemini's "MAX_TOKENS" and "SAFETY"); the team knows OpenAI's.
_FINISH_REASONS = {"max_tokens": "length", "max_output_tokens": "length", "safety": "content_filter"}


def _finish_reason(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    value = value.lower()
    return _FINISH_REASONS.get(value, value)


def _json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def _error_text(response: Reply) -> str:
    """The start of an error body: enough to quote, never the whole of a huge one."""
    data = bytearray()
    async for piece in response.pieces():
        data += piece
        if len(data) > _ERROR_BODY_BYTES:
            break
    return _decode(bytes(data[:_ERROR_BODY_BYTES]), [])


def _whole_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _content_parts(content: Any) -> tuple[Any, str]:
    """``(content, thinking)`` of a message or delta whose ``content`` may be a list of typed
    parts, as some OpenAI-compatible servers and proxies send (Mistral's reasoning models,
    gateways in front of Anthropic models): text parts are the content, thinking parts the
    reasoning. A string, or anything else, is returned as it came."""
    if not isinstance(content, list):
        return content, ""
    texts: list[str] = []
    thoughts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            kind = part.get("type", "text")
            if kind in ("thinking", "reasoning"):
                thoughts.append(_part_text(part.get(kind, part.get("text"))))
            elif kind in ("text", "output_text"):
                texts.append(_part_text(part.get("text")))
    return "".join(texts), "".join(thoughts)


def _part_text(value: Any) -> str:
    """A part's text: a string, or (Mistral's thinking) a list of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_part_text(item.get("text")) if isinstance(item, dict) else _part_text(item) for item in value)
    return ""


def _reasoning_field(message: dict[str, Any]) -> str:
    """The thinking some servers send beside the content (DeepSeek, vLLM, OpenRouter)."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _decode(raw: bytes, warnings: list[str]) -> str:
    """UTF-8 with invalid bytes replaced: one stray byte must not lose a whole reply."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        note = (
            f"the LLM provider sent invalid UTF-8 (first at byte {exc.start} of a line or body); "
            "it was replaced with U+FFFD"
        )
        if not any("invalid UTF-8" in warning for warning in warnings):
            warnings.append(note)
        return raw.decode("utf-8", "replace")


NUL_REPLACED = "the reply held NUL characters (U+0000); they were replaced with U+FFFD"


def _without_nul(text: str, warnings: list[str]) -> str:
    """The text with U+0000 replaced (and noted once): no source file holds one, and PostgreSQL
    can store one in neither text nor jsonb, so a reply carrying one failed its run there."""
    if "\x00" not in text:
        return text
    if NUL_REPLACED not in warnings:
        warnings.append(NUL_REPLACED)
    return text.replace("\x00", "\ufffd")


def _prompt_estimate(messages: list[ChatMessage]) -> int:
    return estimate_tokens("".join(str(m.get("content", "")) for m in messages))


def _provider_message(text: str) -> str:
    """The human part of an OpenAI-style error body, or the raw text."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return text.strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    return text.strip()


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _ERROR_EXCERPT_CHARS:
        return text[:_ERROR_EXCERPT_CHARS] + "..."
    return text or "empty body"


def _header_value(value: str) -> str:
    # Header values must be visible ASCII; a run label is opaque and could be anything.
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in value)
