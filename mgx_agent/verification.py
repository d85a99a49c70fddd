"""Whether a test run backs an approval: the completion rule of a run.

A run is approved only when the reviewer approves and the sandbox passed: at least one test
ran, none failed or errored. When the tests could not run (sandbox off, or no isolation
available) an approval stands and the result says the tests were not run; a task may also
waive the rule with ``require_passing_tests: false``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mgx_agent.parsing import CHANGES_REQUIRED, Review

if TYPE_CHECKING:
    from mgx_agent.config import TeamConfig

NOT_RUN_STATUSES = ("skipped", "unavailable")
_FAILURE_LINE = re.compile(r"^(?:FAILED|ERROR) (?P<test>\S+)(?: - (?P<reason>.*))?$", re.MULTILINE)
_MAX_FAILURE_NOTES = 5


@dataclass(frozen=True)
class TestVerdict:
    tests: str  # passed | failing | not_run
    detail: str

    def unproven_reason(self, config: TeamConfig) -> str | None:
        """Why an approval stands without passing tests, or None when the tests passed."""
        if self.tests == "passed":
            return None
        if self.tests == "not_run":
            return f"approved without running the tests: {self.detail}"
        return f"approved over failing tests ({self.detail}): the task sets require_passing_tests=false"


def judge_test_run(report: dict[str, Any] | None) -> TestVerdict:
    if report is None:
        return TestVerdict("not_run", "no test run happened")
    status = report.get("status")
    if status == "skipped":
        return TestVerdict("not_run", "the sandbox is off (MGX_SANDBOX=off)")
    if status == "unavailable":
        reason = report.get("reason") or "no sandbox isolation is available"
        return TestVerdict("not_run", f"the sandbox is unavailable: {reason}")
    passed, failed, errors = (int(report.get(key) or 0) for key in ("passed", "failed", "errors"))
    counts = f"{passed} passed, {failed} failed, {errors} errors"
    if status == "timed_out" or report.get("timed_out"):
        return TestVerdict("failing", f"the test run timed out ({counts})")
    if status == "passed" and passed >= 1 and failed == 0 and errors == 0:
        return TestVerdict("passed", f"{passed} test(s) passed")
    if passed + failed + errors == 0:
        return TestVerdict("failing", f"no test ran (status {status})")
    return TestVerdict("failing", counts)


def failing_tests_review(approval: Review, report: dict[str, Any], verdict: TestVerdict) -> Review:
    """The review that replaces an approval over failing tests: the failures are its notes.

    Either side can be wrong when an approved change fails its tests, so both get the review:
    Alex first (who may keep correct code unchanged), then Bob.
    """
    notes = [
        f"Failing test {item['test']}" + (f": {_first_line(item.get('output', ''))}" if item.get("output") else "")
        for item in report.get("failures") or []
        if isinstance(item, dict) and item.get("test")
    ]
    if not notes:
        notes = [
            f"Failing test {match.group('test')}" + (f": {match.group('reason').strip()}" if match.group("reason") else "")
            for match in _FAILURE_LINE.finditer(str(report.get("output_tail") or ""))
        ]
    notes = notes[:_MAX_FAILURE_NOTES] or [f"The tests did not pass: {verdict.detail}"]
    notes.append(
        "The reviewer approved, but a run completes only over passing tests: fix the code if "
        "it is wrong, or the test if it checks something the task does not ask."
    )
    text = "VERDICT: CHANGES_REQUIRED\nFIX: both\n" + "\n".join(f"- {note}" for note in notes)
    text += f"\n\n(Reviewer's original verdict: APPROVED)\n{approval.text}"
    return Review(CHANGES_REQUIRED, tuple(notes), text, "both")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # pytest puts the assertion last ("E   assert 1 == 2"); that line says most.
    errors = [line for line in lines if line.startswith("E ")]
    chosen = errors[0] if errors else (lines[-1] if lines else "")
    return chosen.removeprefix("E").strip()[:200]
