"""``python -m mgx_agent`` in a real subprocess on the offline demo model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def run_cli(
    args: list[str], tmp_path: Path, stdin: str = "", **variables: str
) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MGX_LLM_", "MGX_SANDBOX"))
    }
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["XDG_DATA_HOME"] = str(tmp_path / "data-home")
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "mgx_agent", *args],
        cwd=tmp_path,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_yes_on_demo_writes_artifacts_and_exits_zero(tmp_path: Path) -> None:
    completed = run_cli(["fizzbuzz up to n", "--yes"], tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert "offline demo model" in completed.stdout
    assert "Outcome: approved (written by the offline demo model)" in completed.stdout
    assert "[tests] passed" in completed.stdout
    assert "(round 1)" in completed.stdout and "(round 0)" not in completed.stdout
    # Not into the working directory (often a repository): the user's data directory.
    assert [path.name for path in tmp_path.iterdir()] == ["data-home"]
    (output,) = (tmp_path / "data-home" / "mgx-agent" / "runs").iterdir()
    assert output.name.startswith("fizzbuzz-up-to-n-")
    assert f"Artifacts: 6 files in {output}" in completed.stdout
    names = {p.name for p in output.iterdir()}
    assert names == {
        "plan.json",
        "fizzbuzz.py",
        "test_fizzbuzz.py",
        "review.md",
        "sandbox-report.json",
        "result.json",
    }
    assert json.loads((output / "sandbox-report.json").read_text())["status"] == "passed"
    assert json.loads((output / "result.json").read_text())["demo"] is True


def test_cli_rejection_with_feedback_replans_then_json_result(tmp_path: Path) -> None:
    completed = run_cli(
        ["reverse a string", "--sandbox", "off", "--json", "--output", "out"],
        tmp_path,
        stdin="n\nkeep it to one function\ny\n",
    )

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)  # stdout carries only the JSON result
    assert result["outcome"] == "approved"
    assert "keep it to one function" in result["plan"]["summary"]
    assert (tmp_path / "out" / "reverse.py").exists()


def test_cli_rejection_without_feedback_exits_three(tmp_path: Path) -> None:
    completed = run_cli(["reverse a string", "--sandbox", "off"], tmp_path, stdin="n\n\n")

    assert completed.returncode == 3
    assert "Plan rejected" in completed.stdout
    assert not (tmp_path / "data-home").exists()


def test_cli_invalid_option_value_is_reported(tmp_path: Path) -> None:
    completed = run_cli(["reverse a string", "--yes", "--max-revision-rounds", "9"], tmp_path)

    assert completed.returncode == 2
    assert "max_revision_rounds" in completed.stderr


def test_cli_invalid_json_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    completed = run_cli(["reverse a string", "--yes"], tmp_path, MGX_LLM_ROLE_MODELS="{alex: gpt}")

    assert completed.returncode == 2
    assert completed.stderr.startswith("mgx_agent: invalid configuration: MGX_LLM_ROLE_MODELS: is not valid JSON")
    assert len(completed.stderr.strip().splitlines()) == 1
