"""The user prompts of each action, with their output-format instructions.

Every prompt starts with a ``## Task`` section and uses ``## <Section>`` headings, which keeps
prompts readable and lets the offline demo model find what it needs. Prompts contain nothing
run-specific (ids, timestamps, temp paths): identical tasks must produce identical prompts so
the response cache can serve them.
"""

from __future__ import annotations

import re

from mgx_agent.parsing import Plan, Review, SourceFile

COMPLEXITY_GUIDE = (
    "XS: a single small function; S: one function with edge cases; M: a module with a few "
    "functions or a class; L: several modules or a small library; XL: a system needing a design."
)

ANALYZE_FORMAT = (
    "Reply with one line 'COMPLEXITY: <XS|S|M|L|XL>' followed by two or three sentences of "
    "rationale."
)

PLAN_FORMAT = (
    "Reply with one JSON object only (optionally inside a ```json block) with exactly these "
    'keys: {"summary": str, "complexity": "XS"|"S"|"M"|"L"|"XL", "steps": [{"title": str, '
    '"assignee": "alex"|"bob"|"charlie", "detail": str}], "acceptance_criteria": [str]}. '
    "Give at least one step and one acceptance criterion."
)

CODE_FORMAT = (
    "Return each file in its own fenced block: ```python, then a first line '# file: "
    "<relative path>.py', then the code. Use plain module files at the project root (for "
    "example 'solution.py'), standard library only. No explanations outside the blocks."
)

TEST_FORMAT = (
    "Return each test file in its own fenced block: ```python, then a first line '# file: "
    "test_<name>.py', then the tests. Import the code by module name (the files sit at the "
    "project root). Use plain pytest functions, standard library only."
)

REVIEW_FORMAT = (
    "Reply with one line 'VERDICT: APPROVED' or 'VERDICT: CHANGES_REQUIRED'. With "
    "CHANGES_REQUIRED add one line 'FIX: code', 'FIX: tests' or 'FIX: both' saying what must "
    "change (tests, when a test checks something the task does not ask for), then your notes "
    "as '- ' bullet lines. CHANGES_REQUIRED needs at least one concrete, actionable note."
)

SHORTER_ANSWER = (
    "## Length\nYour previous answer was cut off at the output token limit. Answer again, "
    "complete but shorter: no explanations, no reasoning written out, only what the format "
    "asks for."
)

# Timings and temp paths in test output differ between identical runs; the prompt leaves
# them out so a repeated task hits the response cache. The host's pytest header and plugin
# warnings say nothing about the generated code and would only mislead the model.
_VOLATILE_TIMING = re.compile(r"\s+in\s+\d+(?:\.\d+)?s\b")
_HOST_HEADER_LINE = re.compile(
    r"^(?:platform |rootdir:|configfile:|cachedir:|plugins:).*$\n?", re.MULTILINE
)
_WARNINGS_SECTION = re.compile(
    r"^=+ warnings summary =+$.*?(?=^=+ |\Z)", re.MULTILINE | re.DOTALL
)
_WARNINGS_DOCS_LINE = re.compile(
    r"^-- Docs: https://docs\.pytest\.org/\S*warnings\S*\n?", re.MULTILINE
)
_ABSOLUTE_DIRS = re.compile(r"(?<![\w.])/(?:[\w.+@-]+/)+(?=[\w.+-]+)")
_SUMMARY_WARNINGS = re.compile(r",? \d+ warnings?\b")


def task_section(task: str) -> str:
    return f"## Task\n{task.strip()}\n"


def files_section(title: str, files: list[SourceFile]) -> str:
    if not files:
        return f"## {title}\n(none)\n"
    blocks = [
        f"```python\n# file: {source.path}\n{source.content.rstrip()}\n```" for source in files
    ]
    return f"## {title}\n" + "\n\n".join(blocks) + "\n"


def scrub_test_output(text: str) -> str:
    """Test output as the model should see it: no host paths, host plugins or timings."""
    text = _WARNINGS_SECTION.sub("", text)
    text = _WARNINGS_DOCS_LINE.sub("", text)
    text = _HOST_HEADER_LINE.sub("", text)
    text = _ABSOLUTE_DIRS.sub("", text)
    text = _SUMMARY_WARNINGS.sub("", text)
    return _VOLATILE_TIMING.sub("", text).strip()


