"""A private, throw-away PostgreSQL cluster for tests that stop and start the database server.

Tests must never stop the shared server other tests use, so outage tests get their own cluster:
``initdb`` into a temporary directory, ``pg_ctl start`` on a free loopback port with trust
authentication, ``stop_immediately`` (the crash-like ``-m immediate``) and ``start`` again.
The server binaries come from the distribution (``/usr/lib/postgresql/<version>/bin``) or PATH.
PostgreSQL refuses to run as root, so under root the cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

START_TIMEOUT_SECONDS = 30
SUPERUSER = "postgres"


def server_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest installed version first)."""
    def version(directory: str) -> tuple[int, ...]:
        return tuple(int(part) for part in Path(directory).parent.name.split(".") if part.isdigit())

    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if Path(directory, "initdb").exists() and Path(directory, "pg_ctl").exists():
            return Path(directory)
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivatePostgres:
    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mgx-private-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            self._run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(self.root, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        """The cluster's ``postgres`` database, as the service spells database URLs."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
        result = subprocess.run(
            [str(self.binaries / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            **self._run_as,
        )
        if result.returncode != 0:
            output = f"{result.stdout}{result.stderr}\n{self.log_tail()}"
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {output}")

    def init(self) -> PrivatePostgres:
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--no-sync",
            "--encoding=UTF8", "--locale=C",
        )
        return self

    def start(self) -> None:
        # fsync off: the data is thrown away; the socket directory is private to the cluster.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -F"
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w", "-t", "30", "start"
        )

    def stop_immediately(self) -> None:
        """Kill the server the way a crash or a pulled plug would (no checkpoint, connections cut)."""
        self.stop("immediate")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>``: ``fast`` ends sessions cleanly (a planned restart),
        ``immediate`` as a crash would."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self.stop_immediately()
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
