"""Maps every error the service can raise to an RFC 9457 ``application/problem+json`` response."""

from __future__ import annotations

import logging
import socket
import sqlite3
from http import HTTPStatus
from typing import Any

import asyncpg.exceptions as asyncpg_errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sqlalchemy_errors
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.db.failures import is_database_unavailable, unavailable_cause
from backend.errors import APIError, UnauthorizedError
from backend.observability.dependencies import DependencyWatch
from backend.schemas.problem import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX, field_path

logger = logging.getLogger("backend.errors")

_SLUGS = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large", 415: "unsupported-media-type"}


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + (slug or _SLUGS.get(status) or phrase.lower().replace(" ", "-")),
        "title": title or phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors():
        location, *path = error.get("loc", ()) or ("body",)
        if error.get("type") == "json_invalid":
            path = []  # the location is a character offset, not a field
        errors.append(
            {
                "field": field_path(path) or str(location),
                "location": str(location),
                "message": error.get("msg", "invalid value"),
                "type": error.get("type", "value_error"),
            }
        )
    return errors


def _error_headers(exc: APIError) -> dict[str, str]:
    """The response headers an error carries, including those its status requires."""
    headers = dict(exc.headers)
    if isinstance(exc, UnauthorizedError):
        headers.setdefault("WWW-Authenticate", f'Bearer realm="{exc.realm}"')
    return headers


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return problem_response(
        request,
        exc.status_code,
        exc.detail,
        slug=exc.slug,
        title=exc.title,
        extra=exc.extra,
        headers=_error_headers(exc),
    )


async def api_error_response(request: Request, exc: APIError) -> JSONResponse:
    """The response for ``exc``, for code that answers before the exception handlers run (ASGI
    middleware); the same mapping as for errors raised in routes."""
    return await _api_error(request, exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _field_errors(exc)
    if any(error["type"] == "json_invalid" for error in errors):
        detail = "the request body is not valid JSON"
    else:
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors[:5])
    return problem_response(request, 422, detail, slug="validation-error", extra={"errors": errors})


# FastAPI's answer to a body it could not decode (not UTF-8, nested too deep to parse).
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = getattr(exc, "headers", None)
    if exc.status_code == 400 and detail == _UNPARSABLE_BODY:
        # The same answer as for any other malformed JSON (documented as 422 on every route).
        errors = [{"field": "body", "location": "body", "message": "not valid UTF-8 JSON, or nested too deeply", "type": "json_invalid"}]
        return problem_response(
            request, 422, "the request body is not valid JSON", slug="validation-error", extra={"errors": errors}
        )
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return problem_response(request, exc.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (the router's 405 names only the first route)."""
    allowed: set[str] = set()
    scope = {**request.scope, "method": "GET"}
    for route in request.app.router.routes:
        methods = getattr(route, "methods", None)
        if methods and route.matches(scope)[0] != Match.NONE:
            allowed |= set(methods)
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)


# Errors that may mean the database is unavailable; ``is_database_unavailable`` decides. Each is
# registered by class, so the exception middleware answers it (a handler for ``Exception`` only
# runs in the outermost middleware, which re-raises and gets the traceback logged again).
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy_errors.DBAPIError,
    sqlalchemy_errors.TimeoutError,
    sqlalchemy_errors.DisconnectionError,
    asyncpg_errors.PostgresError,
    asyncpg_errors.InterfaceError,
    asyncpg_errors.InternalClientError,
    sqlite3.Error,
    ConnectionError,
    socket.gaierror,
)
DEPENDENCY_RETRY_AFTER_SECONDS = 5


def database_watch(app: Any) -> DependencyWatch:
    return app.state.database_watch


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_unavailable(exc):
        return await _unexpected_error(request, exc)
    # One log line per outage (the runner's loops log its end), not one per request.
    database_watch(request.app).failed(exc, f"serving {request.method} {request.url.path}")
    return problem_response(
        request,
        503,
        f"the database is unavailable: {unavailable_cause(exc)}; try again shortly",
        slug="service-unavailable",
        headers={"Retry-After": str(DEPENDENCY_RETRY_AFTER_SECONDS)},
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500, "the server hit an unexpected error; it has been logged")


class UnexpectedErrorMiddleware:
    """Answers an error no handler mapped with a 500 problem and logs its traceback once.

    Starlette hands such errors to the outermost middleware, which answers and then re-raises,
    so the server logged the same traceback a second time. This sits just outside the routes'
    exception handlers and ends the error there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request = Request(scope)
            if started:  # too late for an error response: the client sees the connection end
                logger.error("unhandled error on %s %s after the response started", request.method, request.url.path, exc_info=exc)
                return
            response = await _unexpected_error(request, exc)
            await response(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.state.database_watch = DependencyWatch("database", logging.getLogger("backend.db"), unavailable_cause)
    for error in DEPENDENCY_ERRORS:
        app.add_exception_handler(error, _database_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.user_middleware.append(Middleware(UnexpectedErrorMiddleware))
