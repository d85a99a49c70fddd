"""Headers every HTTP response carries: the security headers, ``Cache-Control: no-store`` on
problem responses, and the caller's rate-limit state (``RateLimit-Limit``/``-Remaining``/
``-Reset``, after the IETF draft) on rate-limited routes.

A pure ASGI middleware that only edits the ``http.response.start`` message, so streamed
responses (SSE) pass through untouched. Headers a response sets itself win: the documentation
pages keep their own Content-Security-Policy.
"""

from __future__ import annotations

import math

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.schemas.problem import PROBLEM_MEDIA_TYPE

# Set by ``backend.app.limits.enforce_rate_limit`` on the request state: the caller's RateDecision.
RATE_LIMIT_STATE = "rate_limit"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    # JSON and event streams load nothing and are never framed.
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
)
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
_PROBLEM_TYPE = PROBLEM_MEDIA_TYPE.encode()


class ResponseHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Created here, so the routes' request.state (which wraps this dict) is visible below.
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_headers(list(message.get("headers", ())), state)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _with_headers(headers: list[tuple[bytes, bytes]], state: dict) -> list[tuple[bytes, bytes]]:
    present = set()
    problem = False
    for name, value in headers:  # names are lowercase (ASGI; Starlette writes them so)
        present.add(name)
        if name == b"content-type" and value.startswith(_PROBLEM_TYPE):
            problem = True
    headers.extend(header for header in SECURITY_HEADERS if header[0] not in present)
    if problem and b"cache-control" not in present:
        headers.append((b"cache-control", b"no-store"))
    decision = state.get(RATE_LIMIT_STATE)
    if decision is not None:
        headers += [
            (b"ratelimit-limit", str(decision.limit).encode()),
            (b"ratelimit-remaining", str(decision.remaining).encode()),
            (b"ratelimit-reset", str(math.ceil(decision.reset_seconds)).encode()),
        ]
    return headers
