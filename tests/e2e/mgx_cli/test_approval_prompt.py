"""Answering the plan from ``mgx runs watch``'s prompt, and downloading what the run wrote."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.conftest import ApiServer
from tests.e2e.mgx_cli.conftest import new_run, new_task, run_cli


def event_types(api: httpx.Client, run_id: str) -> list[str]:
    return [event["type"] for event in api.get(f"/runs/{run_id}/logs", params={"limit": 1000}).json()["items"]]


def test_reject_with_feedback_then_approve_from_the_prompt_completes_the_run(
    cli_server: ApiServer, api: httpx.Client
) -> None:
    run_id = new_run(api, new_task(api, "ISO-8601 durations: write parse_duration(text) -> timedelta"))

    result = run_cli(cli_server.base_url, "runs", "watch", run_id, stdin="n\nalso accept weeks (P2W)\ny\n")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "plan rejected: re-planning" in result.stdout
    assert "plan approved" in result.stdout
    types = event_types(api, run_id)
    assert types.count("run.approval_required") == 2
    assert types.index("run.rejected") < types.index("run.approved")
    assert types[-1] == "run.completed"
    rejected = next(event for event in api.get(f"/runs/{run_id}/logs").json()["items"] if event["type"] == "run.rejected")
    assert rejected["data"]["feedback"] == "also accept weeks (P2W)"


def test_ending_the_run_from_the_prompt_rejects_it_and_exits_1(cli_server: ApiServer, api: httpx.Client) -> None:
    run_id = new_run(api, new_task(api, "primes below n"))

    result = run_cli(cli_server.base_url, "runs", "watch", run_id, stdin="e\n")

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1].startswith(f"run {run_id} rejected")
    assert api.get(f"/runs/{run_id}").json()["status"] == "rejected"


def test_download_writes_the_code_and_tests_of_a_finished_run(
    cli_server: ApiServer, api: httpx.Client, tmp_path: Path
) -> None:
    task_id = new_task(api, "fizzbuzz up to n", auto_approve_plan=True)
    started = run_cli(cli_server.base_url, "runs", "start", task_id, "--watch", "--quiet")
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = started.stdout.splitlines()[0]

    result = run_cli(cli_server.base_url, "runs", "download", run_id, "--output", str(tmp_path / "out"))

    assert result.returncode == 0, result.stderr
    artifacts = {artifact["name"] for artifact in api.get(f"/runs/{run_id}/artifacts").json()}
    written = {path.name for path in (tmp_path / "out").iterdir()}
    assert written == artifacts - {"plan.json", "review.md", "sandbox-report.json"}
    assert {"fizzbuzz.py", "test_fizzbuzz.py"} <= written
    for name in written:
        assert (tmp_path / "out" / name).read_bytes() == api.get(f"/runs/{run_id}/artifacts/{name}").content
