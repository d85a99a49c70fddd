"""The A2A surface on the service's app: the agent card at both well-known paths (public, like
any card) and JSON-RPC at ``/a2a`` through the SDK's Starlette routes, in protocol 1.0 and with
the 0.3 method names (``message/send``, ``tasks/resubscribe``, ...). The routes sit on the main
app, behind the admission middleware: a request without a valid key is refused before the SDK
sees it, and the handler builds its services for the caller it admitted."""

from __future__ import annotations

import json

from a2a.server.context import ServerCallContext
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.config import Settings
from backend.protocols.a2a.card import AGENT_CARD_PATHS, JSONRPC_PATH, build_agent_card
from backend.protocols.a2a.handler import RunsRequestHandler
from backend.protocols.caller import services_for

# Seconds an open stream may take to end when the server stops (SIGTERM) before it is cancelled.
STREAM_SHUTDOWN_GRACE_SECONDS = 2.0


class CallerContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's call context plus the services as the admitted caller may use them."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state["services"] = services_for(request)
        return context


# Brackets that a body can hold without any chance of reaching the decoder's recursion limit
# (Python's default is 1000 frames), so an ordinary request is not decoded twice.
_SHALLOW = 200


class RefuseTooDeepJSON:
    """JSON-RPC's parse error (-32700) for a body nested deeper than Python's decoder goes. The
    SDK catches only ``JSONDecodeError`` there: the ``RecursionError`` of such a body reached its
    catch-all, which logged a traceback and answered -32603 (internal error). The body is read
    once here (the body limit bounds it) and handed on as it came."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its request was complete
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            if body.count(b"[") + body.count(b"{") > _SHALLOW:  # else it cannot nest that deep
                json.loads(body)
        except RecursionError:
            error = {"code": -32700, "message": "Parse error: the JSON is nested too deeply"}
            await JSONResponse({"jsonrpc": "2.0", "id": None, "error": error})(scope, receive, send)
            return
        except ValueError:
            pass  # the SDK answers it (-32700)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # what follows the body: the client's disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def install_a2a(app: FastAPI, settings: Settings) -> None:
    card = build_agent_card(settings)
    routes = [route for path in AGENT_CARD_PATHS for route in create_agent_card_routes(card, card_url=path)]
    routes += create_jsonrpc_routes(
        RunsRequestHandler(card),
        JSONRPC_PATH,
        context_builder=CallerContextBuilder(),
        enable_v0_3_compat=True,
        shutdown_grace_period=STREAM_SHUTDOWN_GRACE_SECONDS,
    )
    for route in routes:
        if isinstance(route, Route) and route.path == JSONRPC_PATH:
            route.app = RefuseTooDeepJSON(route.app)
    app.router.routes.extend(routes)
