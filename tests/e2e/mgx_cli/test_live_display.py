"""``mgx runs watch`` on a terminal: the live panel is redrawn as the run moves through its phases.

The client runs in a pseudo-terminal, as in a person's shell; what it writes is fed to a
terminal emulator (pyte) and the screen is read after every line, as a person would see it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

import httpx
import pyte

from tests.e2e.conftest import REPO_ROOT, ApiServer
from tests.e2e.mgx_cli.conftest import CLI_TIMEOUT_SECONDS, cli_env, new_task

COLUMNS, LINES = 110, 60
PANEL_PHASE = re.compile(r"│\s*phase\s+([a-z]+)")
PANEL_STATUS = re.compile(r"│\s*status\s+([a-z_]+)")


def run_in_terminal(base_url: str, *args: str) -> tuple[int, list[str], list[str]]:
    """Run ``mgx ARGS`` on a pty; return its exit status, the screen's last lines, and every
    phase the live panel showed, in the order it showed them (repeats collapsed)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = {**cli_env(base_url), "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(LINES)}
    process = subprocess.Popen(
        [sys.executable, "-m", "mgx_cli", *args], stdin=terminal, stdout=terminal, stderr=terminal,
        env=env, cwd=REPO_ROOT, start_new_session=True,
    )
    os.close(terminal)
    screen = pyte.Screen(COLUMNS, LINES)
    stream = pyte.ByteStream(screen)
    phases: list[str] = []
    # A read can end in the middle of a line (the pty hands over what was written so far): the
    # screen is read once a line is complete, not halfway through drawing it.
    partial = b""
    deadline = time.monotonic() + CLI_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            try:
                output = os.read(controller, 65536)
            except OSError:  # EIO: the client exited and the terminal closed
                break
            if not output:
                break
            pieces = (partial + output).splitlines(keepends=True)
            partial = b"" if pieces[-1].endswith((b"\n", b"\r")) else pieces.pop()
            for piece in pieces:
                stream.feed(piece)
                if b"phase" not in piece:  # the panel's phase row is not being drawn: nothing new to see
                    continue
                for line in screen.display:
                    if (match := PANEL_PHASE.search(line)) and (not phases or phases[-1] != match[1]):
                        phases.append(match[1])
        stream.feed(partial)
        status = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    return status, [line.rstrip() for line in screen.display if line.strip()], phases


def test_live_panel_shows_the_phases_in_order_and_ends_completed(cli_server: ApiServer, api: httpx.Client) -> None:
    task_id = new_task(api, "fizzbuzz up to n")

    status, screen, phases = run_in_terminal(cli_server.base_url, "runs", "start", task_id, "--watch", "--yes")

    assert status == 0, "\n".join(screen)
    shown = [phase for phase in phases if phase in {"planning", "coding", "testing", "verifying", "reviewing"}]
    assert shown == ["planning", "coding", "testing", "verifying", "reviewing"], phases
    assert any(PANEL_STATUS.search(line) and "completed" in line for line in screen), "\n".join(screen)
    assert any(re.match(r"run \S+ completed: approved", line) for line in screen), "\n".join(screen)
