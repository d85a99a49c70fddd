"""Limits that hold for a test run as a whole: a cgroup per run where the host allows one.

A cgroup caps the run's processes (``pids.max``) and its memory, tmpfs pages included, across
every process it starts, and lets the host kill everything in it after the run. Where no cgroup
can be made (no permission, no delegated v2 subtree), the run falls back to per-process rlimits
(``RLIMIT_NPROC``, ``RLIMIT_AS``) and the tmpfs size cap; the report says which applied.

Both cgroup v2 (unified) and v1 (separate ``pids`` and ``memory`` hierarchies) are handled. The
child is moved into the cgroup between fork and exec (``join`` in the preexec hook), so nothing
it starts can escape the accounting.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_FILE_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def _own_cgroup_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _write(path: Path, value: str) -> None:
    path.write_text(value)


@dataclass
class RunCgroup:
    """One run's cgroup: one directory (v2) or one per controller (v1)."""

    version: int
    directories: list[Path]

    @classmethod
    def create(cls, max_processes: int, memory_bytes: int) -> RunCgroup | None:
        """Make a cgroup for one run, or None when this host does not let us."""
        name = f"mgx-sandbox-{uuid.uuid4().hex[:12]}"
        own = _own_cgroup_paths()
        for attempt in (cls._create_v2, cls._create_v1):
            with contextlib.suppress(OSError):
                cgroup = attempt(own, name, max_processes, memory_bytes)
                if cgroup is not None:
                    return cgroup
        return None

    @classmethod
    def _create_v2(
        cls, own: dict[str, str], name: str, max_processes: int, memory_bytes: int
    ) -> RunCgroup | None:
        if "" not in own:
            return None
        mount = _CGROUP_ROOT if (_CGROUP_ROOT / "cgroup.controllers").exists() else None
        mount = mount or (_CGROUP_ROOT / "unified")
        parent = mount / own[""].lstrip("/")
        controllers = (parent / "cgroup.subtree_control").read_text().split()
        if not {"pids", "memory"} <= set(controllers):
            return None
        directory = parent / name
        directory.mkdir()
        cgroup = cls(2, [directory])
        try:
            _write(directory / "pids.max", str(max_processes))
            _write(directory / "memory.max", str(memory_bytes))
            with contextlib.suppress(OSError):
                _write(directory / "memory.swap.max", "0")
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    @classmethod
    def _create_v1(
        cls, own: dict[str, str], name: str, max_processes: int, memory_bytes: int
    ) -> RunCgroup | None:
        if "pids" not in own or "memory" not in own:
            return None
        pids = _CGROUP_ROOT / "pids" / own["pids"].lstrip("/") / name
        memory = _CGROUP_ROOT / "memory" / own["memory"].lstrip("/") / name
        pids.mkdir()
        cgroup = cls(1, [pids])
        try:
            memory.mkdir()
            cgroup.directories.append(memory)
            _write(pids / "pids.max", str(max_processes))
            _write(memory / "memory.limit_in_bytes", str(memory_bytes))
            with contextlib.suppress(OSError):
                _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    def join_paths(self) -> list[str]:
        """The files a child writes its pid to (see ``join_from_child``)."""
        return [str(directory / "cgroup.procs") for directory in self.directories]

    def processes(self) -> list[int]:
        pids: set[int] = set()
        for directory in self.directories:
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in (directory / "cgroup.procs").read_text().split())
        return sorted(pids)

    def kill_all(self, deadline_seconds: float = 2.0) -> bool:
        """SIGKILL every process of the run until none is left; True when it is empty."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.directories[0] / "cgroup.kill", "1")
        give_up = time.monotonic() + deadline_seconds
        while True:
            remaining = self.processes()
            if not remaining:
                return True
            if time.monotonic() > give_up:
                return False
            for pid in remaining:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def peak_memory_bytes(self) -> int | None:
        for directory in self.directories:
            for name in ("memory.peak", "memory.max_usage_in_bytes"):
                with contextlib.suppress(OSError, ValueError):
                    return int((directory / name).read_text().strip())
        return None

    def remove(self) -> None:
        self.kill_all()
        for directory in self.directories:
            with contextlib.suppress(OSError):
                directory.rmdir()


def join_from_child(procs_files: list[str]) -> None:
    """Move the calling (forked, not yet exec'd) process into the run's cgroup."""
    for procs_file in procs_files:
        descriptor = os.open(procs_file, os.O_WRONLY)
        try:
            os.write(descriptor, b"0")
        finally:
            os.close(descriptor)


def apply_rlimits(memory_bytes: int, cpu_seconds: int, max_processes: int | None) -> None:
    """Per-process limits, applied in the child before exec (inherited by everything it starts)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_SIZE_LIMIT_BYTES, _FILE_SIZE_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if max_processes is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
