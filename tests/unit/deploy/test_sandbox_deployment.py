"""What the sandbox needs in a container: the shipped seccomp profile lets bubblewrap build its
namespaces (checked for real, with the profile loaded by libseccomp) and still denies what a
runtime's default denies; compose uses it; the image's code is not owned by the runtime uid."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.deploy.deployment_files import DOCKERFILE, PROJECT_ROOT, dockerfile_instructions, final_stage

PROFILE = PROJECT_ROOT / "deploy" / "seccomp" / "mgx-sandbox.json"
CHECKER = PROJECT_ROOT / "scripts" / "seccomp-check.py"
BWRAP_NEEDS = {"clone", "clone3", "unshare", "mount", "umount2", "pivot_root"}
SYSTEM_PYTHON = "/usr/bin/python3"


def denied_calls() -> set[str]:
    profile = json.loads(PROFILE.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    return {name for group in profile["syscalls"] if group["action"] == "SCMP_ACT_ERRNO" for name in group["names"]}


def test_profile_allows_what_bubblewrap_needs_and_denies_the_dangerous_calls() -> None:
    denied = denied_calls()

    assert not denied & BWRAP_NEEDS
    assert {"keyctl", "bpf", "ptrace", "kexec_load", "init_module", "setns", "process_vm_readv"} <= denied


def test_compose_runs_the_api_with_the_profile() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    options = compose["services"]["api"]["security_opt"]

    assert "seccomp=./deploy/seccomp/mgx-sandbox.json" in options
    assert not any("unconfined" in option for option in options)


def test_the_runtime_uid_does_not_own_the_code() -> None:
    copies = [i for i in final_stage(dockerfile_instructions()) if i.keyword == "COPY"]

    assert copies and not any("--chown" in i.arguments for i in copies), DOCKERFILE.read_text()


def _seccomp_binding() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs Debian's python3-seccomp")
def test_bubblewrap_sandbox_works_under_the_profile() -> None:
    assert _seccomp_binding(), "install Debian's python3-seccomp (.ci/run does) to check the profile"
    probe = (
        "import asyncio\n"
        "from mgx_agent.config import SandboxConfig\n"
        "from mgx_agent.parsing import SourceFile\n"
        "from mgx_agent.sandbox import Sandbox\n"
        "tests = [SourceFile('test_ok.py', 'def test_ok():\\n    assert 1 + 1 == 2\\n')]\n"
        "report = asyncio.run(Sandbox(SandboxConfig(mode='bwrap')).run([], tests))\n"
        "print(report.status, report.isolation)\n"
    )

    completed = subprocess.run(
        [SYSTEM_PYTHON, str(CHECKER), "--", sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT,
    )  # fmt: skip

    assert completed.stdout.split() == ["passed", "bubblewrap"], completed.stderr[-2000:]
