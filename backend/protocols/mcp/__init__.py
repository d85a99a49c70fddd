"""MCP over Streamable HTTP at ``/mcp``: tools for tasks and runs, run files and plans as
resources, plan approval through elicitation (see ``server`` for how it is wired)."""
