"""Run a command under deploy/seccomp/mgx-sandbox.json, the way a container runtime would load it.

Uses libseccomp's Python binding (Debian: python3-seccomp) to install the profile's filter in
this process (with ``--drop-capabilities``, also empties the capability bounding set as a
container does; run it as a non-root uid then), and execs the command. Lets the profile be
checked against bubblewrap without a container runtime:

    /usr/bin/python3 scripts/seccomp-check.py [--drop-capabilities] -- python -c "..."
"""

import ctypes
import json
import os
import sys
from pathlib import Path

import seccomp

PROFILE = Path(__file__).resolve().parent.parent / "deploy" / "seccomp" / "mgx-sandbox.json"
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38


def main() -> None:
    command = sys.argv[sys.argv.index("--") + 1 :]
    profile = json.loads(PROFILE.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for group in profile["syscalls"]:
        for name in group["names"]:
            try:
                rules.add_rule(seccomp.ERRNO(group.get("errnoRet", 1)), name)
            except (RuntimeError, ValueError):
                pass  # not a system call on this architecture: runtimes skip it too
    libc = ctypes.CDLL(None, use_errno=True)
    if "--drop-capabilities" in sys.argv[: sys.argv.index("--")]:
        for capability in range(64):
            libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    rules.load()
    os.execvp(command[0], command)


main()
