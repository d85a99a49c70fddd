"""The A2A surface on the service's app: the agent card at both well-known paths (public, like
any card) and JSON-RPC at ``/a2a`` through the SDK's Starlette routes, in protocol 1.0 and with
the 0.3 method names (``message/send``, ``tasks/resubscribe``, ...). The routes sit on the main
app, behind the admission middleware: a request without a valid key is refused before the SDK
sees it, and the handler builds its services for the caller it admitted."""

from __future__ import annotations

from a2a.server.context import ServerCallContext
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from fastapi import FastAPI
from starlette.requests import Request

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
    app.router.routes.extend(routes)
