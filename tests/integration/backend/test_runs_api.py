"""Runs over HTTP on SQLite and PostgreSQL: the team really runs, through a fake LLM server."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply

from tests.integration.backend.conftest import start_run, wait_for_status
from tests.integration.backend.test_tasks_api import assert_problem

FULL_SEQUENCE = ["AnalyzeTask", "DraftPlan", "WriteCode", "WriteTest", "ReviewCode"]


def actions_for(fake_llm: FakeLLMServer, run_id: str) -> list[str]:
    return [request.action for request in fake_llm.requests if request.run_label == run_id]


async def test_run_plans_waits_for_approval_then_completes(run_app, fake_llm: FakeLLMServer) -> None:
    client = await run_app()
    task, run = await start_run(client)
    assert run["status"] == "queued" and run["number"] == 1

    waiting = await wait_for_status(client, run["id"], "awaiting_approval")
    assert waiting["plan"]["steps"] and waiting["complexity"] in {"XS", "S", "M", "L", "XL"}
    assert waiting["approval_expires_at"] is not None
    assert waiting["lease_owner"] is None

    approved = await client.post(f"/runs/{run['id']}/approve", json={"comment": "ship it"})
    assert approved.status_code == 200
    assert approved.json()["status"] == "queued"

    done = await wait_for_status(client, run["id"], {"completed", "failed"})
    assert done["status"] == "completed", done["error"]
    assert done["result"]["outcome"] == "approved"
    assert done["usage"]["total"]["llm_calls"] == 5
    assert done["usage"]["total"]["prompt_tokens"] > 0
    assert set(done["timings"]) >= {"planning", "coding", "testing", "reviewing"}
    assert actions_for(fake_llm, run["id"]) == FULL_SEQUENCE
    names = {artifact["name"] for artifact in done["artifacts"]}
    assert {"plan.json", "review.md", "fizzbuzz.py", "test_fizzbuzz.py", "sandbox-report.json"} <= names

    code = await client.get(f"/runs/{run['id']}/artifacts/fizzbuzz.py")
    assert code.status_code == 200
    assert code.headers["content-type"].startswith("text/x-python")
    assert "def fizzbuzz" in code.text
    listed = {item["name"]: item for item in (await client.get(f"/runs/{run['id']}/artifacts")).json()}
    import hashlib

    assert listed["fizzbuzz.py"]["sha256"] == hashlib.sha256(code.content).hexdigest()
    assert listed["fizzbuzz.py"]["size"] == len(code.content)

    task_after = (await client.get(f"/tasks/{task['id']}")).json()
    assert (task_after["status"], task_after["total_runs"], task_after["successful_runs"]) == ("completed", 1, 1)
    assert task_after["last_run_id"] == run["id"]


async def test_logs_are_ordered_and_pageable(run_app) -> None:
    client = await run_app()
    _, run = await start_run(client, {"auto_approve_plan": True})
    await wait_for_status(client, run["id"], "completed")
    page = (await client.get(f"/runs/{run['id']}/logs", params={"limit": 1000})).json()
    seqs = [item["seq"] for item in page["items"]]
    assert seqs == list(range(1, len(seqs) + 1))
    types = [item["type"] for item in page["items"]]
    assert types[0] == "run.created" and types[-1] == "run.completed"
    assert {"run.plan_ready", "agent.message", "artifact.created", "run.approved", "sandbox.result"} <= set(types)
    second = (await client.get(f"/runs/{run['id']}/logs", params={"after": 3, "limit": 2})).json()
    assert [item["seq"] for item in second["items"]] == [4, 5]
    assert second["next_after"] == 5
    transcript = await client.get(f"/runs/{run['id']}/logs", headers={"Accept": "text/plain"})
    assert transcript.headers["content-type"].startswith("text/plain")
    assert "status queued -> planning" in transcript.text
    assert "mike AnalyzeTask" in transcript.text


async def test_reject_with_feedback_replans(run_app, fake_llm: FakeLLMServer) -> None:
    client = await run_app()
    _, run = await start_run(client)
    await wait_for_status(client, run["id"], "awaiting_approval")
    rejected = await client.post(
        f"/runs/{run['id']}/reject", json={"feedback": "Also handle negative numbers", "replan": True}
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "queued"
    await wait_for_status(client, run["id"], "awaiting_approval")
    drafts = [r for r in fake_llm.requests if r.run_label == run["id"] and r.action == "DraftPlan"]
    assert len(drafts) == 2
    assert "Also handle negative numbers" in drafts[1].prompt_text
    assert actions_for(fake_llm, run["id"]).count("AnalyzeTask") == 1
    await client.post(f"/runs/{run['id']}/approve")
    assert (await wait_for_status(client, run["id"], {"completed", "failed"}))["status"] == "completed"


async def test_reject_without_replan_ends_the_run(run_app) -> None:
    client = await run_app()
    task, run = await start_run(client)
    await wait_for_status(client, run["id"], "awaiting_approval")
    response = await client.post(f"/runs/{run['id']}/reject", json={"feedback": "wrong approach", "replan": False})
    assert response.json()["status"] == "rejected"
    assert response.json()["error"] == {"code": "rejected", "message": "wrong approach"}
    assert (await client.get(f"/tasks/{task['id']}")).json()["status"] == "rejected"
    again = assert_problem(await client.post(f"/runs/{run['id']}/approve"), 409)
    assert again["current_status"] == "rejected"


async def test_replan_needs_feedback(run_app) -> None:
    client = await run_app()
    _, run = await start_run(client)
    await wait_for_status(client, run["id"], "awaiting_approval")
    body = assert_problem(await client.post(f"/runs/{run['id']}/reject", json={"replan": True}), 422)
    assert "feedback" in body["detail"]
    assert (await client.get(f"/runs/{run['id']}")).json()["status"] == "awaiting_approval"


async def test_unapproved_plan_expires(run_app) -> None:
    client = await run_app(mgx_approval_ttl_seconds=1)
    _, run = await start_run(client)
    await wait_for_status(client, run["id"], "awaiting_approval")
    expired = await wait_for_status(client, run["id"], "expired", timeout=10)
    assert expired["error"]["code"] == "approval_expired"
    types = [item["type"] for item in (await client.get(f"/runs/{run['id']}/logs")).json()["items"]]
    assert types[-1] == "run.expired"


async def test_double_approve_exactly_one_wins(run_app) -> None:
    client = await run_app(runner_workers=1)
    _, run = await start_run(client)
    await wait_for_status(client, run["id"], "awaiting_approval")
    first, second = await asyncio.gather(
        client.post(f"/runs/{run['id']}/approve"), client.post(f"/runs/{run['id']}/approve")
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    loser = first if first.status_code == 409 else second
    assert loser.headers["content-type"].startswith("application/problem+json")
    approvals = [
        item for item in (await client.get(f"/runs/{run['id']}/logs")).json()["items"] if item["type"] == "run.approved"
    ]
    assert len(approvals) == 1


async def test_cancel_a_queued_run(run_app, fake_llm: FakeLLMServer) -> None:
    client = await run_app(runner_workers=0)
    task, run = await start_run(client)
    cancelled = await client.post(f"/runs/{run['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert (await client.get(f"/tasks/{task['id']}")).json()["status"] == "cancelled"
    assert actions_for(fake_llm, run["id"]) == []
    assert_problem(await client.post(f"/runs/{run['id']}/cancel"), 409)


async def test_cancel_a_run_awaiting_approval(run_app) -> None:
    client = await run_app()
    _, run = await start_run(client)
    await wait_for_status(client, run["id"], "awaiting_approval")
    assert (await client.post(f"/runs/{run['id']}/cancel")).json()["status"] == "cancelled"
    assert_problem(await client.post(f"/runs/{run['id']}/approve"), 409)


async def test_cancel_a_running_run_stops_its_llm_call_and_keeps_artifacts(
    run_app, fake_llm: FakeLLMServer
) -> None:
    client = await run_app()
    _, run = await start_run(client, {"auto_approve_plan": True})
    # Planning answers at once; Alex's call hangs until the run is cancelled.
    fake_llm.enqueue(FakeReply(content="", hang=True), action="WriteCode")
    deadline = time.monotonic() + 10
    while "WriteCode" not in actions_for(fake_llm, run["id"]):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    started = time.monotonic()
    response = await client.post(f"/runs/{run['id']}/cancel")
    assert response.json()["status"] == "cancelled"
    runner = client.app.state.runner  # type: ignore[attr-defined]
    while runner.running_here:
        assert time.monotonic() - started < 2, "the worker did not stop within 2 s"
        await asyncio.sleep(0.02)
    calls = len(actions_for(fake_llm, run["id"]))
    await asyncio.sleep(0.3)
    assert len(actions_for(fake_llm, run["id"])) == calls  # nothing more was asked
    final = (await client.get(f"/runs/{run['id']}")).json()
    assert final["status"] == "cancelled"
    assert "plan.json" in {artifact["name"] for artifact in final["artifacts"]}


async def test_create_is_idempotent_and_second_active_run_conflicts(run_app) -> None:
    client = await run_app(runner_workers=0)
    task = (await client.post("/tasks/", json={"title": "once"})).json()
    headers = {"Idempotency-Key": "run-once"}
    first = await client.post("/runs/", json={"task_id": task["id"]}, headers=headers)
    again = await client.post("/runs/", json={"task_id": task["id"]}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"] == f"/runs/{first.json()['id']}"
    other = assert_problem(await client.post("/runs/", json={"task_id": task["id"]}), 409)
    assert "active run" in other["detail"]
    assert (await client.get("/runs/", params={"task_id": task["id"]})).json()["total"] == 1
    assert_problem(
        await client.post("/runs/", json={"task_id": task["id"], "label": "x"}, headers=headers), 422
    )


async def test_concurrent_runs_allowed_by_task_config(run_app) -> None:
    client = await run_app(runner_workers=0)
    task = (await client.post("/tasks/", json={"title": "many", "config": {"allow_concurrent_runs": True}})).json()
    numbers = [
        (await client.post("/runs/", json={"task_id": task["id"]})).json()["number"] for _ in range(3)
    ]
    assert numbers == [1, 2, 3]
    listed = (await client.get("/runs/", params={"task_id": task["id"], "status": "queued"})).json()
    assert listed["total"] == 3
    assert (await client.get(f"/tasks/{task['id']}")).json()["total_runs"] == 3


async def test_simultaneous_creations_on_one_task_make_exactly_one_run(run_app) -> None:
    """The task's lock serialises creations: of ten at once, one makes the run and nine see it."""
    client = await run_app(runner_workers=0)
    task = (await client.post("/tasks/", json={"title": "race"})).json()
    answers = await asyncio.gather(*(client.post("/runs/", json={"task_id": task["id"]}) for _ in range(10)))
    assert sorted(answer.status_code for answer in answers) == [201] + [409] * 9
    for answer in answers:
        if answer.status_code == 409:
            assert "active run" in assert_problem(answer, 409)["detail"]
    created = next(answer.json() for answer in answers if answer.status_code == 201)
    assert created["number"] == 1
    stored = (await client.get("/tasks/" + task["id"])).json()
    assert stored["total_runs"] == 1 and stored["status"] == "queued"
    logs = (await client.get(f"/runs/{created['id']}/logs")).json()["items"]
    assert [(item["seq"], item["type"]) for item in logs] == [(1, "run.created")]
    assert logs[0]["data"] == {"task_id": task["id"], "number": 1}


