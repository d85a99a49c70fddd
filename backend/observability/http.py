"""Per-request observability: the ``X-Request-ID``, the request metrics and the access log line.

``RequestObservabilityMiddleware`` is a pure ASGI middleware (streamed responses such as SSE pass
through untouched) wrapped around the whole middleware stack, outside Starlette's error
middleware, so it sees the status of every response, 500s included, and stamps its request id on
all of them. For each HTTP request it

- takes the client's ``X-Request-ID`` when it is a sane value (at most 128 characters of
  ``A-Z a-z 0-9 - _ . : @ / + =``), otherwise generates one, and returns it in the response;
- sets it as the logging context, so every line logged while serving the request carries it;
- counts the request by method, route template and status, and times it;
- logs one access line (method, path without the query string, status, duration).
"""

from __future__ import annotations

import logging
import os
import re
import time
from functools import lru_cache
from typing import Any

from fastapi import FastAPI
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.observability import metrics
from backend.observability.logs import REQUEST_ID

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9\-_.:@/+=]{1,128}")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
MAX_LOGGED_PATH = 2048

access_logger = logging.getLogger("backend.access")


def request_id_from(scope: Scope) -> str:
    """The client's request id when it is safe to echo and log, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == _HEADER_KEY:
            candidate = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return os.urandom(16).hex()  # 32 hex digits, as uuid4().hex but without its Python-level cost


def route_label(scope: Scope) -> str:
    """The matched route's template (``/runs/{run_id}``), so the label set stays bounded."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not path:
        return UNMATCHED_ROUTE
    return f"{path}/{{path}}" if isinstance(route, Mount) else path


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


def loggable_path(path: str) -> str:
    """The decoded path with control characters escaped (``%0A`` cannot forge a log line)."""
    return _CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match.group()):02x}", path[:MAX_LOGGED_PATH])


class RequestObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # No response headers to stamp, but the connection's log lines get an id too.
            token = REQUEST_ID.set(request_id_from(scope))
            try:
                await self.app(scope, receive, send)
            finally:
                REQUEST_ID.reset(token)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = request_id_from(scope)
        header = (_HEADER_KEY, request_id.encode())
        status = 500  # until a response starts: an app that raised without answering

        async def send_stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [item for item in message.get("headers", ()) if item[0].lower() != _HEADER_KEY]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_stamped)
        finally:
            seconds = time.perf_counter() - started
            self._record(scope, status, seconds)
            REQUEST_ID.reset(token)

    @staticmethod
    def _record(scope: Scope, status: int, seconds: float) -> None:
        method, route = method_label(scope["method"]), route_label(scope)
        counter, histogram = _request_series(method, route, status)
        counter.inc()
        histogram.observe(seconds)
        client, path = scope.get("client"), loggable_path(scope["path"])
        access_logger.info(
            "%s %s %d %.1fms",
            method,
            path,
            status,
            seconds * 1000,
            extra={
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client": client[0] if client else None,
            },
        )


@lru_cache(maxsize=4096)
def _request_series(method: str, route: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one label set, looked up once: the labels
    are bounded (known methods, route templates, status codes), and ``labels()`` takes a lock
    and validates its arguments on every call."""
    return (
        metrics.HTTP_REQUESTS.labels(method, route, str(status)),
        metrics.HTTP_REQUEST_DURATION.labels(method, route),
    )


def install_request_observability(app: FastAPI) -> None:
    """Wrap ``app``'s whole middleware stack (error handling included) in the middleware."""
    build_inner_stack = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return RequestObservabilityMiddleware(build_inner_stack())

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
