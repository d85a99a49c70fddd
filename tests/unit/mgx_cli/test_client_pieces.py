"""The parts of ``mgx`` that decide alone: where a downloaded artifact may be written, which
event ends a run, and the outcome line."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from mgx_cli.client import RunEvent
from mgx_cli.commands import _inside, _outcome


@pytest.mark.parametrize("name", ["../escape.py", "/etc/cron.d/x", "pkg/../../escape.py", "a\\..\\b.py", ""])
def test_download_refuses_an_artifact_name_that_would_leave_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(click.ClickException, match="refusing to write artifact"):
        _inside(tmp_path, name)


def test_download_keeps_subdirectories_of_an_artifact_name(tmp_path: Path) -> None:
    assert _inside(tmp_path, "pkg/durations.py") == tmp_path / "pkg" / "durations.py"


def test_a_rejected_plan_that_is_replanned_does_not_end_the_run() -> None:
    replanned = RunEvent(13, "run.rejected", {"feedback": "also accept weeks"}, "")
    ended = RunEvent(13, "run.rejected", {"status": "rejected", "previous": "awaiting_approval"}, "")
    assert not replanned.terminal
    assert ended.terminal
    assert RunEvent(30, "run.completed", {"status": "completed"}, "").terminal


def test_outcome_says_when_the_demo_model_wrote_it() -> None:
    assert _outcome({"outcome": "approved", "demo": True}) == "approved, written by the offline demo model"
    assert _outcome({"outcome": "revision_limit", "stop_reason": "2 rounds", "demo": False}) == "revision_limit (2 rounds)"
