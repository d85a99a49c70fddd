"""What the address a server actually listens on allows: an open API (no API_KEYS) reached on a
network address refuses to serve even when uvicorn was started by hand with ``--host 0.0.0.0``,
and forwarded headers are believed only from FORWARDED_ALLOW_IPS, so a client cannot rotate
X-Forwarded-For to escape its rate limit."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from backend.app.main import create_app, forwarded_header_options
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.e2e.uvicorn_in_thread import serving


async def call_as_received_on(app, local_address: str, path: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    """One HTTP request as uvicorn hands it to the app when it arrived on ``local_address``
    (what a server bound to 0.0.0.0 sees for a client that came over the network)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", f"{local_address}:8000".encode())],
        "server": (local_address, 8000), "client": ("198.51.100.7", 50123), "state": {},
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body or b"{}")


async def test_an_open_api_bound_to_every_address_serves_only_loopback_clients(
    sqlite_template: Path, tmp_path: Path, caplog
) -> None:
    app = create_app(make_settings(sqlite_copy(sqlite_template, tmp_path), mgx_sandbox="off", runner_workers=0))
    async with app.router.lifespan_context(app):
        status, body = await call_as_received_on(app, "192.0.2.2", "/tasks/")
        assert status == 403, body
        assert "API_KEYS" in body["detail"]
        assert (await call_as_received_on(app, "192.0.2.2", "/health/live"))[0] == 200
        assert (await call_as_received_on(app, "127.0.0.1", "/tasks/"))[0] == 200
        assert (await call_as_received_on(app, "::1", "/tasks/"))[0] == 200
    assert any("refusing requests on 192.0.2.2" in record.getMessage() for record in caplog.records)

    allowed = create_app(
        make_settings(sqlite_copy(sqlite_template, tmp_path), mgx_sandbox="off", runner_workers=0, allow_open_access=True)
    )
    async with allowed.router.lifespan_context(allowed):
        assert (await call_as_received_on(allowed, "192.0.2.2", "/tasks/"))[0] == 200


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(sqlite_template: Path, tmp_path: Path) -> None:
    """The server as ``python -m backend.app.main`` configures uvicorn, on a real socket."""
    for trusted, expected in (("", [200, 200, 429]), ("127.0.0.1", [200, 200, 200])):
        settings = make_settings(
            sqlite_copy(sqlite_template, tmp_path), mgx_sandbox="off", runner_workers=0,
            rate_limit_per_minute=1, rate_limit_burst=2, forwarded_allow_ips=trusted,
        )
        with serving(create_app(settings), **forwarded_header_options(settings)) as base_url:
            codes = [
                httpx.get(f"{base_url}/tasks/", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                for n in range(3)
            ]
        assert codes == expected, (trusted, codes)
