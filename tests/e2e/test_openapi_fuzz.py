"""The API against a schema-driven fuzzer: schemathesis reads ``/openapi.json`` of a real server
and runs every check with positive and negative data, following the links the schema declares
(task -> runs -> artifacts). Configuration and what it leaves out: ``tests/fuzz/schemathesis.toml``.

This is the smoke budget (the stateful phase, two examples per step: a few seconds); the README
gives the command for the long run over every phase."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO_ROOT, ApiServer, service_env

CONFIG = REPO_ROOT / "tests" / "fuzz" / "schemathesis.toml"


@pytest.fixture
def fuzzed_api(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}"
    # The demo model plans at once, so the links reach runs awaiting approval and their artifacts.
    env = service_env(database, None, RUNNER_WORKERS="1", RATE_LIMIT_PER_MINUTE="0", LOG_LEVEL="WARNING")
    server = ApiServer(env, tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_schema_fuzzer_finds_no_failure(fuzzed_api: ApiServer, tmp_path: Path) -> None:
    executable = shutil.which("st", path=str(Path(sys.executable).parent))
    assert executable, "schemathesis is part of requirements-dev.txt"
    result = subprocess.run(
        [
            executable, "--no-color", "--config-file", str(CONFIG), "run", f"{fuzzed_api.base_url}/openapi.json",
            "--phases", "stateful", "--max-examples", "2", "--seed", "13", "--no-shrink",
            "--generation-database", "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:] + "\n--- server log ---\n" + fuzzed_api.log_tail()
    covered = re.search(r"API Links:\s+(\d+) covered", output)
    assert covered and int(covered.group(1)) > 0, output[-3000:]
