"""The gate every HTTP request and WebSocket handshake passes before routing, in this order: JSON
bodies only, not content-encoded (415), a valid API key (401, WebSocket close 4401), the caller's rate limit (429,
WebSocket close 4429).

A pure ASGI middleware rather than an app-wide FastAPI dependency: FastAPI solves dependencies
per request at a cost of its own, which on a simple read was more than the checks themselves.
It sits inside CORS and the response headers (its refusals get both) and after the body cap, so
a request is sized, then admitted, then routed. The checks themselves live with their subjects:
``backend.app.auth.authenticate`` and ``backend.app.limits.enforce_rate_limit``.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.exceptions import WebSocketException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from backend.app.auth import authenticate
from backend.app.limits import enforce_rate_limit
from backend.app.problems import api_error_response
from backend.errors import APIError, UnsupportedMediaTypeError

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def require_json_body(conn: HTTPConnection) -> None:
    """Refuse request bodies that are not JSON (415), before the body is read."""
    if conn.scope.get("method") not in BODY_METHODS:
        return
    headers = conn.headers
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if not has_body:
        return
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # Compressed bodies are not decoded; reading gzip bytes as JSON would be a guess.
        raise UnsupportedMediaTypeError(f"request bodies must not be encoded; got Content-Encoding {encoding}")
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"request bodies must be application/json, got {media_type or 'no Content-Type'}"
        )


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            try:
                require_json_body(request)
                await authenticate(request)
                await enforce_rate_limit(request)
            except APIError as error:
                response = await api_error_response(request, error)
                await response(scope, receive, send)
                return
        elif scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            try:
                await authenticate(websocket)
                await enforce_rate_limit(websocket)
            except WebSocketException as refusal:  # raised after accepting, so the client sees why
                await websocket.close(code=refusal.code, reason=refusal.reason)
                return
        await self.app(scope, receive, send)


def install_admission(app: FastAPI) -> None:
    """The innermost middleware, after ``install_limits``'s body cap: its refusals still pass
    through CORS and get the response headers."""
    app.user_middleware.append(Middleware(AdmissionMiddleware))
