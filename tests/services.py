"""Locating the external services (PostgreSQL, Redis) the integration tests talk to.

A service that cannot be reached makes its tests skip with the reason, unless
``MGX_REQUIRE_SERVICES=1`` (set by CI), where it makes them fail.

The suite runs in parallel pytest-xdist workers; a test flushes its Redis database, so each
worker gets its own: worker ``gwK`` uses database ``D - K`` of ``TEST_REDIS_URL`` (database D).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


def services_required() -> bool:
    return os.environ.get("MGX_REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def tcp_reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 1.0):
            return True
    except OSError:
        return False


def unavailable(service: str, url: str) -> None:
    """Skip (or, when services are required, fail) the calling test."""
    message = f"{service} is not reachable at {url}"
    if services_required():
        pytest.fail(f"{message} and MGX_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def postgres_url_for_tests() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def redis_url_for_tests() -> str:
    url = os.environ.get("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or "0")
    database = base - int(worker[2:])
    if database < 0:
        pytest.fail(
            f"TEST_REDIS_URL names database {base}; xdist worker {worker} would need database {database} "
            "(worker gwK uses database D-K): use a higher database or fewer workers",
            pytrace=False,
        )
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))
