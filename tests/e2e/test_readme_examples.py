"""README.md's shell examples, run as written, in order, against a live service.

Every ```bash block in the README carries a marker saying whether this test runs it:
``<!-- readme-example -->`` (run, in order), ``<!-- readme-example: last ... -->`` (run after all
the others) or ``<!-- readme-example: skip (why) -->`` (needs Docker, Kubernetes, a real key, an
interactive terminal, ...). The runnable ones become one bash script: ``localhost:8000`` is this
test's server, and ``curl`` fails on any HTTP error (``--fail-with-body``), so an example that
answers 404 or 409 fails the test instead of printing a problem nobody reads.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.e2e.conftest import REPO_ROOT, SERVICE_ENV_PREFIXES, ApiServer

README = REPO_ROOT / "README.md"
MARKER = re.compile(r"^<!-- readme-example(?::\s*(skip|last)\b.*)? -->$")
FENCE = re.compile(r"^```bash\s*$")
SCRIPT_TIMEOUT_SECONDS = 120
PRELUDE = """\
set -euo pipefail
curl() { command curl --fail-with-body --max-time 30 "$@"; }
"""


def readme_shell_blocks() -> list[tuple[str, int, str]]:
    """``(kind, line number, code)`` of every bash block; kind is run, last, skip or unmarked."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if not FENCE.match(line.strip()):
            continue
        kind = "unmarked"
        back = index - 1
        while back >= 0 and lines[back].strip().startswith("<!--"):
            if match := MARKER.match(lines[back].strip()):
                kind = match[1] or "run"
            back -= 1
        end = next(n for n in range(index + 1, len(lines)) if lines[n].strip() == "```")
        blocks.append((kind, index + 1, textwrap.dedent("\n".join(lines[index + 1 : end]))))
    return blocks


def test_every_shell_block_says_whether_the_readme_test_runs_it() -> None:
    blocks = readme_shell_blocks()
    unmarked = [number for kind, number, _ in blocks if kind == "unmarked"]
    assert not unmarked, f"README.md bash blocks without a readme-example marker at lines {unmarked}"
    assert sum(kind == "run" for kind, _, _ in blocks) >= 4


def test_readme_examples_run_in_order_against_a_live_service(demo_api_server: ApiServer, tmp_path: Path) -> None:
    blocks = readme_shell_blocks()
    ordered = [block for block in blocks if block[0] == "run"] + [block for block in blocks if block[0] == "last"]
    address = f"127.0.0.1:{demo_api_server.port}"
    script = PRELUDE + "\n".join(
        f"# README.md line {number}\n" + code.replace("localhost:8000", address).replace("127.0.0.1:8000", address)
        for _, number, code in ordered
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(SERVICE_ENV_PREFIXES)}
    # The project's environment comes first, as after `. .venv/bin/activate`.
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", TMPDIR=str(tmp_path),
               XDG_DATA_HOME=str(tmp_path / "data-home"), COLUMNS="120")

    result = subprocess.run(
        ["bash", "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=SCRIPT_TIMEOUT_SECONDS,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the README examples stopped (status {result.returncode}):\n{output[-4000:]}"
    assert "VERDICT: APPROVED" in result.stdout  # the review the examples fetched
    assert (tmp_path / "fizzbuzz" / "fizzbuzz.py").is_file()  # mgx runs download
    assert result.stdout.rstrip().endswith("204")  # the task deleted last
