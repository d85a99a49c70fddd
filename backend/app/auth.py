"""Authentication with ``API_KEYS``: ``authenticate`` (run on every request by
``backend.app.admission``), the OpenAPI security schemes, and the guard that refuses to serve an
open API on a network address.

Every route except ``/``, ``/health/*``, the API documentation, the console page and the A2A agent
card requires a key, sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Event streams (SSE and WebSocket) also
accept ``?access_token=<key>``, because a browser's ``EventSource`` and ``WebSocket`` cannot send
headers; that query parameter is removed from uvicorn's log lines. A WebSocket without a valid key
is accepted and then closed with code 4401, so the client sees why.

Without ``API_KEYS`` the service runs open: ``conn.state.principal`` is None and nothing is
filtered by owner.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Annotated, Any

from fastapi import Depends, FastAPI, WebSocket
from fastapi.encoders import jsonable_encoder
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection
from starlette.routing import compile_path

from backend.access import KeyRing, Principal
from backend.app.docs import DOCS_STATIC_URL, DOCS_URL, REDOC_URL
from backend.app.limits import enforce_rate_limit
from backend.config import Settings, SettingsError
from backend.console import CONSOLE_STATIC_URL, CONSOLE_URL
from backend.errors import ForbiddenError, UnauthorizedError
from backend.protocols.a2a.card import AGENT_CARD_PATHS
from backend.schemas.problem import PROBLEM_MEDIA_TYPE

__all__ = ["Principal", "PrincipalDep", "authenticate", "install_authentication"]

logger = logging.getLogger("backend.auth")

# WebSocket close code: 4000 + the HTTP status it stands for.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
ACCESS_TOKEN_PARAMETER = "access_token"
EVENT_STREAM_MEDIA_TYPE = "text/event-stream"
# The console page and its files hold no data: the browser then calls the API with its own key.
PUBLIC_PREFIXES = ("/health/", f"{DOCS_STATIC_URL}/", f"{CONSOLE_STATIC_URL}/")

BEARER = HTTPBearer(
    scheme_name="BearerAuth",
    description="An API key from `API_KEYS`, sent as `Authorization: Bearer <key>`.",
    auto_error=False,
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKeyAuth",
    description="An API key from `API_KEYS`, sent as `X-API-Key: <key>`.",
    auto_error=False,
)
ACCESS_TOKEN_QUERY = APIKeyQuery(
    name=ACCESS_TOKEN_PARAMETER,
    scheme_name="AccessTokenQuery",
    description=(
        "For browser `EventSource` and `WebSocket` clients, which cannot send headers: "
        "accepted on event streams only, and removed from the server's log lines."
    ),
    auto_error=False,
)

MISSING_KEY = "this API requires a key: send Authorization: Bearer <key> or X-API-Key: <key>"
INVALID_KEY = "the API key is not valid"

_UNAUTHORIZED_RESPONSE = {
    "description": "Unauthorized: no API key, or not a valid one (`WWW-Authenticate: Bearer`).",
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def is_public(app: FastAPI, path: str) -> bool:
    """Whether ``path`` (a request's, or a route template such as ``/health/ready``) needs no key."""
    public: frozenset[str] | None = getattr(app.state, "public_paths", None)
    if public is None:  # asked once per app: this runs on every request
        public = frozenset(
            {"/", "/health", DOCS_URL, REDOC_URL, CONSOLE_URL, f"{CONSOLE_URL}/", app.openapi_url, app.swagger_ui_oauth2_redirect_url,
             *AGENT_CARD_PATHS}
        )
        app.state.public_paths = public
    return path in public or path.startswith(PUBLIC_PREFIXES)


def event_stream_routes(app: FastAPI) -> re.Pattern[str]:
    """The paths of the SSE routes, as one pattern: the operations ``/openapi.json`` documents as
    answering ``text/event-stream`` (the rule the security documentation follows too). Built on
    first use, as authentication runs before routing and only a query token needs it."""
    pattern: re.Pattern[str] | None = getattr(app.state, "event_stream_routes", None)
    if pattern is None:
        templates = [
            compile_path(path)[0].pattern
            for path, operations in app.openapi().get("paths", {}).items()
            if any(_is_event_stream(operation) for operation in operations.values())
        ]
        pattern = re.compile("|".join(f"(?:{template})" for template in templates) or "(?!)")
        app.state.event_stream_routes = pattern
    return pattern


def accepts_access_token_query(conn: HTTPConnection) -> bool:
    """Event streams (WebSocket, and SSE routes), whose browser clients cannot set headers, also
    take ``?access_token=``."""
    if conn.scope["type"] == "websocket":
        return True
    return event_stream_routes(conn.app).match(conn.scope["path"]) is not None


def presented_key(conn: HTTPConnection) -> str | None:
    scheme, credentials = get_authorization_scheme_param(conn.headers.get("authorization"))
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if header := conn.headers.get(API_KEY_HEADER.model.name):
        return header
    token = conn.query_params.get(ACCESS_TOKEN_PARAMETER) if b"access" in conn.scope["query_string"] else None
    if token and accepts_access_token_query(conn):
        return token
    return None


async def authenticate(conn: HTTPConnection) -> None:
    """Sets ``conn.state.principal`` to the caller's ``Principal``, or to None in open mode and on
    public paths; refuses everything else without a valid key (401, or WebSocket close 4401),
    unknown paths included (they do not reveal which exist)."""
    conn.state.principal = None
    ring: KeyRing = conn.app.state.key_ring
    if is_public(conn.app, conn.scope["path"]):
        return
    if not ring.enabled:
        await refuse_open_access_on_network(conn)
        return
    presented = presented_key(conn)
    principal = ring.identify(presented) if presented is not None else None
    if principal is None:
        # Refused attempts cost the client address a token, so keys cannot be guessed at speed.
        await enforce_rate_limit(conn)
        detail = MISSING_KEY if presented is None else INVALID_KEY
        if isinstance(conn, WebSocket):
            await conn.accept()
            raise WebSocketException(code=CLOSE_UNAUTHORIZED, reason=detail)
        raise UnauthorizedError(detail)
    conn.state.principal = principal


def arrived_on_network_address(conn: HTTPConnection) -> str | None:
    """The local address a request arrived on, when it is not a loopback one. A server started
    as ``uvicorn --host 0.0.0.0`` never told the settings (API_HOST) where it listens; the
    address each connection came in on says it."""
    server = conn.scope.get("server")
    if not server or server[1] is None:  # a Unix socket: local by construction
        return None
    try:
        address = ipaddress.ip_address(str(server[0]).split("%", 1)[0])
    except ValueError:
        return None  # not an IP literal (an in-process test transport)
    return None if address.is_loopback else str(address)


_warned_addresses: set[str] = set()


async def refuse_open_access_on_network(conn: HTTPConnection) -> None:
    """Without API_KEYS, serve the API only to what arrives on a loopback address (unless
    ALLOW_OPEN_ACCESS; public paths such as the probes stay served): the start-up guard checks
    API_HOST, this checks the address actually bound."""
    if conn.app.state.settings.allow_open_access:
        return
    address = arrived_on_network_address(conn)
    if address is None:
        return
    if address not in _warned_addresses:
        _warned_addresses.add(address)
        logger.error(
            "refusing requests on %s: API_KEYS is not set and the server listens on a network "
            "address; set API_KEYS, or ALLOW_OPEN_ACCESS=true to run open anyway", address
        )
    detail = (
        f"this API runs without API_KEYS and serves only loopback clients; it was reached on {address}. "
        "The operator must set API_KEYS (or ALLOW_OPEN_ACCESS=true)"
    )
    if isinstance(conn, WebSocket):
        await conn.accept()
        raise WebSocketException(code=CLOSE_FORBIDDEN, reason="open access is limited to loopback")
    raise ForbiddenError(detail)


async def current_principal(conn: HTTPConnection) -> Principal | None:
    """The caller, as ``authenticate`` identified it before routing."""
    return conn.state.principal


PrincipalDep = Annotated[Principal | None, Depends(current_principal)]


def describe_access(ring: KeyRing) -> dict[str, Any]:
    """For ``/health/status``: the mode and how many keys, never a key."""
    if not ring.enabled:
        return {"mode": "open"}
    return {"mode": "api_keys", "keys": len(ring), "admin_keys": ring.admin_count}


def announce_access(app: FastAPI) -> None:
    """Say in the start-up log whether the API is open."""
    settings: Settings = app.state.settings
    ring: KeyRing = app.state.key_ring
    if ring.enabled:
        logger.info("authentication: %d API key(s), %d admin", len(ring), ring.admin_count)
    else:
        logger.warning(
            "API_KEYS is not set: the API is open to anyone who can reach %s:%d (no authentication)",
            settings.api_host,
            settings.api_port,
        )


def ensure_not_open_on_network(settings: Settings) -> None:
    """Refuse to serve without keys on a non-loopback address, unless ``ALLOW_OPEN_ACCESS``."""
    if settings.api_keys is None and not settings.host_is_loopback and not settings.allow_open_access:
        raise SettingsError(
            f"invalid configuration: API_KEYS: empty while API_HOST={settings.api_host} is not a loopback "
            "address, which would open the API to the network; set API_KEYS (name:key[:admin],...), "
            "or ALLOW_OPEN_ACCESS=true to run open anyway"
        )


_ACCESS_TOKEN_IN_TEXT = re.compile(r"(access(?:_|%5f)token=)[^&\s\"']*", re.IGNORECASE)


def redact_access_tokens(text: str) -> str:
    """``text`` with the value of every ``access_token=`` query parameter replaced."""
    return _ACCESS_TOKEN_IN_TEXT.sub(r"\1[redacted]", text)


class AccessTokenRedactor(logging.Filter):
    """Removes ``access_token`` values from log records (uvicorn logs paths with their query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_access_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_access_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        elif isinstance(record.args, dict):
            record.args = {
                key: redact_access_tokens(value) if isinstance(value, str) else value
                for key, value in record.args.items()
            }
        return True


def _install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        target = logging.getLogger(name)
        if not any(isinstance(existing, AccessTokenRedactor) for existing in target.filters):
            target.addFilter(AccessTokenRedactor())


def _is_event_stream(operation: dict[str, Any]) -> bool:
    success = operation.get("responses", {}).get("200", {})
    return EVENT_STREAM_MEDIA_TYPE in success.get("content", {})


def _document_security(app: FastAPI) -> None:
    """Declare the security schemes and mark every protected operation (401 included), by the
    same rules ``authenticate`` applies, so Swagger UI's Authorize button covers exactly those."""
    previous = app.openapi
    schemes = (BEARER, API_KEY_HEADER, ACCESS_TOKEN_QUERY)

    def openapi() -> dict[str, Any]:
        schema = previous()
        components = schema.setdefault("components", {})
        if "securitySchemes" in components:
            return schema
        components["securitySchemes"] = {
            scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
            for scheme in schemes
        }
        for path, operations in schema.get("paths", {}).items():
            if is_public(app, path):
                continue
            for operation in operations.values():
                requirements = [{BEARER.scheme_name: []}, {API_KEY_HEADER.scheme_name: []}]
                if _is_event_stream(operation):
                    requirements.append({ACCESS_TOKEN_QUERY.scheme_name: []})
                operation["security"] = requirements
                operation["responses"].setdefault("401", _UNAUTHORIZED_RESPONSE)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_authentication(app: FastAPI, settings: Settings) -> None:
    """Load the key ring (refusing an open API on a network address), document the security
    schemes and keep access tokens out of the logs. Call after every route is registered."""
    ensure_not_open_on_network(settings)
    app.state.key_ring = KeyRing(settings.api_key_entries())
    if settings.api_keys is not None:  # an open API documents no security it does not ask for
        _document_security(app)
    _install_log_redaction()
