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


# What the service sends is the model's text and other people's words: an escape sequence in it
# could clear the screen (CSI 2J), retitle the window (OSC 0) or plant a link (OSC 8).
HOSTILE = "fine\x1b[2J\x1b]0;owned\x07\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\\x9b31m"


def rendered(renderable: object) -> str:
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    Console(file=out, force_terminal=True, width=200, color_system=None).print(renderable)
    return out.getvalue()


def test_an_event_line_carries_no_control_character_from_the_model() -> None:
    from mgx_cli.display import describe_event

    data = {"role": "alex", "action": "WriteCode", "content": HOSTILE}
    event = RunEvent(seq=7, type="agent.message", data=data, created_at="2026-12-01T00:00:00+00:00")
    line = describe_event(event)
    assert line.startswith("#7 agent.message: alex: WriteCode: fine")
    assert not any(ord(char) < 32 or 127 <= ord(char) < 160 for char in line)


def test_a_plan_from_the_model_is_shown_as_text_not_as_escapes_or_markup() -> None:
    from mgx_cli.display import render_plan

    plan = {"summary": HOSTILE, "steps": [{"title": "[link=https://evil.example]x[/link]", "assignee": "alex"}]}
    shown = rendered(render_plan(plan))
    assert "\x1b[2J" not in shown and "\x1b]" not in shown and "\x9b" not in shown
    assert "[link=https://evil.example]x[/link]" in shown  # literal, not a link


def test_table_cells_from_the_service_are_plain_text() -> None:
    from rich.table import Table

    from mgx_cli.display import plain

    table = Table("title")
    table.add_row(plain("[bold]" + HOSTILE))
    shown = rendered(table)
    assert "[bold]fine" in shown and "\x1b]8;" not in shown and "\x1b[2J" not in shown


def test_crlf_line_ends_stay_line_ends_and_a_lone_carriage_return_does_not() -> None:
    from mgx_cli.display import terminal_text

    # A lone CR would move the cursor back over what the line said so far.
    assert terminal_text("def f():\r\n    pass\r\nok\rfake\tx") == "def f():\n    pass\nok\ufffdfake\tx"
