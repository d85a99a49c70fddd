"""SIGTERM to a real uvicorn process with a run in flight and live streams open: readiness turns
503 at once while the process keeps serving, the SSE stream ends cleanly with a reconnect hint,
the WebSocket closes with 1001, the in-flight phase finishes within the grace period, the run
goes back to the queue, the process exits 0, and the next process completes the run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from mgx_agent.testing.fake_llm import FakeLLMServer
from tests.databases import sqlite_copy
from tests.e2e.conftest import (
    RequestSpans,
    ServerFactory,
    assert_one_holder_at_a_time,
    create_task_and_run,
    free_port,
    llm_calls,
    run_events,
    run_row,
    service_env,
    slow_coding,
    wait_for_terminal,
    wait_until,
)

pytestmark = pytest.mark.slow

GRACE_SECONDS = 10
SHUTDOWN_NOTICE = ": server shutting down; reconnect with Last-Event-ID"


@dataclass
class StreamRecord:
    lines: list[str] = field(default_factory=list)
    error: BaseException | None = None
    ended_at: float | None = None
    opened: threading.Event = field(default_factory=threading.Event)


def follow_sse(base_url: str, run_id: str, record: StreamRecord) -> None:
    """Read the run's SSE stream to its end (an exception means it was cut, not ended)."""
    try:
        with httpx.stream("GET", f"{base_url}/runs/{run_id}/events", timeout=30) as response:
            assert response.status_code == 200, response.read()
            record.opened.set()
            for line in response.iter_lines():
                record.lines.append(line)
    except BaseException as exc:  # recorded for the test thread to assert on
        record.error = exc
    finally:
        record.ended_at = time.monotonic()
        record.opened.set()


def follow_socket(base_url: str, run_id: str, record: StreamRecord) -> None:
    """Read the run's WebSocket until the server closes it; the close code lands in ``lines``."""
    try:
        with ws_connect(f"{base_url.replace('http://', 'ws://')}/ws/runs/{run_id}") as socket:
            record.opened.set()
            try:
                while True:
                    record.lines.append(str(socket.recv(timeout=30)))
            except ConnectionClosed as closed:
                record.lines.append(f"close {closed.rcvd.code if closed.rcvd else None}")
    except BaseException as exc:
        record.error = exc
    finally:
        record.ended_at = time.monotonic()
        record.opened.set()


@pytest.mark.postgres
def test_sigterm_drains_streams_and_runner_then_exits_0_and_the_next_process_completes_the_run(
    postgres_url: str, fake_llm: tuple[FakeLLMServer, RequestSpans], api_servers: ServerFactory
) -> None:
    fake, _ = fake_llm
    fake.set_responder(slow_coding)
    env = service_env(
        postgres_url,
        fake.base_url,
        RUNNER_LEASE_SECONDS=30,  # only the release at shutdown lets the next process start at once
        RUNNER_HEARTBEAT_SECONDS=0.5,
        RUNNER_SHUTDOWN_GRACE_SECONDS=GRACE_SECONDS,
    )
    first = api_servers(env, name="first")
    client = httpx.Client(base_url=first.base_url, timeout=5)
    run_id = create_task_and_run(client, "Drained fizzbuzz", "fizzbuzz up to n, survives a rolling deploy")["id"]
    sse, socket = StreamRecord(), StreamRecord()
    readers = [
        threading.Thread(target=follow_sse, args=(first.base_url, run_id, sse), daemon=True),
        threading.Thread(target=follow_socket, args=(first.base_url, run_id, socket), daemon=True),
    ]
    for reader in readers:
        reader.start()
    assert sse.opened.wait(5) and socket.opened.wait(5)
    wait_until(lambda: fake.requests_for(action="WriteCode"), timeout=15, what="the coding call to be in flight")

    signalled_at = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    not_ready = wait_until(
        lambda: (response := client.get("/health/ready")).status_code == 503 and response,
        timeout=1.0,
        what="readiness to turn 503 after SIGTERM",
    )
    ready_503_after = time.monotonic() - signalled_at
    assert not_ready.json()["checks"]["shutdown"] == {"ok": False, "detail": "draining: the process is shutting down"}
    assert client.get("/health/live").status_code == 200, "the process keeps serving while it drains"
    assert client.get(f"/runs/{run_id}").json()["status"] == "running", "the in-flight run is still held"
    client.close()
    for reader in readers:
        reader.join(5)

    exit_code = first.process.wait(GRACE_SECONDS + 5)
    exited_after = time.monotonic() - signalled_at
    assert exit_code == 0, f"exit status {exit_code}\n{first.log_tail()}"
    assert exited_after < GRACE_SECONDS, f"took {exited_after:.1f}s to exit"
    assert ready_503_after < 1.0

    # Both streams ended cleanly, at the start of the drain (not when the process went away).
    assert sse.error is None, f"SSE stream was cut: {sse.error!r}"
    assert sse.ended_at is not None and sse.ended_at - signalled_at < 1.0
    assert any(line.startswith("event: run.") for line in sse.lines), sse.lines[:5]
    assert sse.lines[-2:] == [SHUTDOWN_NOTICE, ""], sse.lines[-3:]
    assert socket.error is None, repr(socket.error)
    assert socket.lines[-1] == "close 1001", socket.lines[-3:]
    assert socket.ended_at is not None and socket.ended_at - signalled_at < 1.0

    # The coding phase finished within the grace period, then the run went back to the queue.
    row = run_row(postgres_url, run_id)
    assert (row["status"], row["lease_owner"], row["attempt"]) == ("queued", None, 0), row

    second = api_servers(env, name="second")
    with httpx.Client(base_url=second.base_url, timeout=5) as resumed:
        final = wait_for_terminal(resumed, run_id, timeout=20)
        events = run_events(resumed, run_id)
    assert final["status"] == "completed", (final["status"], final["error"])
    requeued = [e for e in events if e["type"] == "run.status" and e["data"]["status"] == "queued"]
    assert [e["data"].get("reason") for e in requeued] == ["released at shutdown"]
    workers = assert_one_holder_at_a_time(events)
    assert f":{first.pid}:" in workers[0] and f":{second.pid}:" in workers[1], workers
    assert llm_calls(fake, run_id) == ["AnalyzeTask", "DraftPlan", "WriteCode", "WriteTest", "ReviewCode"]


def test_sigterm_to_the_entry_point_with_two_workers_drains_each_and_exits_0(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """``python -m backend.app.main`` with ``API_WORKERS=2``: uvicorn's supervisor passes SIGTERM on
    to both worker processes, each drains, and the whole process tree exits 0."""
    port = free_port()
    env = service_env(
        sqlite_copy(sqlite_template, tmp_path).render_as_string(),
        None,
        DB_AUTO_MIGRATE="false",  # the template is migrated; two workers must not race to do it
        API_HOST="127.0.0.1",
        API_PORT=port,
        API_WORKERS=2,
    )
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.app.main"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:

            def both_workers_started() -> bool:
                try:
                    client.get("/health/ready")
                except httpx.TransportError:
                    return False
                return log_path.read_text().count("runner started") == 2

            wait_until(both_workers_started, timeout=30, what="two ready workers")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, log_path.read_text()[-3000:]
    finally:
        # The workers too: after a failure they would outlive a killed supervisor, serving on.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log = log_path.read_text()
    assert log.count("SIGTERM received: draining before shutdown") == 2, log[-3000:]
    assert log.count("drained in") == 2, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
