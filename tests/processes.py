"""Looking for processes from the host's side, for tests that check nothing outlived a run."""

from __future__ import annotations

from pathlib import Path


def processes_with(token: str) -> list[int]:
    """Pids whose command line contains ``token`` (a marker the test put there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