def sandbox_section(report: dict | None) -> str:
    if report is None:
        return "## Test run\n(not run)\n"
    if report.get("status") == "skipped":
        return "## Test run\nstatus=skipped (the sandbox is switched off; tests were not run)\n"
    if report.get("status") == "unavailable":
        reason = report.get("reason") or "no isolation is available"
        return f"## Test run\nstatus=unavailable (tests were not run: {reason})\n"
    summary = (
        f"status={report['status']} passed={report['passed']} failed={report['failed']} "
        f"errors={report['errors']} skipped={report['skipped']} timed_out={report['timed_out']}"
    )
    tail = scrub_test_output(report.get("output_tail", ""))
    return f"## Test run\n{summary}\n\n## Test output\n```text\n{tail[-3000:]}\n```\n"


def analyze_prompt(task: str) -> str:
    instructions = f"Assess the complexity of this task. {COMPLEXITY_GUIDE}\n{ANALYZE_FORMAT}"
    return f"{task_section(task)}\n## Instructions\n{instructions}\n"


def plan_prompt(task: str, complexity: str, previous: Plan | None, feedback: str | None) -> str:
    parts = [task_section(task), f"## Assessed complexity\n{complexity}\n"]
    if previous is not None:
        parts.append(f"## Previous plan\n{previous.model_dump_json()}\n")
    if feedback:
        parts.append(f"## Reviewer feedback on the previous plan\n{feedback.strip()}\n")
        parts.append(
            "## Instructions\nRevise the plan so it addresses the feedback above. "
            f"Keep the complexity unless the feedback changes the scope.\n{PLAN_FORMAT}\n"
        )
    else:
        parts.append(
            "## Instructions\nDraft the plan: steps for Alex (code), Bob (tests) and Charlie "
            f"(review), and testable acceptance criteria.\n{PLAN_FORMAT}\n"
        )
    return "\n".join(parts)


def plan_section(plan: Plan) -> str:
    return f"## Plan\n{plan.to_markdown()}\n"


def code_prompt(
    task: str,
    plan: Plan,
    previous_files: list[SourceFile] | None = None,
    review: Review | None = None,
    report: dict | None = None,
) -> str:
    parts = [task_section(task), plan_section(plan)]
    if previous_files is None:
        parts.append(f"## Instructions\nImplement the task following the plan.\n{CODE_FORMAT}\n")
    else:
        parts.append(files_section("Current code", previous_files))
        parts.append(sandbox_section(report))
        if review is not None:
            notes = "\n".join(f"- {note}" for note in review.notes) or "- (no notes)"
            parts.append(f"## Review notes\n{notes}\n")
        parts.append(
            "## Instructions\nRevise the code so it is correct against the task and its "
            "acceptance criteria, addressing the review notes. Failing tests show where to look, "
            "but a test can be wrong: never bend correct code to fit a test that contradicts the "
            "task. If the code is already correct, return it unchanged. Return the complete "
            f"files, not a diff.\n{CODE_FORMAT}\n"
        )
    return "\n".join(parts)


def tests_prompt(
    task: str,
    plan: Plan,
    files: list[SourceFile],
    test_count: int,
    previous_tests: list[SourceFile] | None = None,
    review: Review | None = None,
    report: dict | None = None,
) -> str:
    parts = [task_section(task), plan_section(plan), files_section("Code under test", files)]
    if previous_tests is not None:
        parts.append(files_section("Current tests", previous_tests))
        parts.append(sandbox_section(report))
    if review is not None and review.notes:
        notes = "\n".join(f"- {note}" for note in review.notes)
        parts.append(f"## Review notes\n{notes}\n")
    if previous_tests is not None and review is not None:
        instructions = (
            f"Revise the tests so each one checks what the task asks, addressing the review "
            f"notes; write {test_count} pytest tests. A test that contradicts the task is "
            "wrong and must change; do not fit the tests to code that is wrong either. If the "
            "tests are already right, return them unchanged."
        )
    else:
        instructions = (
            f"Write {test_count} pytest tests for the code above, covering the acceptance "
            "criteria and edge cases."
        )
    parts.append(f"## Instructions\n{instructions}\n## Test count\n{test_count}\n{TEST_FORMAT}\n")
    return "\n".join(parts)


def review_prompt(
    task: str, plan: Plan, files: list[SourceFile], tests: list[SourceFile], report: dict | None
) -> str:
    parts = [
        task_section(task),
        plan_section(plan),
        files_section("Code", files),
        files_section("Tests", tests),
        sandbox_section(report),
        "## Instructions\nReview the code against the task and acceptance criteria.\n"
        f"{REVIEW_FORMAT}\n",
    ]
    return "\n".join(parts)


def correction_prompt(problem: str, format_instructions: str) -> str:
    return (
        f"Your previous reply could not be used: {problem}. Reply again with the complete "
        f"answer in the required format. {format_instructions}"
    )
