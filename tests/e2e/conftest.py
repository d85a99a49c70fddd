"""End-to-end fixtures: the API as real uvicorn subprocesses on a fresh PostgreSQL database per
test, talking to a FakeLLMServer in the test process.

The helpers above the fixtures use no pytest, so ``bench/`` reuses them (``ApiServer``,
``service_env``, ``start_fake_llm``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import URL

from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply, FakeRequest, demo_responder
from tests.databases import PostgresTestDatabase
from tests.services import postgres_url_for_tests, tcp_reachable, unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.05
LOG_TAIL_LINES = 60

# Variables the service reads; the developer's values must not leak into a test server.
SERVICE_ENV_PREFIXES = (
    "MGX_", "RUNNER_", "DB_", "API_", "REDIS_", "DATABASE_", "SQLITE_", "IDEMPOTENCY_", "EVENTS_",
    "LOG_", "PROMETHEUS_", "RATE_LIMIT_", "MAX_BODY_", "MAX_STREAMS_",
)


TERMINAL = {"completed", "failed", "cancelled", "rejected", "expired"}


def free_port() -> int:
    """A loopback port that was free a moment ago (the server may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def service_env(database_url: str, llm_base_url: str | None, **overrides: object) -> dict[str, str]:
    """The environment of one API process: isolated from the caller's service settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(SERVICE_ENV_PREFIXES)}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        PYTHONUNBUFFERED="1",
        DATABASE_URL=database_url,
        DB_AUTO_MIGRATE="true",
        MGX_SANDBOX="off",
        # Caching would let later runs skip the LLM; these tests count LLM calls per run.
        MGX_ENABLE_CACHING="false",
        LOG_LEVEL="INFO",
        RUNNER_SHUTDOWN_GRACE_SECONDS="2",
    )
    if llm_base_url is not None:
        env.update(MGX_LLM_BASE_URL=llm_base_url, MGX_LLM_API_KEY="test-key")
    env.update({key.upper(): str(value) for key, value in overrides.items()})
    return env


class ApiServer:
    """One ``uvicorn backend.app.main:app`` subprocess on a loopback port; its output goes to a file."""

    def __init__(
        self,
        env: dict[str, str],
        workdir: Path,
        name: str = "api",
        *,
        command: list[str] | None = None,
        ready_path: str = "/health/ready",
        port: int = 0,
    ) -> None:
        self.env = env
        # Started once this answers 200 (/health/live for a process whose dependencies may be down).
        self.ready_path = ready_path
        # Default: uvicorn on the app; e.g. [sys.executable, "-m", "backend.app.main"] for the entry point.
        self.command = command
        self.workdir = workdir
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.fixed_port = port  # 0: a free port is picked at start
        self.port = port
        self.log_path = workdir / f"{name}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not started"
        return self.process.pid

    def start(self, attempts: int = 3) -> ApiServer:
        """Start and wait for ``ready_path``; retry on another port if the chosen one was taken."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            self.port = self.fixed_port or free_port()
            with self.log_path.open("ab") as log:
                log.write(f"--- starting {self.name} on port {self.port}\n".encode())
                self.process = subprocess.Popen(
                    self.command
                    or [sys.executable, "-m", "uvicorn", "backend.app.main:app", "--host", "127.0.0.1",
                        "--port", str(self.port), "--no-access-log"],
                    cwd=self.workdir,
                    env={**self.env, "API_PORT": str(self.port), "API_HOST": "127.0.0.1"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready():
                return self
            if self.fixed_port or "address already in use" not in self.log_tail().lower():
                break
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        with httpx.Client(base_url=self.base_url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.get(self.ready_path).status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(POLL_SECONDS)
        self.kill()
        return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the server's process group: no shutdown hook runs, leases stay held until
        they expire; the workers of an ``API_WORKERS`` > 1 server die with their supervisor
        instead of serving on without it."""
        if self.running():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL if it does not exit in time."""
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (/proc/<pid>/stat fields 14 and 15)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self) -> int | None:
        """Peak resident set size (VmHWM) of the live process, in KiB."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass(frozen=True)
class RequestSpan:
    """When the fake LLM server started and finished answering one request."""

    run_label: str | None
    action: str | None
    started: float
    finished: float


class RequestSpans:
    """ASGI wrapper for the fake LLM app that records when each request started and when the app
    finished answering it (after the last body chunk), which its own request log does not.
    Install before the server starts."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._spans: list[RequestSpan] = []

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode().lower(): value.decode() for key, value in scope.get("headers", [])}
        started = time.time()
        try:
            await self.app(scope, receive, send)
        finally:
            # Also when the client is gone (a killed API process): the request still took that long.
            span = RequestSpan(headers.get("x-mgx-run"), headers.get("x-mgx-action"), started, time.time())
            with self._lock:
                self._spans.append(span)

    def for_run(self, run_label: str) -> list[RequestSpan]:
        with self._lock:
            return sorted((span for span in self._spans if span.run_label == run_label), key=lambda s: s.started)


def start_fake_llm(latency_seconds: float = 0.0) -> tuple[FakeLLMServer, RequestSpans]:
    fake = FakeLLMServer(latency_seconds=latency_seconds)
    spans = RequestSpans(fake.app)
    fake.app = spans
    fake.start()
    return fake, spans


# The coding call in flight at SIGTERM in the drain tests: long enough to signal during it and
# watch the drain, well inside the shutdown grace.
CODING_SECONDS = 1.5


def slow_coding(request: FakeRequest) -> FakeReply | None:
    """A fake-LLM responder: the demo's answers, with the coding call taking CODING_SECONDS."""
    if request.action == "WriteCode":
        return FakeReply(content=demo_responder(request), delay_seconds=CODING_SECONDS)
    return None


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = POLL_SECONDS) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def run_row(database_url: str, run_id: str) -> dict[str, Any]:
    """The run's lease columns as a stopped process left them: read from the database, since no
    API process is up to ask."""

    async def read() -> dict[str, Any]:
        connection = await asyncpg.connect(database_url, timeout=5)
        try:
            row = await connection.fetchrow(
                "SELECT status, lease_owner, lease_expires_at, attempt FROM runs WHERE id = $1", uuid.UUID(run_id)
            )
        finally:
            await connection.close()
        assert row is not None
        return dict(row)

    return asyncio.run(read())


def wait_for_terminal(client: httpx.Client, run_id: str, timeout: float) -> dict[str, Any]:
    def finished_run() -> dict[str, Any] | None:
        run = client.get(f"/runs/{run_id}").json()
        return run if run["status"] in TERMINAL else None

    return wait_until(finished_run, timeout=timeout, what=f"run {run_id} to finish")


def llm_calls(fake: FakeLLMServer, run_id: str) -> list[str | None]:
    return [request.action for request in fake.requests if request.run_label == run_id]


def create_task_and_run(client: httpx.Client, title: str, description: str = "") -> dict[str, Any]:
    task = client.post(
        "/tasks/", json={"title": title, "description": description, "config": {"auto_approve_plan": True}}
    )
    assert task.status_code == 201, task.text
    run = client.post("/runs/", json={"task_id": task.json()["id"]})
    assert run.status_code == 201, run.text
    return run.json()


def run_events(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """The whole persisted event log of a run, following ``next_after``."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        response = client.get(f"/runs/{run_id}/logs", params={"after": after, "limit": 1000})
        assert response.status_code == 200, response.text
        page = response.json()
        events.extend(page["items"])
        if not page["items"]:
            return events
        after = page["next_after"]


def claim_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "run.status" and "worker" in e["data"]]


def assert_one_holder_at_a_time(events: list[dict[str, Any]]) -> list[str]:
    """Walk the run.status events: a claim needs the previous holder's lease to have ended (run
    requeued or released) first. Returns the claiming workers in order."""
    holder: str | None = None
    workers: list[str] = []
    for event in events:
        if event["type"] != "run.status":
            continue
        data = event["data"]
        if "worker" in data:
            assert holder is None, f"seq {event['seq']}: {data['worker']} claimed while {holder} held the run"
            holder = data["worker"]
            workers.append(holder)
        elif data["status"] == "queued":
            previous = data.get("previous_owner", holder)
            assert previous == holder, f"seq {event['seq']}: requeued from {previous}, held by {holder}"
            holder = None
        elif data["status"] in {"completed", "failed", "cancelled", "rejected", "expired", "awaiting_approval"}:
            holder = None
    return workers


# Fixtures


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test only; dropped afterwards."""
    server = postgres_url_for_tests()
    if not tcp_reachable(server, 5432):
        unavailable("PostgreSQL", server)
    database = PostgresTestDatabase(server)
    database.create()
    try:
        yield database_url_text(database.url.set(drivername="postgresql"))
    finally:
        database.drop()


@pytest.fixture
def fake_llm() -> Iterator[tuple[FakeLLMServer, RequestSpans]]:
    fake, spans = start_fake_llm()
    try:
        yield fake, spans
    finally:
        fake.stop()


ServerFactory = Callable[..., ApiServer]


@pytest.fixture
def api_servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start API subprocesses with ``api_servers(env, name=...)``; all are stopped afterwards, and
    their log tails printed (pytest shows them when the test failed)."""
    servers: list[ApiServer] = []

    def start(env: dict[str, str], name: str = "api", command: list[str] | None = None) -> ApiServer:
        server = ApiServer(env, tmp_path / name, name=f"{name}-{len(servers)}", command=command)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            try:
                server.stop()
            except Exception:
                server.kill()
            print(f"\n--- {server.name} log tail\n{server.log_tail()}")


@pytest.fixture(scope="session")
def demo_api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API for the tests that use the service as a person would (the README's examples, the
    OpenAPI examples, the ``mgx`` client): started with ``python -m backend.app.main`` on a SQLite
    file, the fake LLM answering each call after 0.1 s, so a run lasts long enough to be watched."""
    workdir = tmp_path_factory.mktemp("demo-api")
    fake, _ = start_fake_llm(latency_seconds=0.1)
    env = service_env(f"sqlite:///{workdir / 'mgx.db'}", fake.base_url, RUNNER_POLL_SECONDS="0.2")
    server = ApiServer(env, workdir, name="demo-api", command=[sys.executable, "-m", "backend.app.main"])
    try:
        yield server.start()
    finally:
        server.stop()
        fake.stop()
        print(f"\n--- demo-api log tail\n{server.log_tail()}")
