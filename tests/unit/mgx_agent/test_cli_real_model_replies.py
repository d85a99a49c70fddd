"""``python -m mgx_agent`` runs the same engine as the service: replies shaped like real models'
from the fake LLM server, in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgx_agent.testing.fake_llm import FakeLLMServer
from tests.model_replies import (
    APPROVAL_DESPITE_FAILURE,
    GPT4O_CRLF_CODE,
    R1_ANALYZE,
    TASK,
    WRONG_TESTS,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def run_cli(server: FakeLLMServer, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MGX_", "REDIS_URL"))}
    env.update(PYTHONPATH=str(REPO_ROOT), MGX_LLM_BASE_URL=server.base_url, MGX_LLM_MAX_RETRIES="0")
    return subprocess.run(
        [sys.executable, "-m", "mgx_agent", TASK, "--yes", "--json", "--output", "out", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_cli_completes_over_think_crlf_and_an_approval_over_a_failing_test(
    fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    fake_llm.enqueue(R1_ANALYZE, role="mike", action="AnalyzeTask")
    fake_llm.enqueue(GPT4O_CRLF_CODE, role="alex", action="WriteCode")
    fake_llm.enqueue(WRONG_TESTS, role="bob", action="WriteTest")
    fake_llm.enqueue(APPROVAL_DESPITE_FAILURE, role="charlie", action="ReviewCode")

    completed = run_cli(fake_llm, ["--sandbox", "unsafe-subprocess"], tmp_path)

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert (result["outcome"], result["rounds"]) == ("approved", 2)
    assert result["verification"]["tests"] == "passed"
    assert "treated as CHANGES_REQUIRED" in completed.stderr
    assert "\r" not in (tmp_path / "out" / "fizzbuzz.py").read_text()
    assert len(fake_llm.requests_for(action="WriteCode")) == 2  # first ask, then the revision
