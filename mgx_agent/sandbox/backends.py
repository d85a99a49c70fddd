"""The two ways a test run is executed: bubblewrap (isolated) and unsafe-subprocess (not).

Each backend stages the files, builds its command around the same launcher (``inside.py``),
runs it through ``execution.execute`` with the run's cgroup or rlimits, and turns what came
back into a ``SandboxReport``. Both remove everything they made on every path out.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from mgx_agent.config import SandboxConfig
from mgx_agent.parsing import SourceFile
from mgx_agent.sandbox import bubblewrap
from mgx_agent.sandbox.execution import (
    FAILURE_CHARS,
    OUTPUT_TAIL_CHARS,
    ChildLimits,
    Execution,
    execute,
)
from mgx_agent.sandbox.limits import RunCgroup
from mgx_agent.sandbox.report import SandboxReport
from mgx_agent.sandbox.workspace import make_staging, remove_tree

_LAUNCHER = resources.files("mgx_agent.sandbox").joinpath("inside.py").read_text("utf-8")
_MIB = 1024 * 1024


def _launcher_command(input_dir: str, workspace: str, config: str, result_fd: int) -> list[str]:
    spec = {
        "input": input_dir,
        "workspace": workspace,
        "config": config,
        "result_fd": result_fd,
        "failure_chars": FAILURE_CHARS,
    }
    return [sys.executable, "-I", "-B", "-c", _LAUNCHER, json.dumps(spec)]


def scrub(text: str, replacements: list[tuple[str, str]]) -> str:
    """Remove host paths from what the sandbox printed before it is stored or sent to a model."""
    for old, new in sorted(replacements, key=lambda pair: -len(pair[0])):
        if old:
            text = text.replace(old, new)
    return text


def _python_replacements() -> list[tuple[str, str]]:
    return [(path + os.sep, "<python>/") for path in bubblewrap.interpreter_paths()]


def build_report(
    execution: Execution,
    *,
    timeout_seconds: float,
    isolation: str,
    isolated: dict[str, Any],
    replacements: list[tuple[str, str]],
) -> SandboxReport:
    text = scrub(execution.output, replacements)
    result = execution.result or {}
    counts = {key: result.get(key, 0) for key in ("passed", "failed", "errors", "skipped")}
    failures = [
        {"test": scrub(item["test"], replacements), "output": scrub(item["output"], replacements)}
        for item in result.get("failures", [])
    ]
    if execution.timed_out:
        status = "timed_out"
        text += f"\n[sandbox] killed after {timeout_seconds:g} s wall-clock timeout"
    elif (
        execution.result is not None
        and execution.exit_code == 0
        and result.get("exit_code") == 0
        and counts["passed"] > 0
        and counts["failed"] == 0
        and counts["errors"] == 0
    ):
        status = "passed"
    else:
        status = "failed"
        if execution.result_problem and not execution.timed_out:
            text += f"\n[sandbox] {execution.result_problem}"
    if execution.peak_memory_bytes is not None:
        isolated = {**isolated, "peak_memory_mb": round(execution.peak_memory_bytes / _MIB, 1)}
    return SandboxReport(
        status=status,
        duration_seconds=round(execution.duration_seconds, 3),
        timed_out=execution.timed_out,
        exit_code=execution.exit_code,
        output_tail=text[-OUTPUT_TAIL_CHARS:],
        isolation=isolation,
        isolated=isolated,
        failures=failures,
        **counts,
    )


class _Backend:
    name = ""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config

    def _limits(self, cgroup: RunCgroup | None, uid: int | None) -> ChildLimits:
        return ChildLimits(
            memory_bytes=self.config.memory_mb * _MIB,
            cpu_seconds=self.config.cpu_seconds,
            max_processes=None if cgroup else process_limit(self.config.max_processes, uid),
            cgroup_procs=cgroup.join_paths() if cgroup else [],
            uid=uid,
        )

    def _new_cgroup(self) -> RunCgroup | None:
        return RunCgroup.create(self.config.max_processes, self.config.memory_mb * _MIB)

    def _limit_description(self, cgroup: RunCgroup | None, host_uid: int) -> dict[str, Any]:
        # The kernel never applies RLIMIT_NPROC to uid 0, so without a cgroup root has no cap.
        fallback = "rlimit" if host_uid != 0 else "none (uid 0 without a cgroup)"
        return {
            "processes": "cgroup" if cgroup else fallback,
            "memory": "cgroup" if cgroup else "rlimit per process",
            "max_processes": self.config.max_processes,
            "memory_mb": self.config.memory_mb,
        }


class BubblewrapBackend(_Backend):
    name = "bubblewrap"

    def __init__(self, config: SandboxConfig, variant: bubblewrap.BubblewrapVariant) -> None:
        super().__init__(config)
        self.variant = variant

    @property
    def host_uid(self) -> int:
        return self.variant.uid if self.variant.uid is not None else os.geteuid()

    def isolated(self) -> dict[str, Any]:
        return {
            "filesystem": True,
            "network": True,
            "pid_namespace": True,
            "proc": "private" if self.variant.proc else "not mounted",
            "nested_user_namespaces": "disabled" if self.variant.no_nested_userns else "allowed",
            "host_uid": self.host_uid,
            "disk": "tmpfs",
            "disk_mb": self.config.disk_mb,
        }

    async def run(self, files: list[SourceFile], tests: list[SourceFile]) -> SandboxReport:
        staging = await asyncio.to_thread(make_staging, files, tests, None)
        cgroup = None
        try:
            await asyncio.to_thread(bubblewrap.write_etc_files, staging, self.config.uid)
            if self.variant.uid is not None:
                await asyncio.to_thread(_chown_tree, staging, self.variant.uid)
            cgroup = await asyncio.to_thread(self._new_cgroup)

            def command_for(result_fd: int) -> list[str]:
                program = _launcher_command(
                    f"{bubblewrap.STAGING}/files",
                    bubblewrap.WORKSPACE,
                    f"{bubblewrap.STAGING}/pytest.ini",
                    result_fd,
                )
                disk_bytes = self.config.disk_mb * _MIB
                return bubblewrap.build_command(
                    self.variant, str(staging), disk_bytes, self.config.uid, program
                )

            execution = await execute(
                command_for,
                env=bubblewrap.inside_environment(),
                cwd=str(staging),
                limits=self._limits(cgroup, self.variant.uid),
                cgroup=cgroup,
                timeout_seconds=self.config.timeout_seconds,
            )
        finally:
            await asyncio.shield(asyncio.to_thread(_clean_up, staging, cgroup))
        return build_report(
            execution,
            timeout_seconds=self.config.timeout_seconds,
            isolation=self.name,
            isolated={**self.isolated(), **self._limit_description(cgroup, self.host_uid)},
            replacements=[(bubblewrap.WORKSPACE + "/", ""), *_python_replacements()],
        )


class UnsafeSubprocessBackend(_Backend):
    """A plain child process with the service's uid: only for operators who ask for it by name."""

    name = "unsafe-subprocess"

    def isolated(self) -> dict[str, Any]:
        return {"filesystem": False, "network": False, "pid_namespace": False, "disk": "none"}

    async def run(self, files: list[SourceFile], tests: list[SourceFile]) -> SandboxReport:
        staging = await asyncio.to_thread(make_staging, files, tests, None)
        scratch = Path(tempfile.mkdtemp(prefix="mgx-sandbox-run-"))
        cgroup = None
        try:
            for name in ("tmp", "home"):
                (scratch / name).mkdir()
            cgroup = await asyncio.to_thread(self._new_cgroup)
            workspace = scratch / "workspace"

            def command_for(result_fd: int) -> list[str]:
                config_file = str(staging / "pytest.ini")
                return _launcher_command(str(staging / "files"), str(workspace), config_file, result_fd)

            environment = {
                **bubblewrap.inside_environment(),
                "HOME": str(scratch / "home"),
                "TMPDIR": str(scratch / "tmp"),
            }
            execution = await execute(
                command_for,
                env=environment,
                cwd=str(scratch),
                limits=self._limits(cgroup, None),
                cgroup=cgroup,
                timeout_seconds=self.config.timeout_seconds,
            )
        finally:
            await asyncio.shield(asyncio.to_thread(_clean_up, staging, cgroup, scratch))
        return build_report(
            execution,
            timeout_seconds=self.config.timeout_seconds,
            isolation="none",
            isolated={**self.isolated(), **self._limit_description(cgroup, os.geteuid())},
            replacements=[(str(workspace) + "/", ""), (str(scratch), "<sandbox>"),
                          *_python_replacements()],
        )  # fmt: skip


def process_limit(max_processes: int, uid: int | None) -> int:
    """RLIMIT_NPROC for a run without a cgroup: the kernel counts every task of the real uid,
    the service's own threads included, so the run's allowance comes on top of those."""
    owner = os.geteuid() if uid is None else uid
    running = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == owner:
                    running += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return max_processes + running


def _chown_tree(root: Path, uid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)


def _clean_up(staging: Path, cgroup: RunCgroup | None, *others: Path) -> None:
    if cgroup is not None:
        cgroup.remove()
    for path in (staging, *others):
        remove_tree(path)