async def test_simultaneous_creations_with_concurrency_allowed_number_the_runs_in_order(run_app) -> None:
    """Allowed by the run's own overrides (over the task's config saying no): every creation
    makes a run, and the numbers are 1..10 with none taken twice."""
    client = await run_app(runner_workers=0)
    task = (await client.post("/tasks/", json={"title": "many", "config": {"allow_concurrent_runs": False}})).json()
    body = {"task_id": task["id"], "overrides": {"allow_concurrent_runs": True}}
    answers = await asyncio.gather(*(client.post("/runs/", json=body) for _ in range(10)))
    assert [answer.status_code for answer in answers] == [201] * 10
    assert sorted(answer.json()["number"] for answer in answers) == list(range(1, 11))
    assert (await client.get("/tasks/" + task["id"])).json()["total_runs"] == 10
    # Without the override the task's own config applies: an active run is there, so 409.
    assert_problem(await client.post("/runs/", json={"task_id": task["id"]}), 409)


async def test_unknown_task_and_run_ids(run_app) -> None:
    client = await run_app(runner_workers=0)
    assert_problem(await client.post("/runs/", json={"task_id": str(uuid.uuid4())}), 404)
    missing = uuid.uuid4()
    for method, path in [
        ("GET", f"/runs/{missing}"),
        ("POST", f"/runs/{missing}/approve"),
        ("POST", f"/runs/{missing}/cancel"),
        ("GET", f"/runs/{missing}/artifacts"),
        ("GET", f"/runs/{missing}/artifacts/plan.json"),
        ("GET", f"/runs/{missing}/logs"),
        ("DELETE", f"/runs/{missing}"),
    ]:
        assert_problem(await client.request(method, path), 404)


