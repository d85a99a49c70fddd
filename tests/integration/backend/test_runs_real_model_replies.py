"""The service runs the same engine as the library: replies shaped like real models' over
HTTP, through the runner, to a run's status, result and error."""

from __future__ import annotations

import json

from sqlalchemy.engine import URL

from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply
from tests.integration.backend.conftest import start_run, wait_for_status
from tests.model_replies import (
    APPROVAL_DESPITE_FAILURE,
    FIZZBUZZ_CODE,
    R1_CODE_WITH_DRAFT,
    WRONG_TESTS,
)

PROSE_ONLY = "Sure! You can implement FizzBuzz with a loop and the modulo operator."


async def test_failed_run_retried_as_a_new_run_reaches_the_model_again(run_app, fake_llm: FakeLLMServer) -> None:
    client = await run_app(mgx_enable_caching=True, mgx_cache_backend="memory")
    fake_llm.enqueue(PROSE_ONLY, role="alex", action="WriteCode")
    fake_llm.enqueue(PROSE_ONLY, role="alex", action="WriteCode")
    task, first = await start_run(client, {"auto_approve_plan": True})
    failed = await wait_for_status(client, first["id"], {"completed", "failed"})
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "malformed_output"
    assert "after one corrective re-ask" in failed["error"]["message"]

    response = await client.post("/runs/", json={"task_id": task["id"]})
    assert response.status_code == 201, response.text
    second = await wait_for_status(client, response.json()["id"], {"completed", "failed"})

    assert second["status"] == "completed", second["error"]
    retried = [r.action for r in fake_llm.requests if r.run_label == second["id"]]
    assert retried == ["WriteCode", "WriteTest", "ReviewCode"]  # planning came from the cache


async def test_think_block_and_approval_over_a_failing_test_end_completed_after_bob_fixes_it(
    run_app, fake_llm: FakeLLMServer
) -> None:
    client = await run_app(mgx_sandbox="unsafe-subprocess")
    fake_llm.enqueue(R1_CODE_WITH_DRAFT, role="alex", action="WriteCode")
    fake_llm.enqueue(WRONG_TESTS, role="bob", action="WriteTest")
    fake_llm.enqueue(APPROVAL_DESPITE_FAILURE, role="charlie", action="ReviewCode")
    _, run = await start_run(client, {"auto_approve_plan": True})

    done = await wait_for_status(client, run["id"], {"completed", "failed"}, timeout=30)

    assert done["status"] == "completed", done["error"]
    assert done["result"]["rounds"] == 2
    assert done["result"]["verification"]["tests"] == "passed"
    logs = (await client.get(f"/runs/{run['id']}/logs", params={"limit": 200})).json()
    lines = [item["data"].get("message", "") for item in logs["items"] if item["type"] == "run.log"]
    assert any("treated as CHANGES_REQUIRED" in line for line in lines)
    messages = [item["data"] for item in logs["items"] if item["type"] == "agent.message"]
    first_code = next(m for m in messages if m["action"] == "WriteCode")
    assert "<think>" not in first_code["content"] and "print(i)" in first_code["reasoning"]


async def test_task_config_takes_require_passing_tests(run_app) -> None:
    # The behaviour is the engine's (tests/unit/mgx_agent/test_team_review_loop.py); here the
    # API accepts the key, stores it and refuses a non-boolean.
    client = await run_app()
    created = await client.post("/tasks/", json={"title": "t", "config": {"require_passing_tests": False}})
    assert created.status_code == 201, created.text
    assert created.json()["config"]["require_passing_tests"] is False
    refused = await client.post("/tasks/", json={"title": "t", "config": {"require_passing_tests": "no"}})
    assert refused.status_code == 422


async def test_nul_characters_in_the_replies_do_not_fail_the_run(
    run_app, fake_llm: FakeLLMServer, database_url: URL
) -> None:
    """A NUL sent raw in a reply (the client replaces it) and one written as a JSON escape inside
    the plan (it comes out of the plan's own JSON): PostgreSQL stores neither in text or jsonb,
    and such replies failed the run there with internal_error."""
    client = await run_app()
    plan = {
        "summary": "FizzBuzz \u0000 with a NUL",
        "complexity": "XS",
        "steps": [{"title": "Implement fizzbuzz.py", "assignee": "alex", "detail": "a\u0000b"}],
        "acceptance_criteria": ["fizzbuzz.py works"],
    }
    reply = "```json\n" + json.dumps(plan) + "\n```"
    assert "\\u0000" in reply and "\x00" not in reply  # the NULs go as JSON escapes
    fake_llm.enqueue(reply, action="DraftPlan")
    code = f"```python\n# file: fizzbuzz.py\n# a NUL: \x00\n{FIZZBUZZ_CODE}```"
    fake_llm.enqueue(FakeReply(content=code), role="alex", action="WriteCode")
    _, run = await start_run(client, {"auto_approve_plan": True})

    done = await wait_for_status(client, run["id"], {"completed", "failed"}, timeout=30)

    assert done["status"] == "completed", done["error"]
    stored_nul = "\x00" if database_url.get_backend_name() == "sqlite" else "\ufffd"
    assert done["plan"]["summary"] == f"FizzBuzz {stored_nul} with a NUL"
    code_file = await client.get(f"/runs/{run['id']}/artifacts/fizzbuzz.py")
    assert "# a NUL: \ufffd\n" in code_file.text  # the client's replacement, on both databases
    logs = (await client.get(f"/runs/{run['id']}/logs", params={"limit": 200})).json()["items"]
    assert any("NUL characters" in item["data"].get("message", "") for item in logs if item["type"] == "run.log")
