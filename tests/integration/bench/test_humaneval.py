"""bench/humaneval.py against the protocol-level fake model: canonical answers score 100% on
both arms, a problem fixed only after the reviewer's notes is solved by the team alone, the
budget stops the run, --resume skips finished problems, and the service path works too.

The full 164 problems run with ``-m humaneval_full`` (CI does, after the suite)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mgx_agent.llm import LLMConfig
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply, FakeRequest

from backend.app.main import create_app
from bench import humaneval
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.integration.backend.conftest import FAST_RUNNER_SETTINGS

pytestmark = pytest.mark.slow

ALL_PROBLEMS = humaneval.load_problems()
BROKEN = "has_close_elements"  # HumanEval/0
REVIEW_NOTE = "has_close_elements must compare every pair of distinct elements"
PLAN = json.dumps({
    "summary": "Complete the function", "complexity": "S",
    "steps": [{"title": "Write it", "assignee": "alex", "detail": ""},
              {"title": "Test it", "assignee": "bob", "detail": ""}],
    "acceptance_criteria": ["the docstring's examples hold"],
})  # fmt: skip


def problem_in(request: FakeRequest) -> humaneval.Problem:
    """The problem a prompt is about: the one whose whole prompt it quotes (entry point names
    repeat across problems, and prompts define helper functions named like other problems')."""
    return max((p for p in ALL_PROBLEMS if p.prompt in request.prompt_text), key=lambda p: len(p.prompt))


def code_block(problem: humaneval.Problem, broken: bool = False) -> str:
    body = "    return False\n" if broken else problem.canonical_solution
    return f"```python\n# file: solution.py\n{problem.prompt}{body}```\n"


def team_member(fix_after_review: bool) -> callable:
    """Plays every role: Mike plans, Alex answers the canonical solution (HumanEval/0 broken
    until the review asks for the fix, when ``fix_after_review``), Bob tests an example, Charlie
    approves passing tests and asks for the fix otherwise."""

    def respond(request: FakeRequest) -> str | FakeReply:
        usage_reply = lambda text: FakeReply(content=text)  # noqa: E731
        if request.action == "AnalyzeTask":
            return usage_reply("COMPLEXITY: S\nA single function.")
        if request.action == "DraftPlan":
            return usage_reply(PLAN)
        problem = problem_in(request)
        if request.action in ("WriteCode", "SingleCall"):
            broken = fix_after_review and problem.entry_point == BROKEN and REVIEW_NOTE not in request.prompt_text
            return usage_reply(code_block(problem, broken))
        if request.action == "WriteTest":
            test = (
                f"from solution import {problem.entry_point}\n\n\ndef test_exists():\n"
                f"    assert callable({problem.entry_point})\n"
            )
            if problem.entry_point == BROKEN:
                test += f"\n\ndef test_close_pair():\n    assert {BROKEN}([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n"
            return usage_reply(f"```python\n# file: test_solution.py\n{test}```\n")
        if request.action == "ReviewCode":
            if "status=passed" in request.prompt_text:
                return usage_reply("VERDICT: APPROVED\n- the tests pass")
            return usage_reply(f"VERDICT: CHANGES_REQUIRED\nFIX: code\n- {REVIEW_NOTE}")
        raise AssertionError(f"unexpected action {request.action}")

    return respond


@pytest.fixture
def fake_model() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def llm_for(server: FakeLLMServer) -> LLMConfig:
    return LLMConfig(_env_file=None, base_url=server.base_url, api_key="k", model="gpt-4o-mini", max_retries=0)


async def run(argv: list[str], server: FakeLLMServer, http: httpx.AsyncClient | None = None) -> dict:
    args, options = humaneval.parse_options(argv)
    return await humaneval.main_async(args, options, llm=llm_for(server), http=http)


def problem_ids(count: int) -> list[str]:
    return [problem.task_id for problem in humaneval.load_problems()[:count]]


async def test_canonical_answers_score_every_problem_on_both_arms(fake_model: FakeLLMServer, tmp_path: Path) -> None:
    fake_model.set_responder(team_member(fix_after_review=False))

    result = await run(["--direct", "--limit", "3", "--concurrency", "3", "--output", str(tmp_path / "r")], fake_model)

    for arm in ("team", "single"):
        assert (result["summary"][arm]["passed"], result["summary"][arm]["problems"]) == (3, 3)
    assert result["summary"]["team"]["tokens_per_problem"] > result["summary"]["single"]["tokens_per_problem"] > 0
    assert {path.suffix for path in tmp_path.iterdir()} == {".jsonl", ".json", ".csv"}


async def test_the_hidden_test_decides_not_the_teams_own_tests(fake_model: FakeLLMServer, tmp_path: Path) -> None:
    """A wrong solution fails the hidden test even when the team's own tests pass."""
    problem = humaneval.load_problems()[2]
    wrong = f"{problem.prompt}    return -1\n"

    passed, detail = await humaneval.score(humaneval.Sandbox(humaneval.SandboxConfig()), problem, wrong)

    assert not passed and "hidden test failed" in detail


async def test_a_fix_after_review_counts_for_the_team_only(fake_model: FakeLLMServer, tmp_path: Path) -> None:
    fake_model.set_responder(team_member(fix_after_review=True))

    result = await run(["--direct", "--problems", "0", "--output", str(tmp_path / "r")], fake_model)

    team, single = result["summary"]["team"], result["summary"]["single"]
    assert team["solved_by_this_arm_only"] == ["HumanEval/0"] and team["passed"] == 1
    assert single["passed"] == 0 and single["solved_by_this_arm_only"] == []
    assert team["mean_rounds"] > 1
    fixes = [r for r in fake_model.requests if r.action == "WriteCode" and REVIEW_NOTE in r.prompt_text]
    assert fixes, "the fix came without the reviewer's note"


async def test_budget_stops_the_run_and_resume_skips_finished_problems(fake_model: FakeLLMServer, tmp_path: Path) -> None:
    fake_model.set_responder(team_member(fix_after_review=False))
    output = tmp_path / "r"

    first = await run(
        ["--direct", "--arms", "single", "--limit", "4", "--concurrency", "1", "--budget-usd", "0.0000001",
         "--output", str(output)], fake_model,
    )  # fmt: skip
    assert first["budget_stopped"] and first["summary"]["single"]["problems"] == 1
    calls = len(fake_model.requests)

    second = await run(["--direct", "--arms", "single", "--limit", "3", "--resume", str(output.with_suffix(".jsonl"))], fake_model)

    assert not second["budget_stopped"] and second["summary"]["single"]["problems"] == 3
    assert len(fake_model.requests) - calls == 2  # HumanEval/0 was not asked again
    lines = output.with_suffix(".jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["task_id"] for line in lines) == sorted(problem_ids(3))


async def test_the_team_arm_runs_through_the_service(
    fake_model: FakeLLMServer, tmp_path: Path, sqlite_template: Path
) -> None:
    fake_model.set_responder(team_member(fix_after_review=False))
    settings = make_settings(
        sqlite_copy(sqlite_template, tmp_path),
        **{**FAST_RUNNER_SETTINGS, "mgx_sandbox": "auto", "runner_poll_seconds": 0.1},
    )
    app = create_app(settings, llm_for(fake_model))
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    try:
        result = await run(
            ["--api-url", "http://testserver", "--arms", "team", "--limit", "1", "--output", str(tmp_path / "r")],
            fake_model, http,
        )  # fmt: skip
    finally:
        await lifespan.__aexit__(None, None, None)

    assert result["team"] == "service http://testserver"
    assert (result["summary"]["team"]["passed"], result["summary"]["team"]["problems"]) == (1, 1)
    assert {r.run_label for r in fake_model.requests if r.action == "WriteCode"}.isdisjoint({None, ""})


@pytest.mark.humaneval_full
@pytest.mark.timeout(1800)
async def test_all_164_canonical_solutions_score_on_both_arms(fake_model: FakeLLMServer, tmp_path: Path) -> None:
    fake_model.set_responder(team_member(fix_after_review=False))

    output = tmp_path / "r"

    result = await run(["--direct", "--concurrency", "6", "--output", str(output)], fake_model)

    failures = [r for r in map(json.loads, output.with_suffix(".jsonl").read_text().splitlines()) if not r["passed"]]
    assert failures == [], [(r['task_id'], r['arm'], r['detail'][:200]) for r in failures]
    for arm in ("team", "single"):
        assert (result["summary"][arm]["passed"], result["summary"][arm]["problems"]) == (164, 164), arm
