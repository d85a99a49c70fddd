"""The agent protocols: an MCP server at ``/mcp`` and an A2A agent with its agent card.

Both are adapters over the services the REST API uses (tasks, runs, events), behind the same
admission (API keys, rate limits) and with the same per-key isolation. Neither stores anything:
an MCP call or an A2A task is a view of a run.
"""

from __future__ import annotations

from fastapi import FastAPI

from backend.config import Settings


def install_protocols(app: FastAPI, settings: Settings) -> None:
    """Serve MCP at ``/mcp`` and the A2A agent (card and JSON-RPC) on ``app``. Call after the
    API's routes are registered."""
    # Imported when installing: backend.app.auth imports backend.protocols.a2a.card for the
    # card's public paths, and that import need not load both servers and the services first.
    from backend.protocols.a2a.server import install_a2a
    from backend.protocols.mcp.server import install_mcp

    install_mcp(app, settings)
    install_a2a(app, settings)
