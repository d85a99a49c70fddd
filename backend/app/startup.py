"""What the service says and checks before it serves: the listening socket, bound before
migrations run and the runner starts (a port in use is reported at once, in one line), and the
start-up line naming the database, the LLM provider, the sandbox and the authentication mode,
without any secret.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sqlalchemy.engine import URL

from backend.access import KeyRing
from backend.config import Settings, SettingsError
from backend.services.health import url_without_credentials
from mgx_agent.llm import LLMConfig

# A source checkout has these next to ``backend/``; an installed copy does not.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening (connections wait in the backlog until the app
    is started); ``SettingsError`` in one line when the address cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise SettingsError(
            f"cannot listen on {host}:{port}: {reason} (API_HOST/API_PORT; is another server running there?)"
        ) from None
    # uvicorn serves a socket handed over by its descriptor as a Unix socket (it cannot tell the
    # family), so neither it nor the event loop sets TCP_NODELAY on the connections: Nagle's
    # algorithm then held each response's body behind its headers until the client's delayed
    # ACK, 40 ms per request on a kept-alive connection. Linux gives accepted sockets this option
    # of the listening one.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.set_inheritable(True)
    return sock


def describe_database(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        database = url.database or ":memory:"
        return f"SQLite {database if database == ':memory:' else Path(database).resolve()}"
    return f"PostgreSQL {url.host}:{url.port or 5432}/{url.database} as {url.username}"


def describe_llm(config: LLMConfig) -> str:
    if not config.is_configured:
        return "demo (the offline demo model; set MGX_LLM_BASE_URL for a real one)"
    return f"OpenAI-compatible at {url_without_credentials(config.effective_base_url)}, model {config.model}"


def sandbox_backend(settings: Settings) -> str:
    """The backend that runs generated tests, as the sandbox configuration names it."""
    return settings.mgx_sandbox


def describe_auth(ring: KeyRing) -> str:
    if not ring.enabled:
        return "open (no API_KEYS)"
    return f"{len(ring)} API key(s), {ring.admin_count} admin"


def working_directory_hint(settings: Settings, cwd: Path | None = None) -> str | None:
    """A warning when a source checkout is started from another directory: the relative SQLite
    path and ``.env`` are then read there, not in the project."""
    cwd = (cwd or Path.cwd()).resolve()
    if not (PROJECT_ROOT / "alembic.ini").is_file() or cwd == PROJECT_ROOT:
        return None
    reads_here = [f"{os.curdir}/.env"]
    if settings.database_dialect == "sqlite" and not settings.sqlite_path.is_absolute():
        reads_here.insert(0, f"the database {cwd / settings.sqlite_path}")
    return (
        f"started in {cwd}, not in the project directory {PROJECT_ROOT}: using {' and '.join(reads_here)} "
        "from here; start from the project directory, or set SQLITE_PATH (or DATABASE_URL) to an absolute path"
    )