async def test_patch_edits_label_but_never_status(run_app) -> None:
    client = await run_app(runner_workers=0)
    _, run = await start_run(client)
    url = f"/runs/{run['id']}"
    body = assert_problem(await client.patch(url, json={"status": "completed"}), 422)
    assert body["errors"][0]["field"] == "status"
    edited = await client.patch(url, json={"label": "nightly", "notes": "try 2"}, headers={"If-Match": f'"{run["version"]}"'})
    assert edited.status_code == 200
    assert (edited.json()["label"], edited.json()["notes"]) == ("nightly", "try 2")
    assert edited.headers["etag"] == f'"{run["version"] + 1}"'
    assert_problem(await client.patch(url, json={"label": "x"}, headers={"If-Match": f'"{run["version"]}"'}), 412)
    assert (await client.get(url)).json()["status"] == "queued"


async def test_delete_active_run_is_409_and_finished_run_204(run_app) -> None:
    client = await run_app(runner_workers=0)
    _, run = await start_run(client)
    body = assert_problem(await client.delete(f"/runs/{run['id']}"), 409)
    assert body["current_status"] == "queued"
    await client.post(f"/runs/{run['id']}/cancel")
    assert (await client.delete(f"/runs/{run['id']}")).status_code == 204
    assert_problem(await client.get(f"/runs/{run['id']}"), 404)


