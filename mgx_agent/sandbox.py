"""Runs the generated tests against the generated code in a restricted subprocess.

Isolation is best effort on a plain Linux host without containers: a fresh temp directory as
working directory and HOME, a scrubbed environment (no API keys or database passwords leak),
CPU/memory/file-size rlimits, a wall-clock timeout that kills the whole process group, and no
network when unprivileged user namespaces work (``unshare -rn``). The report says which of
these were applied. The temp directory is removed on every path out, including cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from mgx_agent.config import SandboxConfig
from mgx_agent.parsing import SourceFile

OUTPUT_TAIL_CHARS = 4096
# Keep only the end of the output in memory: a test that prints forever must not fill RAM.
_OUTPUT_BUFFER_BYTES = 64 * 1024
_FILE_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
_SUMMARY_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped)")
_PYTEST_INI = "[pytest]\naddopts =\n"


@dataclass(frozen=True)
class SandboxReport:
    status: str  # passed | failed | timed_out | skipped
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    duration_seconds: float = 0.0
    timed_out: bool = False
    exit_code: int | None = None
    output_tail: str = ""
    isolation: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxReport:
        return cls(**data)


@functools.cache
def network_isolation_available() -> bool:
    """Whether ``unshare -rn`` works here (needs unprivileged user namespaces); probed once."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        probe = subprocess.run(
            [unshare, "-rn", sys.executable, "-c", "pass"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def scrubbed_environment(home: Path) -> dict[str, str]:
    """The only variables the child sees; nothing from the parent beyond PATH and LANG."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(home),
        "PYTHONPATH": str(home / "project"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _apply_rlimits(memory_bytes: int, cpu_seconds: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_SIZE_LIMIT_BYTES, _FILE_SIZE_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _write_files(project: Path, files: list[SourceFile]) -> None:
    for source in files:
        target = (project / source.path).resolve()
        # Paths were sanitised by the parser; this re-check keeps the sandbox safe on its own.
        if not target.is_relative_to(project.resolve()):
            raise ValueError(f"refusing to write outside the sandbox: {source.path!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.content, encoding="utf-8")


def _counts_from_junit(path: Path) -> dict[str, int] | None:
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    return {
        "passed": totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"],
        "failed": totals["failures"],
        "errors": totals["errors"],
        "skipped": totals["skipped"],
    }


def _counts_from_summary(output: str) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    summary_lines = [line for line in output.splitlines() if _SUMMARY_COUNT.search(line)]
    if summary_lines:
        for number, word in _SUMMARY_COUNT.findall(summary_lines[-1]):
            counts["errors" if word.startswith("error") else word] = int(number)
    return counts


async def _read_tail(stream: asyncio.StreamReader, buffer: bytearray) -> None:
    while chunk := await stream.read(8192):
        buffer.extend(chunk)
        if len(buffer) > _OUTPUT_BUFFER_BYTES:
            del buffer[: len(buffer) - _OUTPUT_BUFFER_BYTES]


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class Sandbox:
    """Runs pytest over a set of files; one instance may serve many concurrent runs."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()

    async def run(self, files: list[SourceFile], tests: list[SourceFile]) -> SandboxReport:
        if self.config.mode == "off":
            return SandboxReport(
                status="skipped", output_tail="sandbox is off (MGX_SANDBOX=off); tests not run"
            )
        no_network = await asyncio.to_thread(network_isolation_available)
        isolation = ["rlimits", "scrubbed_env", "no_network" if no_network else "network_allowed"]
        root = Path(tempfile.mkdtemp(prefix="mgx-sandbox-"))
        try:
            project = root / "project"
            project.mkdir()
            _write_files(project, [*files, *tests])
            if not (project / "pytest.ini").exists():
                (project / "pytest.ini").write_text(_PYTEST_INI, encoding="utf-8")
            return await self._run_pytest(root, project, isolation, no_network)
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, root, True))

    async def _run_pytest(
        self, root: Path, project: Path, isolation: list[str], no_network: bool
    ) -> SandboxReport:
        junit = root / "junit.xml"
        command = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            f"--junitxml={junit}", "-o", "junit_family=xunit2", "--rootdir", str(project), ".",
        ]  # fmt: skip
        if no_network:
            command = [shutil.which("unshare") or "unshare", "-rn", *command]
        limits = (self.config.memory_mb * 1024 * 1024, self.config.cpu_seconds)
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=project,
            env=scrubbed_environment(root),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=functools.partial(_apply_rlimits, *limits),
        )
        output = bytearray()
        assert process.stdout is not None
        reader = asyncio.create_task(_read_tail(process.stdout, output))
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), self.config.timeout_seconds)
        except TimeoutError:
            timed_out = True
        finally:
            if process.returncode is None:
                _kill_group(process)
                await asyncio.shield(process.wait())
            # A grandchild that left the process group could hold the pipe open; do not wait
            # for it longer than a moment.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), 1.0)
            reader.cancel()
        duration = time.perf_counter() - started
        text = output.decode("utf-8", errors="replace")
        text = text.replace(str(project) + os.sep, "").replace(str(root), "<sandbox>")
        counts = _counts_from_junit(junit) or _counts_from_summary(text)
        clean = counts["passed"] > 0 and counts["failed"] == 0 and counts["errors"] == 0
        if timed_out:
            status = "timed_out"
            text += f"\n[sandbox] killed after {self.config.timeout_seconds:g} s wall-clock timeout"
        elif process.returncode == 0 and clean:
            status = "passed"
        else:
            status = "failed"
        return SandboxReport(
            status=status,
            duration_seconds=round(duration, 3),
            timed_out=timed_out,
            exit_code=process.returncode,
            output_tail=text[-OUTPUT_TAIL_CHARS:],
            isolation=isolation,
            **counts,
        )
