"""What one test run produced, as stored in ``sandbox-report.json`` and shown to the reviewer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mgx_agent.errors import MGXError

# passed | failed | timed_out | skipped (sandbox off) | unavailable (no isolation; not executed)
STATUSES = ("passed", "failed", "timed_out", "skipped", "unavailable")


class SandboxUnavailableError(MGXError):
    """The sandbox works but cannot run tests at all (the test runner is not installed)."""

    code = "sandbox_unavailable"


@dataclass(frozen=True)
class SandboxReport:
    status: str
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    duration_seconds: float = 0.0
    timed_out: bool = False
    exit_code: int | None = None
    output_tail: str = ""
    # "bubblewrap", "none" (unsafe-subprocess) or "" when nothing was executed
    isolation: str = ""
    # what was isolated and how: filesystem, network, pids, memory, disk, proc, host_uid
    isolated: dict[str, Any] = field(default_factory=dict)
    # why tests were not executed, and what an operator can do about it
    reason: str | None = None
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "passed"

    @property
    def executed(self) -> bool:
        return self.status not in ("skipped", "unavailable")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxReport:
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
