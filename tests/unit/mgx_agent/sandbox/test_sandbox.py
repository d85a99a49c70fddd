"""The sandbox runs real pytest subprocesses: results, timeouts, isolation and cleanup."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import pytest

from mgx_agent.config import SandboxConfig
from mgx_agent.parsing import SourceFile
from mgx_agent.sandbox import Sandbox, network_isolation_available

pytestmark = pytest.mark.slow

CODE = [SourceFile("calc.py", "def add(a, b):\n    return a + b\n")]


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sandboxes of this module create their directories here, so other test processes on the
    machine cannot make "the temp dir was removed" checks flaky."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def sandbox_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mgx-sandbox-*")}


async def test_reports_passes_and_failures() -> None:
    tests = [
        SourceFile(
            "test_calc.py",
            "from calc import add\n\n"
            "def test_add():\n    assert add(2, 3) == 5\n\n"
            "def test_wrong():\n    assert add(2, 2) == 5\n\n"
            "def test_skipped():\n    import pytest\n    pytest.skip('not today')\n",
        )
    ]
    before = sandbox_dirs()

    report = await Sandbox(SandboxConfig(mode="subprocess", timeout_seconds=20)).run(CODE, tests)

    assert (report.status, report.passed, report.failed, report.skipped) == ("failed", 1, 1, 1)
    assert report.exit_code == 1 and not report.timed_out
    assert "FAILED test_calc.py::test_wrong" in report.output_tail
    assert "mgx-sandbox-" not in report.output_tail  # temp paths are not leaked into prompts
    assert {"rlimits", "scrubbed_env"} <= set(report.isolation)
    assert sandbox_dirs() == before


async def test_all_passing_is_passed() -> None:
    test_code = "from calc import add\n\ndef test_add():\n    assert add(1, 1) == 2\n"
    tests = [SourceFile("tests/test_calc.py", test_code)]

    report = await Sandbox(SandboxConfig(mode="subprocess", timeout_seconds=20)).run(CODE, tests)

    assert report.status == "passed" and report.succeeded
    assert (report.passed, report.failed, report.errors) == (1, 0, 0)


async def test_infinite_loop_is_killed_at_the_timeout() -> None:
    tests = [SourceFile("test_loop.py", "def test_forever():\n    while True:\n        pass\n")]
    before = sandbox_dirs()
    started = time.perf_counter()

    report = await Sandbox(SandboxConfig(mode="subprocess", timeout_seconds=2)).run(CODE, tests)

    assert report.status == "timed_out" and report.timed_out
    assert 2.0 <= time.perf_counter() - started < 4.0
    assert "timeout" in report.output_tail
    assert sandbox_dirs() == before


async def test_child_cannot_see_parent_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGX_TEST_SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("MGX_LLM_API_KEY", "sk-should-not-leak")
    tests = [
        SourceFile(
            "test_env.py",
            "import os\n\n"
            "def test_secret_absent():\n"
            "    assert 'MGX_TEST_SECRET_TOKEN' not in os.environ\n"
            "    assert 'MGX_LLM_API_KEY' not in os.environ\n"
            "    assert 'hunter2' not in repr(dict(os.environ))\n",
        )
    ]

    report = await Sandbox(SandboxConfig(mode="subprocess", timeout_seconds=20)).run(CODE, tests)

    assert report.status == "passed", report.output_tail


async def test_no_network_when_namespaces_are_available() -> None:
    if not network_isolation_available():
        pytest.skip("unprivileged user namespaces (unshare -rn) are not available here")
    tests = [
        SourceFile(
            "test_net.py",
            "import socket, pytest\n\n"
            "def test_cannot_connect():\n"
            "    with pytest.raises(OSError):\n"
            "        socket.create_connection(('127.0.0.1', 6379), timeout=1)\n",
        )
    ]

    report = await Sandbox(SandboxConfig(mode="subprocess", timeout_seconds=20)).run(CODE, tests)

    assert "no_network" in report.isolation
    assert report.status == "passed", report.output_tail


async def test_cancel_kills_the_child_and_removes_the_directory() -> None:
    marker = Path(tempfile.gettempdir()) / f"mgx-sandbox-cancel-{os.getpid()}"
    marker.unlink(missing_ok=True)
    tests = [
        SourceFile(
            "test_slow.py",
            "import time\n\n"
            "def test_slow():\n"
            "    time.sleep(1.5)\n"
            f"    open({str(marker)!r}, 'w').write('survived')\n",
        )
    ]
    before = sandbox_dirs()
    sandbox = Sandbox(SandboxConfig(mode="subprocess", timeout_seconds=20))
    run = asyncio.create_task(sandbox.run(CODE, tests))
    await asyncio.sleep(0.9)

    started = time.perf_counter()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    assert time.perf_counter() - started < 1.0
    assert sandbox_dirs() == before
    await asyncio.sleep(1.8)  # the child would have written the marker by now
    assert not marker.exists(), "the child kept running after the cancel"


async def test_off_mode_skips_without_running() -> None:
    report = await Sandbox(SandboxConfig(mode="off")).run(CODE, [])

    assert report.status == "skipped"
    assert report.exit_code is None and report.isolation == []


def test_mgx_sandbox_env_selects_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGX_SANDBOX", "off")
    assert SandboxConfig().mode == "off"
    monkeypatch.setenv("MGX_SANDBOX", "docker")
    with pytest.raises(ValueError):
        SandboxConfig()
