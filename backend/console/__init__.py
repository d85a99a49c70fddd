"""The web console at ``/console``: a thin browser client of the public REST API and the run
event stream (its page, static files and the router that serves them)."""

from backend.console.router import CONSOLE_STATIC_URL, CONSOLE_URL, install_console

__all__ = ["CONSOLE_STATIC_URL", "CONSOLE_URL", "install_console"]
