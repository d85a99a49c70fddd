"""The MCP server (the official SDK's ``MCPServer``) and its Streamable HTTP endpoint at ``/mcp``
on the service's own app.

The endpoint is the SDK's ASGI app as a route on the main app, not a mounted sub-application:
requests pass the service's admission middleware first (API key, rate limit, body cap), so MCP
calls are authenticated and isolated exactly like REST calls, and tools build their services from
the request the middleware admitted. The SDK's session manager runs for the app's lifespan (a
mounted app's own lifespan would never run). Host and Origin checks (DNS rebinding protection)
come from ``MCP_ALLOWED_HOSTS`` / ``MCP_ALLOWED_ORIGINS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from starlette.routing import Route

from backend import __version__
from backend.config import Settings
from backend.protocols.mcp import tools
from backend.protocols.mcp.resources import register_resources

MCP_PATH = "/mcp"
ANY_HOST = "*"

INSTRUCTIONS = (
    "A software team as a service: Mike plans, a human approves the plan, Alex codes, Bob writes "
    "pytest tests that run in a sandbox, Charlie reviews, with revision rounds. Start with "
    "start_run (a description is enough), follow it with wait_run, and when the run is "
    "awaiting_approval show the plan to the user and call approve_plan or reject_plan with their "
    "answer. Every answer has next_step. Files are get_artifact or mgx://runs/{id}/artifacts/{name}."
)

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
CHANGES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
ENDS_WORK = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
TOOL_ANNOTATIONS = {
    "create_task": CHANGES,
    "start_run": CHANGES,
    "get_run": READ_ONLY,
    "wait_run": CHANGES,  # it may apply the user's answer about the plan
    "approve_plan": CHANGES,
    "reject_plan": ENDS_WORK,
    "cancel_run": ENDS_WORK,
    "list_runs": READ_ONLY,
    "get_artifact": READ_ONLY,
}


def build_mcp_server() -> MCPServer:
    # MCPServer() calls logging.basicConfig with its own handler; the service's logging (format,
    # JSON lines) is configured at start-up and must stay the only one, so the root logger is
    # put back as it was.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        server: MCPServer = MCPServer(
            "mgx-agent-api",
            title="MGX Agent API",
            instructions=INSTRUCTIONS,
            version=__version__,
            # Change notifications: nothing here changes the tool or resource lists.
            subscriptions=False,
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    for tool in tools.TOOLS:
        server.add_tool(
            tool,
            annotations=TOOL_ANNOTATIONS[tool.__name__],
            structured_output=False if tool is tools.get_artifact else None,
        )
    register_resources(server)
    return server


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """The Host/Origin allowlist. ``*`` switches the check off, for a reverse proxy that already
    controls the Host header; browser origins allowed by CORS are allowed here too."""
    hosts = settings.mcp_allowed_hosts
    if ANY_HOST in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    origins = [*settings.mcp_allowed_origins, *(origin for origin in settings.cors_origins if origin != ANY_HOST)]
    return TransportSecuritySettings(allowed_hosts=list(hosts), allowed_origins=list(dict.fromkeys(origins)))


def install_mcp(app: FastAPI, settings: Settings) -> MCPServer:
    """Serve MCP at ``/mcp`` on ``app`` and run the SDK's session manager for the app's lifespan."""
    server = build_mcp_server()
    sdk_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=transport_security(settings),
        max_request_body_size=settings.max_body_bytes,
    )
    routes = [route for route in sdk_app.routes if isinstance(route, Route) and route.path == MCP_PATH]
    app.router.routes.extend(routes)
    _run_with_app(app, server)
    app.state.mcp_server = server
    return server


def _run_with_app(app: FastAPI, server: MCPServer) -> None:
    service_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        # The session manager runs in a task of its own: its task group must be entered and
        # left by one task, and a lifespan may be entered and left by different ones (test
        # fixtures). It outlives the service's lifespan at both ends: at shutdown the service
        # drains first and closes the event streams, which ends open MCP calls cleanly before
        # the manager cancels what is left.
        running, stopping = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with server.session_manager.run():
                running.set()
                await stopping.wait()

        manager = asyncio.create_task(hold(), name="mcp-session-manager")
        started = asyncio.create_task(running.wait())
        await asyncio.wait({manager, started}, return_when=asyncio.FIRST_COMPLETED)
        if manager.done():
            started.cancel()
            manager.result()  # raises why it could not start
        try:
            async with service_lifespan(app_) as state:
                yield state
        finally:
            stopping.set()
            await manager

    app.router.lifespan_context = lifespan
