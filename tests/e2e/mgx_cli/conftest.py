"""Fixtures for the ``mgx`` client's tests: the session's demo API server (``demo_api_server``),
the client run as a subprocess the way a person runs it, and a TCP proxy that can cut an event
stream in the middle.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO_ROOT, ApiServer

CLI_TIMEOUT_SECONDS = 60


@pytest.fixture
def cli_server(demo_api_server: ApiServer) -> ApiServer:
    return demo_api_server


@pytest.fixture
def api(cli_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cli_server.base_url, timeout=10) as client:
        yield client


def cli_env(base_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MGX_")}
    env.update(MGX_API_URL=base_url, PYTHONPATH=str(REPO_ROOT), COLUMNS="120", TERM="dumb")
    return env


def run_cli(base_url: str, *args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m mgx_cli ARGS`` with its output piped (so: plain lines, no live display)."""
    return subprocess.run(
        [sys.executable, "-m", "mgx_cli", *args],
        input=stdin, capture_output=True, text=True, env=cli_env(base_url), cwd=cwd or REPO_ROOT,
        timeout=CLI_TIMEOUT_SECONDS,
    )


def new_task(api: httpx.Client, title: str, **config: object) -> str:
    response = api.post("/tasks/", json={"title": title, "description": title, "config": config})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def new_run(api: httpx.Client, task_id: str) -> str:
    response = api.post("/runs/", json={"task_id": task_id})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@dataclass
class StreamCuttingProxy:
    """Forwards loopback TCP connections to ``upstream_port``. The first request for a run's
    event stream has its response cut after ``cut_after_bytes`` bytes, mid-event, closing the
    connection; every request head is kept, so a test can see how the client reconnected."""

    upstream_port: int
    cut_after_bytes: int
    request_heads: list[str] = field(default_factory=list)
    _cut_taken: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def event_stream_heads(self) -> list[str]:
        return [head for head in self.request_heads if "/events" in head.split("\r\n", 1)[0]]

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            connection = _Connection(self, client, upstream)
            threading.Thread(target=connection.forward_requests, daemon=True).start()
            threading.Thread(target=connection.forward_responses, daemon=True).start()

    def _take_cut(self, head: str) -> bool:
        with self._lock:
            self.request_heads.append(head)
            if "/events" in head.split("\r\n", 1)[0] and not self._cut_taken:
                self._cut_taken = True
                return True
            return False


class _Connection:
    def __init__(self, proxy: StreamCuttingProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        # Response bytes still allowed through once the event stream to cut was asked for.
        self.remaining: int | None = None

    def forward_requests(self) -> None:
        try:
            while chunk := self.client.recv(65536):
                is_head = chunk[:4] in {b"GET ", b"POST", b"PATC", b"DELE", b"PUT "}
                if is_head and self.proxy._take_cut(chunk.decode("latin-1")):
                    self.remaining = self.proxy.cut_after_bytes
                self.upstream.sendall(chunk)
        except OSError:
            pass

    def forward_responses(self) -> None:
        try:
            while chunk := self.upstream.recv(65536):
                if self.remaining is not None:
                    chunk = chunk[: self.remaining]
                    self.remaining -= len(chunk)
                self.client.sendall(chunk)
                if self.remaining == 0:
                    break
        except OSError:
            pass
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
