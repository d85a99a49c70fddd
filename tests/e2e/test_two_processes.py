"""Two API processes on one PostgreSQL database share the run queue: every run is executed
exactly once, and both processes take part."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    RequestSpans,
    ServerFactory,
    assert_one_holder_at_a_time,
    create_task_and_run,
    run_events,
    service_env,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RUNS = 40
LLM_LATENCY_SECONDS = 0.02
# What the demo team asks the LLM for in a run whose code is approved on the first review.
DEMO_CALLS = ["AnalyzeTask", "DraftPlan", "WriteCode", "WriteTest", "ReviewCode"]


def test_two_processes_on_one_database_run_each_run_exactly_once(
    postgres_url: str, fake_llm: tuple[Any, RequestSpans], api_servers: ServerFactory
) -> None:
    fake, _ = fake_llm
    fake.latency_seconds = LLM_LATENCY_SECONDS
    env = service_env(
        postgres_url,
        fake.base_url,
        RUNNER_WORKERS=4,
        RUNNER_LEASE_SECONDS=10,
        RUNNER_HEARTBEAT_SECONDS=1,
        RUNNER_POLL_SECONDS=1,
    )
    servers = [api_servers(env, name="alpha"), api_servers(env, name="beta")]
    clients = [httpx.Client(base_url=server.base_url, timeout=10) for server in servers]
    try:
        run_ids = [
            create_task_and_run(clients[index % 2], f"Slugify titles #{index}", "unicode aware slugs")["id"]
            for index in range(RUNS)
        ]

        def all_finished() -> list[dict[str, Any]] | None:
            page = clients[0].get("/runs/", params={"limit": 200}).json()
            finished = [run for run in page["items"] if run["status"] in {"completed", "failed", "cancelled"}]
            return page["items"] if len(finished) == RUNS else None

        runs = wait_until(all_finished, timeout=25, what=f"all {RUNS} runs to finish", interval=0.2)
        assert sorted(run["id"] for run in runs) == sorted(run_ids)
        assert Counter(run["status"] for run in runs) == {"completed": RUNS}, [
            (run["id"], run["status"], run["error"]) for run in runs if run["status"] != "completed"
        ]
        assert all(run["attempt"] == 0 for run in runs)

        # Each run asked the LLM for exactly one demo sequence: none was executed twice.
        calls: dict[str | None, list[str | None]] = {}
        for request in fake.requests:
            calls.setdefault(request.run_label, []).append(request.action)
        assert set(calls) == set(run_ids), "LLM calls for runs that were not created"
        duplicated = {run_id: actions for run_id, actions in calls.items() if actions != DEMO_CALLS}
        assert not duplicated, duplicated

        # One claim per run, one terminal event, and both processes claimed some.
        claimers: Counter[int] = Counter()
        pids = {server.pid for server in servers}
        for run_id in run_ids:
            events = run_events(clients[1], run_id)
            workers = assert_one_holder_at_a_time(events)
            assert len(workers) == 1, (run_id, workers)
            claimers[int(workers[0].split(":")[-2])] += 1
            terminal = [e["type"] for e in events if e["type"] in {"run.completed", "run.failed", "run.cancelled"}]
            assert terminal == ["run.completed"], (run_id, terminal)
        assert set(claimers) == pids, f"claims per process id: {dict(claimers)}, processes {pids}"

        tasks = clients[1].get("/tasks/", params={"limit": 200}).json()["items"]
        assert len(tasks) == RUNS
        assert all((task["successful_runs"], task["failed_runs"]) == (1, 0) for task in tasks)
    finally:
        for client in clients:
            client.close()
