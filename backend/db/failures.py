"""Which database errors mean "the database is unavailable" (answer 503, retry later) rather
than a bug, and the cause to report.

An outage reaches the service in many shapes: SQLAlchemy's ``OperationalError`` /
``InterfaceError`` / pool ``TimeoutError``, but also asyncpg errors that SQLAlchemy wraps in a
bare ``DBAPIError`` while PostgreSQL starts or stops (``CannotConnectNowError``: "the database
system is starting up"; ``ConnectionDoesNotExistError``; ``InternalClientError`` from a
connection the server cut mid-protocol). A misconfigured database (unknown role, missing
database, schema not migrated) and a database that cannot be written (read-only SQLite file,
disk full) are unavailable too, and their cause is worth saying: it is what the operator must fix.
"""

from __future__ import annotations

import socket
import sqlite3

import asyncpg.exceptions as pg
from sqlalchemy import exc as sqlalchemy_errors

# Driver errors that mean the database cannot serve (as opposed to a bad statement: a bug).
_UNAVAILABLE_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    pg.PostgresConnectionError,
    pg.OperatorInterventionError,  # CannotConnectNow, AdminShutdown, CrashShutdown
    pg.InsufficientResourcesError,  # disk full, too many connections, out of memory
    pg.InternalClientError,
    pg.InterfaceError,
    pg.InvalidCatalogNameError,  # the database does not exist
    pg.InvalidAuthorizationSpecificationError,  # unknown role, wrong password
    pg.UndefinedTableError,  # the schema is not migrated
    pg.ReadOnlySQLTransactionError,  # a hot standby, or default_transaction_read_only
    pg.DiskFullError,
    sqlite3.OperationalError,  # unable to open, readonly database, disk full, locked
    ConnectionError,  # refused, reset
    socket.gaierror,  # the host name does not resolve
    TimeoutError,
)

# How each misconfiguration reads to the operator (the driver's own words follow).
_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (pg.InvalidCatalogNameError, "the database does not exist"),
    (pg.InvalidAuthorizationSpecificationError, "the database refused the login"),
    (pg.UndefinedTableError, "the schema is not migrated (run `alembic upgrade head`)"),
    (pg.ReadOnlySQLTransactionError, "the database is read-only"),
    (pg.DiskFullError, "the database's disk is full"),
)


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own error inside SQLAlchemy's wrapper (asyncpg's is one level deeper)."""
    inner: BaseException = getattr(exc, "orig", None) or exc
    # SQLAlchemy's asyncpg adapter wraps the asyncpg error once more; the original is its cause.
    if inner.__cause__ is not None and type(inner).__module__.startswith("sqlalchemy"):
        inner = inner.__cause__
    return inner


def is_database_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy_errors.TimeoutError | sqlalchemy_errors.DisconnectionError):
        return True
    if isinstance(exc, sqlalchemy_errors.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sqlalchemy_errors.OperationalError | sqlalchemy_errors.InterfaceError):
            return True
        return isinstance(driver_error(exc), _UNAVAILABLE_DRIVER_ERRORS)
    return isinstance(exc, _UNAVAILABLE_DRIVER_ERRORS)


def unavailable_cause(exc: BaseException) -> str:
    """What is wrong, for the operator and the 503 detail: ``hint (ErrorType: driver message)``
    with no SQL, no parameters and no credentials."""
    inner = driver_error(exc)
    message = (str(inner).splitlines() or [""])[0].strip()[:200]
    described = f"{type(inner).__name__}: {message}" if message else type(inner).__name__
    if isinstance(exc, sqlalchemy_errors.TimeoutError):
        return f"no database connection became free in time ({described})"
    for error_type, hint in _HINTS:
        if isinstance(inner, error_type):
            return f"{hint} ({described})"
    return described