async def test_deleting_a_task_with_an_active_run_needs_cascade(run_app) -> None:
    client = await run_app(runner_workers=0)
    task, run = await start_run(client)
    assert_problem(await client.delete(f"/tasks/{task['id']}"), 409)
    assert (await client.delete(f"/tasks/{task['id']}", params={"cascade": "true"})).status_code == 204
    assert_problem(await client.get(f"/runs/{run['id']}"), 404)


async def test_malformed_model_output_fails_the_run_clearly(run_app, fake_llm: FakeLLMServer) -> None:
    client = await run_app()
    fake_llm.enqueue("I would rather not write code.", action="WriteCode")
    fake_llm.enqueue("Still no code, sorry.", action="WriteCode")
    task, run = await start_run(client, {"auto_approve_plan": True})
    failed = await wait_for_status(client, run["id"], {"failed", "completed"})
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "malformed_output"
    assert "alex" in failed["error"]["message"]
    assert (await client.get(f"/tasks/{task['id']}")).json()["failed_runs"] == 1


async def test_status_reports_runner_queue(run_app) -> None:
    client = await run_app(runner_workers=0)
    await start_run(client)
    status = (await client.get("/health/status")).json()
    assert status["runner"]["workers"] == 0
    assert status["runner"]["queue_depth"] == 1
    assert status["runner"]["oldest_queued_age_seconds"] >= 0
    assert status["llm"]["provider"] == "openai"
    assert "test-key" not in str(status)


async def test_runner_runs_ad_hoc_jobs(run_app) -> None:
    client = await run_app(runner_workers=0)
    runner = client.app.state.runner  # type: ignore[attr-defined]

    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        return a + b

    async def explode() -> None:
        raise RuntimeError("boom")

    ok, bad = runner.submit(add(2, 3), "add"), runner.submit(explode(), "explode")
    assert runner.get_status(ok)["status"] in {"pending", "running"}
    await asyncio.sleep(0.1)
    assert runner.get_status(ok)["status"] == "completed" and runner.get_status(ok)["result"] == 5
    assert runner.get_status(bad)["status"] == "failed" and "boom" in runner.get_status(bad)["error"]
    assert runner.get_status("nope") is None
