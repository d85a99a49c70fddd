"""Request limits at the HTTP edge: the request body cap (413), the per-caller rate limit (429 with
``Retry-After``) and the cap on open event streams per caller (SSE 429, WebSocket close 4429).

A caller is its API key's name when ``backend.app.auth`` identified one (``conn.state.principal``),
else its client address. ``/``, ``/health/*``, ``/metrics`` and the API documentation are never
rate limited. The buckets and stream counters themselves live in ``services/rate_limits`` and
``services/stream_slots``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from starlette.exceptions import WebSocketException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.app.docs import DOCS_STATIC_URL, DOCS_URL, REDOC_URL
from backend.console import CONSOLE_STATIC_URL, CONSOLE_URL
from backend.app.problems import api_error_response
from backend.app.response_headers import RATE_LIMIT_STATE, ResponseHeadersMiddleware
from backend.config import Settings
from backend.errors import PayloadTooLargeError, RateLimitedError, TooManyStreamsError
from backend.schemas.problem import PROBLEM_MEDIA_TYPE
from backend.services.rate_limits import RateLimiter, RateLimitPolicy
from backend.services.stream_slots import StreamSlots

# Route templates that are never rate limited (probes, scraping, documentation).
EXEMPT_PATHS = frozenset(
    {"/", "/metrics", "/openapi.json", DOCS_URL, REDOC_URL, f"{DOCS_URL}/oauth2-redirect", CONSOLE_URL, f"{CONSOLE_URL}/"}
)
EXEMPT_PREFIXES = ("/health/", DOCS_STATIC_URL + "/", CONSOLE_STATIC_URL + "/")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# WebSocket close code: 4000 + the HTTP status it stands for.
CLOSE_TOO_MANY_REQUESTS = 4429


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path == "/health" or path.startswith(EXEMPT_PREFIXES)


def client_identity(conn: HTTPConnection) -> str:
    """Whom limits are counted for: the API key's name, else the client address."""
    principal = getattr(conn.state, "principal", None)
    if principal is not None:
        return f"key:{principal.name}"
    return f"ip:{conn.client.host if conn.client else 'unknown'}"


async def enforce_rate_limit(conn: HTTPConnection) -> None:
    """Run by ``backend.app.admission`` after ``authenticate``: take one token from the caller's
    bucket. An empty bucket answers 429; a WebSocket handshake is accepted and closed with 4429
    instead, since a browser cannot read an HTTP answer to it."""
    limiter: RateLimiter = conn.app.state.rate_limiter
    if not limiter.policy.enabled or is_exempt(conn.scope["path"]):
        return
    decision = await limiter.take(client_identity(conn), getattr(conn.app.state, "redis", None))
    setattr(conn.state, RATE_LIMIT_STATE, decision)
    if decision.allowed:
        return
    if isinstance(conn, WebSocket):
        await conn.accept()
        reason = f"rate limited: retry in {decision.retry_after} s"
        raise WebSocketException(code=CLOSE_TOO_MANY_REQUESTS, reason=reason)
    policy = limiter.policy
    raise RateLimitedError(
        f"rate limit exceeded ({policy.per_minute} requests a minute, bursts of {policy.burst}); "
        f"retry in {decision.retry_after} s",
        retry_after=decision.retry_after,
    )


async def hold_stream_slot(conn: HTTPConnection) -> AsyncIterator[None]:
    """Route dependency of the event streams (SSE and WebSocket): hold one of the caller's stream
    slots until the stream has ended, for whatever reason. A caller holding them all gets 429
    (SSE) or, after the handshake, close code 4429 (WebSocket)."""
    slots: StreamSlots = conn.app.state.stream_slots
    slot = slots.acquire(client_identity(conn))
    if slot is None:
        if isinstance(conn, WebSocket):
            await conn.accept()
            raise WebSocketException(
                code=CLOSE_TOO_MANY_REQUESTS, reason=f"too many open streams (at most {slots.per_identity})"
            )
        raise TooManyStreamsError(
            f"at most {slots.per_identity} event streams may be open at once per client "
            "(MAX_STREAMS_PER_CLIENT); close one first"
        )
    try:
        yield
    finally:
        slot.release()


class BodySizeLimitMiddleware:
    """Answers 413 for a request body over ``max_bytes`` before the app sees any of it.

    A declared ``Content-Length`` over the cap is refused without reading the body. A body without
    one (chunked) is read here first, and refused as soon as the bytes received cross the cap; one
    within the cap is handed to the app whole, so a route never sees a truncated body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None:
            # The server delivers exactly the declared length, so only the declaration needs checking.
            if declared.strip().isdigit() and int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if not chunked and scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away; nobody to answer
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLargeError(
            f"the request body is larger than {self.max_bytes} bytes (MAX_BODY_BYTES)",
            extra={"max_body_bytes": self.max_bytes},
        )
        response = await api_error_response(Request(scope), error)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that first delivers the buffered body, then whatever the client sends next
    (its disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def install_limits(app: FastAPI, settings: Settings) -> None:
    """Wire the limits and the admission checks into ``app``."""
    app.state.rate_limiter = RateLimiter(RateLimitPolicy(settings.rate_limit_per_minute, settings.rate_limit_burst))
    app.state.stream_slots = StreamSlots(settings.max_streams_per_client)
    app.add_middleware(ResponseHeadersMiddleware)
    # Inside CORS and the response headers, so its 413 gets the usual headers (and before the
    # admission checks, installed after it).
    app.user_middleware.append(Middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes))
    _document_limits(app)


def _document_limits(app: FastAPI) -> None:
    """Declare in ``/openapi.json`` the 429 every limited route can answer, and the 413 of every
    route that takes a body."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            for path, operations in schema.get("paths", {}).items():
                if is_exempt(path):
                    continue
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    responses.setdefault("429", _RATE_LIMITED_RESPONSE)
                    if "requestBody" in operation:
                        responses.setdefault("413", _TOO_LARGE_RESPONSE)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_RATE_LIMITED_RESPONSE = {
    "description": "Too Many Requests: the caller's rate limit (`RATE_LIMIT_PER_MINUTE`, `RATE_LIMIT_BURST`), "
    "or its cap of open event streams (`MAX_STREAMS_PER_CLIENT`).",
    "headers": {
        "Retry-After": {"description": "Seconds until a request is accepted again.", "schema": {"type": "integer"}}
    },
    "content": _PROBLEM_CONTENT,
}
_TOO_LARGE_RESPONSE = {
    "description": "Content Too Large: the body is over `MAX_BODY_BYTES`.",
    "content": _PROBLEM_CONTENT,
}
