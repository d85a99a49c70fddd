"""The API against a schema-driven fuzzer: schemathesis reads ``/openapi.json`` of a real server
and runs every check with positive and negative data, following the links the schema declares
(task -> runs -> artifacts). Configuration and what it leaves out: ``tests/fuzz/schemathesis.toml``.

This is the smoke budget (the stateful phase, one example per step: a few seconds); the README
gives the command for the long run over every phase."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.app.main import create_app
from mgx_agent.llm import LLMConfig
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.e2e.conftest import REPO_ROOT
from tests.e2e.uvicorn_in_thread import serving

CONFIG = REPO_ROOT / "tests" / "fuzz" / "schemathesis.toml"


@pytest.fixture
def fuzzed_api(sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    # The demo model plans at once, so the links reach runs awaiting approval and their artifacts.
    settings = make_settings(
        sqlite_copy(sqlite_template, tmp_path), mgx_sandbox="off", runner_workers=1, rate_limit_per_minute=0
    )
    with serving(create_app(settings, LLMConfig(_env_file=None))) as base_url:
        yield base_url


def test_the_schema_fuzzer_finds_no_failure(fuzzed_api: str, tmp_path: Path) -> None:
    executable = shutil.which("st", path=str(Path(sys.executable).parent))
    assert executable, "schemathesis is part of requirements-dev.txt"
    result = subprocess.run(
        [
            executable, "--no-color", "--config-file", str(CONFIG), "run", f"{fuzzed_api}/openapi.json",
            "--phases", "stateful", "--max-examples", "1", "--seed", "13", "--no-shrink",
            "--generation-database", "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    covered = re.search(r"API Links:\s+(\d+) covered", output)
    assert covered and int(covered.group(1)) > 0, output[-3000:]
