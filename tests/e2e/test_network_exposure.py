"""What the address a server actually listens on allows: an open API (no API_KEYS) reached on a
network address refuses to serve even when uvicorn was started by hand with ``--host 0.0.0.0``,
and forwarded headers are believed only from FORWARDED_ALLOW_IPS, so a client cannot rotate
X-Forwarded-For to escape its rate limit."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ApiServer, free_port, service_env


def network_address() -> str | None:
    """One non-loopback address of this machine, or None on a host that has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_an_open_api_bound_to_every_address_serves_only_loopback_clients(tmp_path: Path) -> None:
    address = network_address()
    if address is None:
        pytest.skip("this host has no network address to reach the server on")
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'open.db'}", None, RUNNER_WORKERS="0")
    env.pop("API_KEYS", None)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "backend.app.main:app", "--host", "0.0.0.0", "--port", str(port)]
    server = ApiServer(env, tmp_path, "open-api", command=command, port=port).start()
    try:
        assert httpx.get(f"{server.base_url}/tasks/").status_code == 200
        refused = httpx.get(f"http://{address}:{server.port}/tasks/")
        assert refused.status_code == 403, refused.text
        assert "API_KEYS" in refused.json()["detail"]
        assert httpx.get(f"http://{address}:{server.port}/health/live").status_code == 200
    finally:
        server.stop()
    assert "refusing requests on" in server.log_tail(200)


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(tmp_path: Path) -> None:
    env = service_env(
        f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}", None,
        RUNNER_WORKERS="0", RATE_LIMIT_PER_MINUTE="1", RATE_LIMIT_BURST="2",
    )
    server = ApiServer(env, tmp_path, "entry-point", command=[sys.executable, "-m", "backend.app.main"]).start()
    try:
        codes = [
            httpx.get(f"{server.base_url}/tasks/", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(3)
        ]
    finally:
        server.stop()
    assert codes == [200, 200, 429], codes

    env["FORWARDED_ALLOW_IPS"] = "127.0.0.1"
    server = ApiServer(env, tmp_path, "behind-proxy", command=[sys.executable, "-m", "backend.app.main"]).start()
    try:
        codes = [
            httpx.get(f"{server.base_url}/tasks/", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(3)
        ]
    finally:
        server.stop()
    assert codes == [200, 200, 200], "a trusted proxy's X-Forwarded-For names the client"
