"""The agent protocols: an MCP server at ``/mcp`` and an A2A agent with its agent card.

Both are adapters over the services the REST API uses (tasks, runs, events), behind the same
admission (API keys, rate limits) and with the same per-key isolation. Neither stores anything:
an MCP call or an A2A task is a view of a run.
"""

from __future__ import annotations

from fastapi import FastAPI

from backend.config import Settings
from backend.protocols.mcp.server import install_mcp


def install_protocols(app: FastAPI, settings: Settings) -> None:
    """Serve MCP at ``/mcp`` on ``app``. Call after the API's routes are registered."""
    install_mcp(app, settings)
