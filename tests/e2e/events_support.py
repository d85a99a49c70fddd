"""Small fixtures of the live-event end-to-end tests: API processes (uvicorn subprocesses) on a
fresh PostgreSQL database, and a synchronous SSE reader."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
_SERVICE_ENV_PREFIXES = (
    "MGX_", "RUNNER_", "DB_", "API_", "REDIS_", "DATABASE_", "SQLITE_", "EVENTS_", "IDEMPOTENCY_",
    "RATE_LIMIT_", "MAX_BODY_", "MAX_STREAMS_",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiProcess:
    """``uvicorn backend.app.main:app`` in a subprocess; ready once /health/live answers."""

    def __init__(self, name: str, workdir: Path, **settings: object) -> None:
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith(_SERVICE_ENV_PREFIXES)}
        env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", MGX_SANDBOX="off", MGX_ENABLE_CACHING="false")
        env.update({key.upper(): str(value) for key, value in settings.items()})
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "backend.app.main:app", "--host", "127.0.0.1",
                 "--port", str(self.port), "--no-access-log"],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=self.base_url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    if client.get("/health/live").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def iter_sse(response: httpx.Response) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
    """``(id, event, data)`` per SSE message of a streamed response; comments skipped."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line == "":
            if "data" in fields:
                yield fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
