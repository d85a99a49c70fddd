"""The strict parsers behind the actions: what they accept and how they refuse."""

from __future__ import annotations

import re

import pytest

from mgx_agent.parsing import (
    OutputFormatError,
    parse_code_files,
    parse_complexity,
    parse_plan,
    parse_review,
    parse_source_files,
    parse_test_files,
    sanitize_path,
)

PLAN_JSON = (
    '{"summary": "Word counter", "complexity": "s", "steps": [{"title": "Code it", '
    '"assignee": "Alex", "detail": "stdlib"}], "acceptance_criteria": ["counts words"]}'
)


def test_plan_in_json_fence_with_prose_around_it() -> None:
    plan = parse_plan(f"Here is the plan:\n```json\n{PLAN_JSON}\n```\nThanks!")
    assert plan.complexity == "S"
    assert plan.steps[0].assignee == "alex"


def test_bare_plan_object_followed_by_text() -> None:
    assert parse_plan(f"{PLAN_JSON}\n\nLet me know.").summary == "Word counter"


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("no json here", "contains no JSON object"),
        ('{"summary": "x", ', "not valid JSON"),
        (
            '{"summary": "x", "complexity": "XXL", "steps": [], "acceptance_criteria": []}',
            "complexity",
        ),
        (PLAN_JSON.replace('"Alex"', '"dave"'), "steps.0.assignee"),
        (PLAN_JSON.replace('["counts words"]', "[]"), "acceptance_criteria"),
        ('{"summary": ' + "[" * 100_000, "nested deeper than a plan can be"),
    ],
)
def test_invalid_plans_are_refused_with_the_reason(reply: str, problem: str) -> None:
    with pytest.raises(OutputFormatError, match=problem.replace(".", r"\.")):
        parse_plan(reply)


def test_complexity_line_variants() -> None:
    assert parse_complexity("COMPLEXITY: XL\nbecause") == "XL"
    assert parse_complexity("**Complexity:** m") == "M"
    with pytest.raises(OutputFormatError, match="no line"):
        parse_complexity("It is fairly simple.")
    with pytest.raises(OutputFormatError, match="several"):
        parse_complexity("COMPLEXITY: S\nCOMPLEXITY: L")


@pytest.mark.parametrize(
    "reply",
    [
        "```python\n# file: pkg/app.py\nX = 1\n```",
        "```python title=pkg/app.py\nX = 1\n```",
        "```python:pkg/app.py\nX = 1\n```",
        "### pkg/app.py\n```python\nX = 1\n```",
        "**`pkg/app.py`**\n```python\nX = 1\n```",
    ],
)
def test_code_block_path_styles(reply: str) -> None:
    files = parse_source_files(reply)
    assert [(f.path, f.content) for f in files] == [("pkg/app.py", "X = 1\n")]


def test_several_files_keep_their_order_and_content() -> None:
    reply = "```python\n# file: a.py\nA = 1\n```\ntext\n````python\n# file: b.py\nB = '```'\n````"
    files = parse_source_files(reply)
    assert [(f.path, f.content) for f in files] == [("a.py", "A = 1\n"), ("b.py", "B = '```'\n")]


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("def f(): pass", "no fenced code block"),
        ("```python\nX = 1\n```", "no file path"),
        ("```python\n# file: a.py\nX = 1\n", "not closed"),
        ("```python\n# file: a.py\n\n```", "is empty"),
        ("```python\n# file: a.py\nX\n```\n```python\n# file: ./a.py\nY\n```", "more than one"),
        ("```python\n# file: ../etc/passwd\nX\n```", "must not contain '..'"),
    ],
)
def test_bad_code_replies_are_refused(reply: str, problem: str) -> None:
    with pytest.raises(OutputFormatError, match=problem):
        parse_source_files(reply)


def test_paths_are_made_relative_and_safe() -> None:
    assert sanitize_path("/abs/app.py") == "abs/app.py"
    assert sanitize_path("C:\\proj\\app.py") == "proj/app.py"
    assert sanitize_path("./src//app.py") == "src/app.py"
    for bad in ("a/../../b.py", "..", "", "a b.py", "a/$(rm).py"):
        with pytest.raises(OutputFormatError):
            sanitize_path(bad)


def test_test_files_must_be_collectable_and_not_replace_code() -> None:
    ok = "```python\n# file: test_app.py\ndef test_x():\n    assert True\n```"
    assert parse_test_files(ok, {"app.py"})[0].path == "test_app.py"
    with pytest.raises(OutputFormatError, match="test_<something>.py"):
        parse_test_files("```python\n# file: checks.py\ndef test_x(): pass\n```", set())
    with pytest.raises(OutputFormatError, match="defines no test_ functions"):
        parse_test_files("```python\n# file: test_app.py\nX = 1\n```", set())
    with pytest.raises(OutputFormatError, match="overwrite"):
        parse_test_files("```python\n# file: test_app.py\ndef test_x(): pass\n```", {"test_app.py"})


def test_review_verdicts_and_notes() -> None:
    approved = parse_review("VERDICT: APPROVED\n- Clean code.")
    assert approved.approved and approved.notes == ("Clean code.",)
    changes = parse_review(
        "**Verdict**: changes required\n1. Handle empty input\n2) Add type hints"
    )
    assert changes.verdict == "CHANGES_REQUIRED"
    assert changes.notes == ("Handle empty input", "Add type hints")
    with pytest.raises(OutputFormatError, match="no line 'VERDICT"):
        parse_review("LGTM")
    with pytest.raises(OutputFormatError, match="both verdicts"):
        parse_review("VERDICT: APPROVED\nVERDICT: CHANGES_REQUIRED\n- x")
    with pytest.raises(OutputFormatError, match="concrete note"):
        parse_review("VERDICT: CHANGES_REQUIRED")


@pytest.mark.parametrize(
    "name",
    ["conftest.py", "pkg/conftest.py", "sitecustomize.py", "usercustomize.py", "evil.pth",
     "pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini", "plan.json", "review.md",
     "sandbox-report.json", "test_extra.py", "extra_test.py", "pytest.py", "_pytest/main.py",
     "pluggy.py"],
)  # fmt: skip
def test_code_files_may_not_steer_the_test_runner_or_replace_artifacts(name: str) -> None:
    reply = f"```python\n# file: {name}\nX = 1\n```\n"
    with pytest.raises(OutputFormatError, match=re.escape(repr(name))):
        parse_code_files(reply)


def test_test_files_are_test_modules_or_conftest_only() -> None:
    conftest = "```python\n# file: conftest.py\nimport pytest\n```\n"
    assert parse_test_files(conftest, {"app.py"})[0].path == "conftest.py"
    for name in ("helpers.py", "plan.json", "pytest.ini", "sitecustomize.py"):
        with pytest.raises(OutputFormatError, match="test file"):
            parse_test_files(f"```python\n# file: {name}\ndef test_x():\n    pass\n```\n", set())
