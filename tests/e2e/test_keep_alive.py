"""Responses on a kept-alive connection go out at once from the service's own entry point.

``python -m backend.app.main`` hands uvicorn its listening socket by descriptor, which uvicorn
serves as a Unix socket, so nothing set TCP_NODELAY on the connections: Nagle's algorithm held
each response's body until the client's delayed ACK of its headers, at least 40 ms on Linux,
on every request after a connection's first (the bench measured 320 requests/s at 16 clients).
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.app.startup import bind_listening_socket
from tests.e2e.conftest import ApiServer, service_env

# Linux's delayed ACK waits at least 40 ms; an answer from the loopback takes a few.
STALL_SECONDS = 0.040


@pytest.mark.parametrize("workers", [1, 2])
def test_requests_on_a_kept_alive_connection_are_not_held_by_nagle(tmp_path: Path, workers: int) -> None:
    env = service_env(f"sqlite:///{tmp_path / 'mgx.db'}", None, API_WORKERS=workers)
    server = ApiServer(env, tmp_path, name=f"keep-alive-{workers}", command=[sys.executable, "-m", "backend.app.main"])
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            client.get("/health/live")  # the connection's first request, answered before any ACK is due
            took = []
            for _ in range(20):
                started = time.perf_counter()
                assert client.get("/health/live").status_code == 200
                took.append(time.perf_counter() - started)
        assert statistics.median(took) < STALL_SECONDS / 2, [f"{seconds * 1000:.1f} ms" for seconds in took]
    finally:
        server.stop()


def test_the_listening_socket_gives_its_connections_tcp_nodelay() -> None:
    with bind_listening_socket("127.0.0.1", 0) as listening:
        with socket.create_connection(listening.getsockname()) as _client:
            accepted, _ = listening.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
