"""The service process marks itself non-dumpable, so same-uid processes cannot read its memory
or environment through /proc (checked in a child process, not in the test runner itself)."""

from __future__ import annotations

import subprocess
import sys

from tests.unit.deploy.deployment_files import PROJECT_ROOT


def test_the_service_process_becomes_non_dumpable() -> None:
    script = (
        "import ctypes\n"
        "from backend.app.hardening import make_process_undumpable\n"
        "libc = ctypes.CDLL(None)\n"
        "before = libc.prctl(3, 0, 0, 0, 0)\n"
        "print(before, make_process_undumpable(), libc.prctl(3, 0, 0, 0, 0))\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True
    )

    assert completed.stdout.split() == ["1", "True", "0"]
