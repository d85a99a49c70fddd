"""Runs the generated tests against the generated code, treating both as hostile.

Backends: bubblewrap (the default; see ``bubblewrap``), an explicit ``unsafe-subprocess`` and
``off``. Limits hold for the run as a whole (``limits``), the files are staged read-only
(``workspace``), and what comes back is size-capped, parsed off the event loop and scrubbed of
host paths (``execution``, ``backends``).
"""

from mgx_agent.sandbox.report import SandboxReport, SandboxUnavailableError
from mgx_agent.sandbox.runner import Sandbox, describe_sandbox_line, sandbox_status
from mgx_agent.sandbox.workspace import SandboxInputError

__all__ = [
    "Sandbox",
    "SandboxInputError",
    "SandboxReport",
    "SandboxUnavailableError",
    "describe_sandbox_line",
    "sandbox_status",
]
