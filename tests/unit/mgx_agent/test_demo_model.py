"""The offline demo model: deterministic, runnable end to end, honest about being a demo."""

from __future__ import annotations

import pytest

from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.llm.base import CallContext
from mgx_agent.llm.demo import DemoLLMClient, demo_reply
from mgx_agent.llm.demo_catalogue import CATALOGUE, generic_solution
from mgx_agent.llm.session import LLMSession
from mgx_agent.parsing import (
    SourceFile,
    parse_complexity,
    parse_plan,
    parse_review,
    parse_source_files,
)
from mgx_agent.prompts import analyze_prompt, plan_prompt, review_prompt
from mgx_agent.sandbox import Sandbox
from mgx_agent.team import MGXStyleTeam


def ask(action: str, prompt: str, role: str = "mike") -> str:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": prompt}]
    return demo_reply(CallContext(role, action), messages)


@pytest.mark.slow
async def test_demo_run_completes_end_to_end_with_passing_sandbox_tests() -> None:
    session = LLMSession(DemoLLMClient(), default_model="mgx-demo")
    config = TeamConfig(sandbox=SandboxConfig(mode="unsafe-subprocess", timeout_seconds=20))
    team = MGXStyleTeam(config, session)

    await team.analyze_and_plan("Parse ISO-8601 durations like P1DT2H into timedelta")
    team.approve_plan()
    result = await team.execute()

    assert result.outcome == "approved" and result.demo
    assert result.sandbox_report is not None
    assert result.sandbox_report["status"] == "passed" and result.sandbox_report["passed"] == 3
    assert [f.path for f in result.files] == ["durations.py"]
    assert result.review is not None and any("demo" in note for note in result.review.notes)
    assert result.usage["total"]["llm_calls"] == 5 and result.usage["total"]["cost_usd"] == 0


@pytest.mark.slow
async def test_every_catalogue_solution_passes_all_its_tests() -> None:
    solutions = [solution for _, solution in CATALOGUE] + [generic_solution("Build a kanban board")]
    files = [SourceFile(f"{s.module}.py", s.code) for s in solutions]
    tests = [SourceFile(f"test_{s.module}.py", s.test_module(len(s.tests))) for s in solutions]

    report = await Sandbox(SandboxConfig(mode="unsafe-subprocess", timeout_seconds=30)).run(files, tests)

    assert report.status == "passed", report.output_tail
    assert report.passed == sum(len(s.tests) for s in solutions)


def test_replies_parse_and_are_deterministic() -> None:
    task = "Write a slugify function"
    assert parse_complexity(ask("AnalyzeTask", analyze_prompt(task))) == "S"
    plan_text = ask("DraftPlan", plan_prompt(task, "S", None, None))
    assert plan_text == ask("DraftPlan", plan_prompt(task, "S", None, None))
    plan = parse_plan(plan_text)
    assert {step.assignee for step in plan.steps} == {"alex", "bob", "charlie"}
    assert "demo" in plan.summary


def test_unknown_task_gets_a_labelled_generic_solution() -> None:
    task = "Build a kanban board with swimlanes"
    code = ask("WriteCode", f"## Task\n{task}\n", role="alex")
    [source] = parse_source_files(code)
    assert source.path == "solution.py"
    assert "def kanban_board_swimlanes(" in source.content
    assert "demo" in source.content.lower()


def test_reviewer_asks_for_concrete_changes_when_tests_fail() -> None:
    plan = parse_plan(ask("DraftPlan", plan_prompt("fizzbuzz", "XS", None, None)))
    report = {
        "status": "failed", "passed": 1, "failed": 1, "errors": 0, "skipped": 0, "timed_out": False,
        "output_tail": (
            "FAILED test_fizzbuzz.py::test_length - assert 99 == 100\n1 failed, 1 passed in 0.02s"
        ),
    }  # fmt: skip
    prompt = review_prompt("fizzbuzz", plan, [], [], report)

    review = parse_review(ask("ReviewCode", prompt, role="charlie"))

    assert review.verdict == "CHANGES_REQUIRED"
    assert review.notes == ("Fix test_fizzbuzz.py::test_length: assert 99 == 100",)
    passed = parse_review(
        ask("ReviewCode", prompt.replace("status=failed", "status=passed"), role="charlie")
    )
    assert passed.approved
