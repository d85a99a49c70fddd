"""The worker role: ``python -m backend.worker`` executes runs queued through an API process that
executes none (``RUNNER_WORKERS=0``), on one PostgreSQL database, and drains on SIGTERM the way
an API process does: not ready at once, the in-flight phase finishes, the run goes back to the
queue, exit 0; the next worker completes the run."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import pytest

from mgx_agent.testing.fake_llm import FakeLLMServer
from tests.e2e.conftest import (
    ApiServer,
    RequestSpans,
    ServerFactory,
    assert_one_holder_at_a_time,
    create_task_and_run,
    llm_calls,
    run_events,
    run_row,
    service_env,
    slow_coding,
    wait_for_terminal,
    wait_until,
)

pytestmark = pytest.mark.slow

WORKER = [sys.executable, "-m", "backend.worker"]


@pytest.mark.postgres
def test_worker_executes_runs_queued_by_an_api_that_runs_none_and_drains_on_sigterm(
    postgres_url: str, fake_llm: tuple[FakeLLMServer, RequestSpans], api_servers: ServerFactory
) -> None:
    fake, _ = fake_llm
    fake.set_responder(slow_coding)
    common = {"RUNNER_LEASE_SECONDS": 30, "RUNNER_HEARTBEAT_SECONDS": 0.5, "RUNNER_POLL_SECONDS": 0.5}
    api = api_servers(service_env(postgres_url, fake.base_url, RUNNER_WORKERS=0, **common), name="api")
    worker_env = service_env(postgres_url, fake.base_url, RUNNER_WORKERS=4, RUNNER_SHUTDOWN_GRACE_SECONDS=10, **common)
    first = api_servers(worker_env, name="worker", command=WORKER)
    client = httpx.Client(base_url=api.base_url, timeout=5)

    # The worker answers its probes and nothing of the API.
    with httpx.Client(base_url=first.base_url, timeout=5) as probes:
        status = probes.get("/health/status").json()
        assert status["runner"]["workers"] == 4
        assert probes.get("/tasks/").status_code == 404
    assert client.get("/health/status").json()["runner"]["workers"] == 0

    run_id = create_task_and_run(client, "Worker fizzbuzz", "fizzbuzz up to n, executed by a worker")["id"]
    wait_until(lambda: fake.requests_for(action="WriteCode"), timeout=20, what="the worker's coding call")
    first.process.send_signal(signal.SIGTERM)
    wait_until(
        lambda: first_not_ready(first), timeout=3, what="the worker's readiness to turn 503 after SIGTERM"
    )
    assert first.process.wait(15) == 0, first.log_tail()
    row = run_row(postgres_url, run_id)
    assert (row["status"], row["lease_owner"]) == ("queued", None), row

    second = api_servers(worker_env, name="worker", command=WORKER)
    final = wait_for_terminal(client, run_id, timeout=30)
    assert final["status"] == "completed", (final["status"], final["error"])
    events = run_events(client, run_id)
    holders = assert_one_holder_at_a_time(events)
    assert f":{first.pid}:" in holders[0] and f":{second.pid}:" in holders[1], holders
    assert not any(f":{api.pid}:" in holder for holder in holders)
    # The coding call in flight at SIGTERM finished within the grace period and was kept.
    assert llm_calls(fake, run_id).count("WriteCode") == 1
    log = Path(first.log_path).read_text()
    assert "released back to the queue" in log and "Traceback" not in log, first.log_tail()
    client.close()


def first_not_ready(server: ApiServer) -> bool:
    try:
        return httpx.get(f"{server.base_url}/health/ready", timeout=2).status_code == 503
    except httpx.TransportError:
        return False

